package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"ssstation/station/api/apitest"
	"ssstation/station/service"
)

const (
	testPort   = 18420
	testHost   = "127.0.0.1:18420"
	goodOrigin = "https://counter.example.cn"
	badOrigin  = "https://evil.example.com"
)

// clock is a settable clock for ticket and idempotency expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	t      *testing.T
	h      http.Handler
	st     *fakeStation
	db     *bolt.DB
	dbPath string
	tokens map[service.Role]string
	recs   []TokenRecord
	clock  *clock
	logs   *syncBuffer
	reg    *prometheus.Registry
	// testKeys builds the API of a station on the public test keys.
	testKeys bool
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func openDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// newHarness builds the API on a fake station and a bbolt file, with one
// token per role, each allowing goodOrigin.
func newHarness(t *testing.T) *harness {
	t.Helper()
	hs := &harness{t: t, st: newFakeStation(), tokens: map[service.Role]string{},
		clock: &clock{t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}, logs: &syncBuffer{}}
	hs.dbPath = filepath.Join(t.TempDir(), "station.db")
	hs.db = openDB(t, hs.dbPath)
	t.Cleanup(func() { _ = hs.db.Close() })
	for _, r := range Roles {
		tok, rec, err := NewToken("t-"+string(r), string(r), []string{goodOrigin})
		if err != nil {
			t.Fatal(err)
		}
		hs.tokens[r] = tok
		hs.recs = append(hs.recs, rec)
	}
	hs.build()
	return hs
}

func (hs *harness) build() {
	hs.t.Helper()
	hs.reg = prometheus.NewRegistry()
	h, err := New(Options{Station: hs.st, DB: hs.db, Tokens: hs.recs, Port: testPort,
		Logger: zerolog.New(hs.logs), Version: "test", Registry: hs.reg, Now: hs.clock.Now,
		Heartbeat: 20 * time.Millisecond, TestKeys: hs.testKeys,
		Audit: func(_ context.Context, f AuditFilter) ([]json.RawMessage, error) {
			if f.Card == "" {
				return []json.RawMessage{json.RawMessage(`{"card_id":"A1","operation":"read"}`), json.RawMessage(`{"card_id":"B2","operation":"block"}`)}, nil
			}
			return []json.RawMessage{json.RawMessage(`{"card_id":"` + f.Card + `","operation":"read"}`)}, nil
		}})
	if err != nil {
		hs.t.Fatal(err)
	}
	hs.h = h
}

// restart closes and reopens the bbolt file and builds a new handler on
// a new station, as a daemon restart would.
func (hs *harness) restart() {
	hs.t.Helper()
	if err := hs.db.Close(); err != nil {
		hs.t.Fatal(err)
	}
	hs.db = openDB(hs.t, hs.dbPath)
	hs.st = newFakeStation()
	hs.build()
}

type req struct {
	method, path string
	role         service.Role // "" = no token
	token        string       // overrides role
	origin       string
	host         string
	header       map[string]string
	body         string
	ctype        string // default application/json when body != ""
}

func (hs *harness) do(r req) *httptest.ResponseRecorder {
	hs.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	hr.Host = testHost
	if r.host != "" {
		hr.Host = r.host
	}
	if r.body != "" {
		ct := r.ctype
		if ct == "" {
			ct = "application/json"
		}
		hr.Header.Set("Content-Type", ct)
	} else if r.ctype != "" {
		hr.Header.Set("Content-Type", r.ctype)
	}
	tok := r.token
	if tok == "" && r.role != "" {
		tok = hs.tokens[r.role]
	}
	if tok != "" {
		hr.Header.Set("Authorization", "Bearer "+tok)
	}
	if r.origin != "" {
		hr.Header.Set("Origin", r.origin)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	hs.h.ServeHTTP(rec, hr)
	validateResponse(hs.t, hr, rec.Code, rec.Header(), rec.Body.Bytes())
	return rec
}

var (
	specOnce sync.Once
	specV    *apitest.Validator
	specErr  error
)

func spec(t *testing.T) *apitest.Validator {
	t.Helper()
	specOnce.Do(func() {
		j, err := OpenAPIJSON()
		if err != nil {
			specErr = err
			return
		}
		specV, specErr = apitest.New(j)
	})
	if specErr != nil {
		t.Fatalf("openapi document: %v", specErr)
	}
	return specV
}

// validateResponse checks one response against the OpenAPI document.
func validateResponse(t *testing.T, r *http.Request, status int, h http.Header, body []byte) {
	t.Helper()
	if err := spec(t).Response(r, status, h, body); err != nil {
		t.Error(err)
	}
}

func decodeProblem(t *testing.T, rec *httptest.ResponseRecorder) problemBody {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("content type %q, want problem+json (status %d, body %s)", ct, rec.Code, rec.Body)
	}
	var p problemBody
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantProblem(t *testing.T, rec *httptest.ResponseRecorder, status int, code service.Code) problemBody {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d (body %s)", rec.Code, status, rec.Body)
	}
	p := decodeProblem(t, rec)
	if p.Code != code || p.Status != status {
		t.Fatalf("problem %s/%d, want %s/%d", p.Code, p.Status, code, status)
	}
	if p.RequestID == "" || p.RequestID != rec.Header().Get("X-Request-Id") {
		t.Fatalf("problem request_id %q, header %q", p.RequestID, rec.Header().Get("X-Request-Id"))
	}
	return p
}

func decodeOp(t *testing.T, rec *httptest.ResponseRecorder) service.Operation {
	t.Helper()
	var op service.Operation
	if err := json.Unmarshal(rec.Body.Bytes(), &op); err != nil {
		t.Fatalf("operation body: %v (%s)", err, rec.Body)
	}
	return op
}

// eventually polls cond (no timing assertion: it only bounds a hang).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("never happened: %s", what)
}
