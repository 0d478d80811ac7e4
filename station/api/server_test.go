package api

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"ssstation/station/service"
)

// TestServerTimeoutsSpareLongRequests: with the server's read and write
// timeouts far shorter than a long poll, the event stream keeps flowing
// and a long poll still gets its answer (both extend their deadlines).
func TestServerTimeoutsSpareLongRequests(t *testing.T) {
	hs := newHarness(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := Server(l.Addr().String(), hs.h)
	if srv.ReadHeaderTimeout == 0 || srv.ReadTimeout == 0 || srv.WriteTimeout <= MaxWait || srv.MaxHeaderBytes == 0 {
		t.Fatalf("server limits %+v", srv)
	}
	srv.ReadTimeout = 30 * time.Millisecond
	srv.WriteTimeout = 30 * time.Millisecond
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	base := "http://" + l.Addr().String()
	s, _ := open(t, base, "/v1/events", map[string]string{"Authorization": "Bearer " + hs.tokens[service.RoleCounter]})
	if s == nil {
		t.Fatal("no stream")
	}
	hs.st.hold = make(chan struct{})
	rec := hs.do(req{method: "POST", path: "/v1/card/verify", role: service.RoleCounter, body: `{}`})
	loc := rec.Header().Get("Location")
	done := make(chan *http.Response, 1)
	go func() {
		r, _ := http.NewRequest("GET", base+loc+"?wait=30", nil)
		r.Host = testHost
		r.Header.Set("Authorization", "Bearer "+hs.tokens[service.RoleCounter])
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	// ten heartbeats (20 ms apart) outlast the 30 ms timeouts
	for n := 0; n < 10; {
		if s.next(t).comment == "heartbeat" {
			n++
		}
	}
	close(hs.st.hold)
	res := <-done
	if res == nil || res.StatusCode != 200 {
		t.Fatalf("long poll after the read timeout: %v", res)
	}
	res.Body.Close()
	s.stop()
}
