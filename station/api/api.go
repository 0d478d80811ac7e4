// Package api is the station's HTTP layer: the /v1 routes counter and
// bank software call, their callers (bearer tokens, browser origins,
// Host), problem+json errors, idempotency, Server-Sent Events and metrics.
//
// It drives the station only through service.Station and never imports
// pcsc or cardapp (TestNoCardImports enforces it): everything it needs
// is plain data in station/service.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"ssstation/station/service"
	"ssstation/web"
)

// DefaultPort is the documented port of stationd.
const DefaultPort = 18420

// Limits of the HTTP layer.
const (
	MaxBodyBytes   = 64 << 10         // a personalization is well under 2 KiB
	MaxWait        = 60 * time.Second // Prefer: wait and ?wait= are capped here
	IdempotencyTTL = 24 * time.Hour
	TicketTTL      = 60 * time.Second
	Heartbeat      = 15 * time.Second
)

// AuditFilter selects audit records (GET /v1/audit).
type AuditFilter struct {
	Card  string    // card identification code; "" = any
	From  time.Time // inclusive; zero = no lower bound
	To    time.Time // exclusive; zero = no upper bound
	Limit int       // at most this many (newest last)
}

// AuditQuery reads the audit trail; the daemon adapts station/audit to it.
// Records are returned as stored (SSN already masked there).
type AuditQuery func(ctx context.Context, f AuditFilter) ([]json.RawMessage, error)

// AuditCheck is the answer of GET /v1/audit/verify.
type AuditCheck struct {
	OK             bool        `json:"ok"`
	Entries        int         `json:"entries"`
	OutcomeUnknown int         `json:"outcome_unknown"`
	Break          *AuditBreak `json:"break,omitempty"`
}

// AuditBreak names the first entry where the chain does not hold.
type AuditBreak struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

// AuditVerify checks the audit trail's chain; the daemon adapts
// station/audit to it.
type AuditVerify func(ctx context.Context) (*AuditCheck, error)

// Options configure the handler.
type Options struct {
	Station service.Station
	// DB is the station's one bbolt file; the API keeps its idempotency
	// records in its own bucket there.
	DB      *bolt.DB
	Tokens  []TokenRecord
	Port    int // the port we listen on, for the Host check
	Logger  zerolog.Logger
	Version string
	// Registry gets the HTTP metrics; Gatherer serves /metrics (when nil
	// and Registry is a *prometheus.Registry, that one is used).
	Registry prometheus.Registerer
	Gatherer prometheus.Gatherer
	Audit    AuditQuery
	// AuditVerify serves GET /v1/audit/verify (the console's chain check).
	AuditVerify AuditVerify
	// Heartbeat of the event stream (default 15 s) and the clock
	// (default time.Now); tests set them.
	Heartbeat time.Duration
	Now       func() time.Time
	// TestKeys: the station runs with the public test keys. Every answer
	// then carries X-Station-Test-Keys: true, and /v1/health test_keys.
	TestKeys bool
}

type server struct {
	st      service.Station
	tokens  *tokenSet
	port    int
	log     zerolog.Logger
	version string
	audit   AuditQuery
	// auditVerify checks the chain (nil: not configured).
	auditVerify AuditVerify
	idem        *idemStore
	owners      *ownerStore
	tickets     *ticketStore
	metrics     *httpMetrics
	gather      prometheus.Gatherer
	beat        time.Duration
	now         func() time.Time
	openapi     []byte
	// refusals: the recent refused origins and Host headers.
	refusals *refusalRing
	testKeys bool
}

// New builds the handler. It fails when a route lacks its declared
// access, a token record is malformed or the idempotency bucket cannot
// be opened.
func New(o Options) (http.Handler, error) {
	if o.Station == nil || o.DB == nil {
		return nil, errors.New("api: Station and DB are required")
	}
	if o.Port <= 0 {
		return nil, errors.New("api: Port is required for the Host check")
	}
	if err := checkRouteTable(routeTable); err != nil {
		return nil, err
	}
	ts, err := newTokenSet(o.Tokens)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s := &server{
		st: o.Station, tokens: ts, port: o.Port, log: o.Logger, version: o.Version,
		audit: o.Audit, auditVerify: o.AuditVerify, beat: o.Heartbeat, now: o.Now, gather: o.Gatherer, testKeys: o.TestKeys,
	}
	if s.beat <= 0 {
		s.beat = Heartbeat
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.idem, err = openIdemStore(o.DB, s.now); err != nil {
		return nil, err
	}
	if s.owners, err = openOwnerStore(o.DB, s.now); err != nil {
		return nil, err
	}
	s.tickets = newTicketStore(s.now)
	s.refusals = newRefusalRing(s.now)
	if s.openapi, err = openAPIJSON(); err != nil {
		return nil, err
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if s.gather == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			s.gather = g
		} else {
			s.gather = prometheus.DefaultGatherer
		}
	}
	if s.metrics, err = newHTTPMetrics(reg); err != nil {
		return nil, err
	}
	return s.router(), nil
}

// Server wraps the handler with the timeouts the API is designed for:
// slow-loris headers, request bodies, and a write timeout long enough
// for a capped long-poll (the event stream extends its own deadline).
func Server(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      MaxWait + 30*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

func (s *server) router() http.Handler {
	r := chi.NewRouter()
	r.Use(s.logRequests, s.markTestKeys, s.checkHost)
	// The browser files (SDK, console, example page), behind the same Host check.
	for _, p := range []string{"/sdk/*", "/console", "/console/*", "/examples/*"} {
		r.Handle(p, web.Handler())
	}
	methods := map[string][]string{}
	for _, rt := range routeTable {
		methods[rt.Pattern] = append(methods[rt.Pattern], rt.Method)
	}
	for i := range routeTable {
		rt := &routeTable[i]
		r.Method(rt.Method, rt.Pattern, s.guard(rt))
	}
	for pattern, ms := range methods {
		r.Options(pattern, s.preflight(pattern, ms))
	}
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeCode(w, r, service.CodeNotFound, "no route "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeCode(w, r, CodeMethodNotAllowed, r.Method+" is not served on "+r.URL.Path)
	})
	return r
}

// TestKeysHeader marks every answer of a station running with the public
// test keys (docs/api.md): a counter page or a log cannot mistake it for
// a production station.
const TestKeysHeader = "X-Station-Test-Keys"

func (s *server) markTestKeys(next http.Handler) http.Handler {
	if !s.testKeys {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(TestKeysHeader, "true")
		next.ServeHTTP(w, r)
	})
}

func newID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
