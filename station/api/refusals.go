package api

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"ssstation/station/service"
)

// Refused origins and Host headers: when a counter page "just doesn't
// work", the reason is nearly always an origin missing from its token's
// allow-list or a page reaching the station by a name it does not answer
// to. The browser hides both from the page; the station keeps the last
// few refusals for the technician console (GET /v1/refusals).
//
// A refusal holds what the caller sent in the clear and nothing secret:
// the Origin and Host headers, the method, the route and why. Never a
// token, a ticket, a query string or a body.

// RefusalCapacity is how many distinct refusals are kept.
const RefusalCapacity = 64

// Refusal is one kind of refused request; repeats of the same one are
// counted, not stored again.
type Refusal struct {
	Origin string       `json:"origin,omitempty"`
	Host   string       `json:"host"`
	Method string       `json:"method"`
	Route  string       `json:"route"`
	Code   service.Code `json:"code"`
	Reason string       `json:"reason"`
	First  time.Time    `json:"first"`
	Last   time.Time    `json:"last"`
	Count  int          `json:"count"`
}

// refusalRing keeps the newest RefusalCapacity refusals, newest last.
type refusalRing struct {
	mu   sync.Mutex
	list []Refusal
	now  func() time.Time
}

func newRefusalRing(now func() time.Time) *refusalRing { return &refusalRing{now: now} }

// clip keeps a header value printable and short: it is shown in a page.
func clip(v string, n int) string {
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v) && len(out) < n; i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
	}
	if len(v) > n {
		out = append(out, "..."...)
	}
	return string(out)
}

// record notes a refused request.
func (g *refusalRing) record(r *http.Request, code service.Code, reason string) {
	route := r.URL.Path
	if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
		route = rc.RoutePattern()
	}
	ref := Refusal{Origin: clip(r.Header.Get("Origin"), 128), Host: clip(r.Host, 128), Method: clip(r.Method, 16),
		Route: clip(route, 128), Code: code, Reason: reason}
	now := g.now().UTC()
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, old := range g.list {
		if old.Origin == ref.Origin && old.Host == ref.Host && old.Method == ref.Method && old.Route == ref.Route && old.Code == ref.Code {
			old.Last, old.Count, old.Reason = now, old.Count+1, reason
			g.list = append(append(g.list[:i:i], g.list[i+1:]...), old)
			return
		}
	}
	ref.First, ref.Last, ref.Count = now, now, 1
	g.list = append(g.list, ref)
	if len(g.list) > RefusalCapacity {
		g.list = append([]Refusal(nil), g.list[len(g.list)-RefusalCapacity:]...)
	}
}

// newest returns the refusals, newest first.
func (g *refusalRing) newest() []Refusal {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Refusal, 0, len(g.list))
	for i := len(g.list) - 1; i >= 0; i-- {
		out = append(out, g.list[i])
	}
	return out
}

type refusalsBody struct {
	Capacity int       `json:"capacity"`
	Refusals []Refusal `json:"refusals"`
}

func (s *server) refusalsList(w http.ResponseWriter, _ *http.Request, _ *Route) {
	writeJSON(w, http.StatusOK, refusalsBody{Capacity: RefusalCapacity, Refusals: s.refusals.newest()})
}

// diagnostics runs the technician's diagnosis through the station (each
// reader's part waits its turn on that reader's worker).
func (s *server) diagnostics(w http.ResponseWriter, r *http.Request, _ *Route) {
	o := service.DiagnosticsOptions{}
	if v := r.URL.Query().Get("latency"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeCode(w, r, CodeInvalidRequest, "latency is a number of GET CHALLENGEs from 1 to 100")
			return
		}
		o.Latency = n
	}
	holdOpen(w, MaxWait+10*time.Second)
	ctx, cancel := context.WithTimeout(r.Context(), MaxWait)
	defer cancel()
	raw, err := s.st.Diagnostics(ctx, o)
	if err != nil {
		writeProblem(w, r, problemFromError(err))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(raw)
}
