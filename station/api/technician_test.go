package api

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"ssstation/station/service"
)

// TestRefusalsRecorded: refused origins (on a route, on a preflight, for a
// token whose list lacks it) and refused Host headers are kept, repeats
// counted, newest first, and shown to a technician; nothing of the token
// or the query string is kept.
func TestRefusalsRecorded(t *testing.T) {
	hs := newHarness(t)
	tok := hs.tokens[service.RoleTechnician]
	// a foreign Host (DNS rebinding), twice
	for i := 0; i < 2; i++ {
		hs.do(req{method: "GET", path: "/v1/readers?ticket=secret-ticket", role: service.RoleTechnician, host: "rebound.example.com:18420"})
	}
	hs.clock.Add(time.Second)
	// a foreign origin with a valid token
	hs.do(req{method: "POST", path: "/v1/card/read", role: service.RoleCounter, origin: badOrigin, body: `{}`})
	hs.clock.Add(time.Second)
	// a foreign origin's preflight
	hs.do(req{method: "OPTIONS", path: "/v1/card/read", origin: "https://other.example.org",
		header: map[string]string{"Access-Control-Request-Method": "POST"}})
	// allowed requests are not refusals
	hs.do(req{method: "GET", path: "/v1/health", origin: badOrigin})
	hs.do(req{method: "GET", path: "/v1/readers", role: service.RoleTechnician, origin: goodOrigin})

	rec := hs.do(req{method: "GET", path: "/v1/refusals", role: service.RoleTechnician})
	if rec.Code != 200 {
		t.Fatalf("refusals: %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), tok) || strings.Contains(rec.Body.String(), "secret-ticket") {
		t.Fatal("a token or the query string was kept in the refusals")
	}
	var body refusalsBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Capacity != RefusalCapacity || len(body.Refusals) != 3 {
		t.Fatalf("refusals: %+v", body)
	}
	pre, route, host := body.Refusals[0], body.Refusals[1], body.Refusals[2]
	if pre.Origin != "https://other.example.org" || pre.Method != "OPTIONS" || pre.Code != CodeOriginNotAllowed || !strings.Contains(pre.Reason, "preflight") {
		t.Errorf("preflight refusal: %+v", pre)
	}
	if route.Origin != badOrigin || route.Route != "/v1/card/read" || route.Method != "POST" || route.Code != CodeOriginNotAllowed || route.Count != 1 {
		t.Errorf("origin refusal: %+v", route)
	}
	if host.Host != "rebound.example.com:18420" || host.Code != CodeHostNotAllowed || host.Count != 2 || host.Route != "/v1/readers" {
		t.Errorf("host refusal: %+v", host)
	}
	if !host.Last.After(host.First) && host.Count != 2 {
		t.Errorf("repeat not counted: %+v", host)
	}
	// counter tokens may not read them
	wantProblem(t, hs.do(req{method: "GET", path: "/v1/refusals", role: service.RoleCounter}), 403, CodeForbiddenRole)
}

// TestRefusalRingBounded: the ring keeps the newest RefusalCapacity
// distinct refusals, and header values are made printable and short.
func TestRefusalRingBounded(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
	g := newRefusalRing(c.Now)
	for i := 0; i < RefusalCapacity+10; i++ {
		r := httptest.NewRequest("GET", "/v1/ready", nil)
		r.Header.Set("Origin", "https://o"+strings.Repeat("x", i)+".example")
		g.record(r, CodeOriginNotAllowed, "test")
	}
	r := httptest.NewRequest("GET", "/v1/ready", nil)
	r.Header.Set("Origin", "https://"+strings.Repeat("y", 300)+"\x01.example")
	g.record(r, CodeOriginNotAllowed, "test")
	got := g.newest()
	if len(got) != RefusalCapacity {
		t.Fatalf("%d refusals kept", len(got))
	}
	if o := got[0].Origin; len(o) > 131 || strings.ContainsRune(o, 1) || !strings.HasSuffix(o, "...") {
		t.Fatalf("origin kept as %q", o)
	}
	for _, ref := range got {
		if ref.Origin == "https://o.example" {
			t.Fatal("the oldest refusal was not dropped")
		}
	}
}

// TestDiagnosticsRoute: the station's report is served as is, latency is
// passed on, a bad latency never reaches the station.
func TestDiagnosticsRoute(t *testing.T) {
	hs := newHarness(t)
	rec := hs.do(req{method: "GET", path: "/v1/diagnostics?latency=5", role: service.RoleTechnician})
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"service"`) {
		t.Fatalf("diagnostics: %d %s", rec.Code, rec.Body)
	}
	hs.st.mu.Lock()
	lat := hs.st.lastDiagLatency
	hs.st.lastDiagLatency = -1
	hs.st.mu.Unlock()
	if lat != 5 {
		t.Fatalf("latency passed as %d", lat)
	}
	for _, bad := range []string{"0", "101", "x"} {
		rec = hs.do(req{method: "GET", path: "/v1/diagnostics?latency=" + bad, role: service.RoleTechnician})
		wantProblem(t, rec, 400, CodeInvalidRequest)
	}
	hs.st.mu.Lock()
	defer hs.st.mu.Unlock()
	if hs.st.lastDiagLatency != -1 {
		t.Fatal("a bad latency reached the station")
	}
}

// TestConformRoute: read-side conformance is an operation on the named
// reader with the profile asked; the write-side checks never reach the
// station over HTTP.
func TestConformRoute(t *testing.T) {
	hs := newHarness(t)
	rec := hs.do(req{method: "POST", path: "/v1/readers/r1/conform", role: service.RoleTechnician, body: `{"destructive":true}`})
	wantProblem(t, rec, 400, CodeInvalidRequest)
	rec = hs.do(req{method: "POST", path: "/v1/readers/r1/conform", role: service.RoleTechnician, body: `{"profile":"../x"}`})
	wantProblem(t, rec, 400, CodeInvalidRequest)
	if n := hs.st.Submits(); n != 0 {
		t.Fatalf("refused conformance requests reached the station %d times", n)
	}
	rec = hs.do(req{method: "POST", path: "/v1/readers/r1/conform", role: service.RoleTechnician, body: `{"profile":"ssse-3.0"}`})
	if rec.Code != 200 && rec.Code != 202 {
		t.Fatalf("conform: %d %s", rec.Code, rec.Body)
	}
	hs.st.mu.Lock()
	defer hs.st.mu.Unlock()
	if r := hs.st.lastReq; r.Kind != service.KindConform || r.ReaderID != "r1" || r.Profile != "ssse-3.0" {
		t.Fatalf("request %+v", r)
	}
}

// TestTestKeysMarked: a station on the test keys marks every answer
// (problems and preflights included) and says so in /v1/health; a
// production one sends neither.
func TestTestKeysMarked(t *testing.T) {
	hs := newHarness(t)
	rec := hs.do(req{method: "GET", path: "/v1/health"})
	if rec.Header().Get(TestKeysHeader) != "" || strings.Contains(rec.Body.String(), "test_keys") {
		t.Fatalf("production station marked: %v %s", rec.Header(), rec.Body)
	}
	hs.testKeys = true
	hs.build()
	for _, r := range []req{
		{method: "GET", path: "/v1/health", origin: goodOrigin},
		{method: "GET", path: "/v1/readers"},
		{method: "GET", path: "/v1/readers", host: "evil.example.com:18420"},
		{method: "OPTIONS", path: "/v1/card/read", origin: goodOrigin, header: map[string]string{"Access-Control-Request-Method": "POST"}},
		{method: "POST", path: "/v1/card/read", role: service.RoleCounter, body: `{}`, header: map[string]string{"Prefer": "wait=10"}},
	} {
		rec := hs.do(r)
		if rec.Header().Get(TestKeysHeader) != "true" {
			t.Errorf("%s %s: no %s header (status %d)", r.method, r.path, TestKeysHeader, rec.Code)
		}
	}
	rec = hs.do(req{method: "GET", path: "/v1/health", origin: goodOrigin})
	var h healthBody
	if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil || !h.TestKeys {
		t.Fatalf("health: %s", rec.Body)
	}
	if !strings.Contains(rec.Header().Get("Access-Control-Expose-Headers"), TestKeysHeader) {
		t.Fatal("a page cannot read the test keys header")
	}
}
