package apitest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"ssstation/station/api"
	"ssstation/station/api/apitest"
)

// TestTransportReportsMismatches: a conforming answer passes, a
// non-conforming body, an undocumented status and a non-problem error
// on an unknown path are reported, and the body still reaches the caller.
func TestTransportReportsMismatches(t *testing.T) {
	doc, err := api.OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	v, err := apitest.New(doc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("case") {
		case "good":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"ok":true,"version":"1","origin_allowed":false}`)
		case "extra":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"ok":true,"version":"1","origin_allowed":false,"pin":"1"}`)
		default:
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(404)
			_, _ = io.WriteString(w, "404 page not found")
		}
	}))
	defer srv.Close()
	for _, c := range []struct {
		path string
		bad  bool
	}{
		{"/v1/health?case=good", false},
		{"/v1/health?case=extra", true},
		{"/v1/nowhere", true},
	} {
		var got []error
		cl := &http.Client{Transport: v.Transport(nil, func(err error) { got = append(got, err) })}
		res, err := cl.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if len(body) == 0 || (len(got) > 0) != c.bad {
			t.Errorf("%s: reported %v, body %q", c.path, got, body)
		}
	}
}
