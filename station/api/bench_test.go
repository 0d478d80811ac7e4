package api

import (
	"net/http/httptest"
	"strings"
	"testing"

	"ssstation/station/service"
)

// BenchmarkReadOverHTTP: the HTTP layer's own cost for one read with
// Prefer: wait on the in-memory station (routing, token, JSON, the
// owner record in bbolt, waiting, the answer). The real read's APDUs
// are measured end to end by the daemon's benchmarks.
func BenchmarkReadOverHTTP(b *testing.B) {
	hs := newHarness(&testing.T{})
	tok := hs.tokens[service.RoleCounter]
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/v1/card/read", strings.NewReader(`{}`))
		r.Host = testHost
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Prefer", "wait=10")
		w := httptest.NewRecorder()
		hs.h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body)
		}
	}
}

// BenchmarkActivateReplay: a replayed card-changing POST is judged in a
// read transaction: no commit, no station call.
func BenchmarkActivateReplay(b *testing.B) {
	hs := newHarness(&testing.T{})
	tok := hs.tokens[service.RoleCounter]
	send := func() int {
		r := httptest.NewRequest("POST", "/v1/card/activate", strings.NewReader(`{"pin":"246813","pin_confirm":"246813"}`))
		r.Host = testHost
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Idempotency-Key", "bench")
		r.Header.Set("Prefer", "wait=10")
		w := httptest.NewRecorder()
		hs.h.ServeHTTP(w, r)
		return w.Code
	}
	if c := send(); c != 200 {
		b.Fatal(c)
	}
	b.ReportAllocs()
	for b.Loop() {
		if c := send(); c != 200 {
			b.Fatal(c)
		}
	}
}
