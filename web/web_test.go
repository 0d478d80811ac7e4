package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Result()
}

// Every page and script is served from the embedded files, with its
// content type and the headers that keep it from loading anything from
// outside.
func TestHandlerServesEmbeddedFiles(t *testing.T) {
	h := Handler()
	for _, c := range []struct{ path, ctype, contains string }{
		{"/sdk/sscard.js", "text/javascript", "export class Station"},
		{"/console/", "text/html", "console.js"},
		{"/console/console.js", "text/javascript", "sessionStorage"},
		{"/console/console.css", "text/css", ".panel"},
		{"/examples/counter/", "text/html", "app.js"},
		{"/examples/counter/app.js", "text/javascript", "/sdk/sscard.js"},
	} {
		res := get(t, h, c.path)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), c.ctype) || !strings.Contains(string(body), c.contains) {
			t.Errorf("%s: %d %q", c.path, res.StatusCode, res.Header.Get("Content-Type"))
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", c.path)
		}
		if strings.HasPrefix(c.path, "/console") || strings.HasPrefix(c.path, "/examples") {
			if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("%s: CSP %q", c.path, csp)
			}
		}
	}
	if got := get(t, h, "/sdk/sscard.js").Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("the SDK cannot be imported across origins: ACAO %q", got)
	}
	for _, p := range []string{"/console", "/examples/counter"} {
		if res := get(t, h, p); res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != p+"/" {
			t.Errorf("%s: %d %q", p, res.StatusCode, res.Header.Get("Location"))
		}
	}
	for _, p := range []string{"/web.go", "/console/../web.go", "/examples/", "/sdk/", "/nothing"} {
		if res := get(t, h, p); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, res.StatusCode)
		}
	}
}

// Only GET and HEAD: the files are read-only.
func TestHandlerRefusesWrites(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/console/", strings.NewReader("{}")))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rec.Code)
	}
}
