package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"ssstation/station/service"
)

// Access says who may call a route. The zero value is no declaration:
// New refuses a route table holding one, and so does the table test.
type Access int

const (
	AccessUndeclared Access = iota
	// AccessPublic: no token; browsers only from an allow-listed origin.
	AccessPublic
	// AccessPublicAnyOrigin: no token, any origin (GET /v1/health only).
	AccessPublicAnyOrigin
	// AccessRoles: a bearer token whose role is in Roles (admin always).
	AccessRoles
	// AccessTicket: a single-use event ticket (?ticket=) or a bearer token
	// of any role (desktop programs).
	AccessTicket
)

// Route is one row of THE route table.
type Route struct {
	Method  string
	Pattern string
	Access  Access
	Roles   []service.Role // AccessRoles: who may call (admin includes all)
	// Kind: the card operation a POST starts ("" for the others).
	Kind service.Kind
	// Idempotent: the route changes a card (or its PIN try counter) and
	// needs an Idempotency-Key.
	Idempotent bool
	body       func() cardBody
	h          func(*server, http.ResponseWriter, *http.Request, *Route)
}

var (
	anyRole    = []service.Role{service.RoleCounter, service.RoleBank, service.RoleTechnician, service.RoleAdmin}
	counter    = []service.Role{service.RoleCounter}
	bank       = []service.Role{service.RoleBank}
	counterBnk = []service.Role{service.RoleCounter, service.RoleBank}
	technician = []service.Role{service.RoleTechnician}
	admin      = []service.Role{service.RoleAdmin}
)

// routeTable is every route the API serves, with its access.
var routeTable = []Route{
	{Method: "GET", Pattern: "/v1/health", Access: AccessPublicAnyOrigin, h: (*server).health},
	{Method: "GET", Pattern: "/v1/ready", Access: AccessPublic, h: (*server).ready},
	{Method: "GET", Pattern: "/v1/openapi.json", Access: AccessPublic, h: (*server).openAPI},

	{Method: "GET", Pattern: "/v1/readers", Access: AccessRoles, Roles: technician, h: (*server).readers},
	{Method: "GET", Pattern: "/v1/readers/{id}", Access: AccessRoles, Roles: technician, h: (*server).reader},
	{Method: "POST", Pattern: "/v1/readers/{id}/conform", Access: AccessRoles, Roles: technician, Kind: service.KindConform, body: func() cardBody { return &conformBody{} }, h: (*server).cardOp},
	{Method: "GET", Pattern: "/v1/diagnostics", Access: AccessRoles, Roles: technician, h: (*server).diagnostics},
	{Method: "GET", Pattern: "/v1/refusals", Access: AccessRoles, Roles: technician, h: (*server).refusalsList},
	{Method: "POST", Pattern: "/v1/readers/{id}/apdu", Access: AccessRoles, Roles: technician, Kind: service.KindAPDU, Idempotent: true, body: func() cardBody { return &apduBody{} }, h: (*server).cardOp},

	{Method: "POST", Pattern: "/v1/card/read", Access: AccessRoles, Roles: counterBnk, Kind: service.KindRead, body: func() cardBody { return &readBody{} }, h: (*server).cardOp},
	{Method: "POST", Pattern: "/v1/card/verify", Access: AccessRoles, Roles: counter, Kind: service.KindVerifyCard, body: func() cardBody { return &readerBody{} }, h: (*server).cardOp},
	{Method: "POST", Pattern: "/v1/card/activate", Access: AccessRoles, Roles: counter, Kind: service.KindActivate, Idempotent: true, body: func() cardBody { return &activateBody{} }, h: (*server).cardOp},
	{Method: "POST", Pattern: "/v1/card/block", Access: AccessRoles, Roles: counter, Kind: service.KindBlock, Idempotent: true, body: func() cardBody { return &blockBody{} }, h: (*server).cardOp},
	{Method: "POST", Pattern: "/v1/card/unblock", Access: AccessRoles, Roles: admin, Kind: service.KindUnblock, Idempotent: true, body: func() cardBody { return &readerBody{} }, h: (*server).cardOp},
	{Method: "POST", Pattern: "/v1/card/personalize", Access: AccessRoles, Roles: admin, Kind: service.KindPersonalize, Idempotent: true, body: func() cardBody { return &personalizeBody{} }, h: (*server).cardOp},
	{Method: "POST", Pattern: "/v1/card/resume", Access: AccessRoles, Roles: admin, Kind: service.KindResume, Idempotent: true, body: func() cardBody { return &resumeBody{} }, h: (*server).cardOp},

	{Method: "POST", Pattern: "/v1/card/pin/tries", Access: AccessRoles, Roles: bank, Kind: service.KindPINTries, body: func() cardBody { return &readerBody{} }, h: (*server).cardOp},
	// A wrong PIN costs a try: a retried verify must not cost two.
	{Method: "POST", Pattern: "/v1/card/pin/verify", Access: AccessRoles, Roles: bank, Kind: service.KindPINVerify, Idempotent: true, body: func() cardBody { return &pinVerifyBody{} }, h: (*server).cardOp},
	{Method: "POST", Pattern: "/v1/card/pin/change", Access: AccessRoles, Roles: bank, Kind: service.KindPINChange, Idempotent: true, body: func() cardBody { return &pinChangeBody{} }, h: (*server).cardOp},
	{Method: "POST", Pattern: "/v1/card/pin/reload", Access: AccessRoles, Roles: bank, Kind: service.KindPINReload, Idempotent: true, body: func() cardBody { return &pinReloadBody{} }, h: (*server).cardOp},
	{Method: "POST", Pattern: "/v1/card/pin/unblock", Access: AccessRoles, Roles: bank, Kind: service.KindPINUnblock, Idempotent: true, body: func() cardBody { return &readerBody{} }, h: (*server).cardOp},

	{Method: "GET", Pattern: "/v1/operations/{id}", Access: AccessRoles, Roles: anyRole, h: (*server).operation},
	{Method: "DELETE", Pattern: "/v1/operations/{id}", Access: AccessRoles, Roles: anyRole, h: (*server).cancelOperation},

	{Method: "POST", Pattern: "/v1/event-tickets", Access: AccessRoles, Roles: anyRole, h: (*server).newTicket},
	{Method: "GET", Pattern: "/v1/events", Access: AccessTicket, h: (*server).events},

	{Method: "GET", Pattern: "/v1/audit", Access: AccessRoles, Roles: admin, h: (*server).auditList},
	{Method: "GET", Pattern: "/v1/audit/verify", Access: AccessRoles, Roles: admin, h: (*server).auditVerifyChain},
	{Method: "GET", Pattern: "/metrics", Access: AccessRoles, Roles: technician, h: (*server).metricsHandler},
}

// RouteTable returns a copy of the route table (for tests and docs).
func RouteTable() []Route { return slices.Clone(routeTable) }

func checkRouteTable(rs []Route) error {
	seen := map[string]bool{}
	for _, r := range rs {
		id := r.Method + " " + r.Pattern
		if seen[id] {
			return fmt.Errorf("api: route %s declared twice", id)
		}
		seen[id] = true
		switch r.Access {
		case AccessPublic, AccessPublicAnyOrigin, AccessTicket:
		case AccessRoles:
			if len(r.Roles) == 0 {
				return fmt.Errorf("api: route %s declares no role", id)
			}
		default:
			return fmt.Errorf("api: route %s declares no access", id)
		}
		if r.h == nil {
			return fmt.Errorf("api: route %s has no handler", id)
		}
		if r.Kind != "" && r.Kind.Writes() && !r.Idempotent {
			return fmt.Errorf("api: route %s writes a card without an Idempotency-Key", id)
		}
		if r.Kind != "" && r.body == nil {
			return fmt.Errorf("api: route %s has no body type", id)
		}
	}
	return nil
}

type ctxKey int

const (
	keyCaller ctxKey = iota
	keyToken
	keyRequestID
	keyInfo
)

// reqInfo is filled in by guard for the request's log line.
type reqInfo struct {
	token, operator string
}

// callerFrom returns the authenticated caller (nil on public routes).
func callerFrom(ctx context.Context) *service.Caller {
	c, _ := ctx.Value(keyCaller).(*service.Caller)
	return c
}

func requestIDFrom(ctx context.Context) string {
	s, _ := ctx.Value(keyRequestID).(string)
	return s
}

// checkHost refuses any Host but our loopback names with our port, before
// anything else happens (DNS rebinding).
func (s *server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, s.port) {
			// no CORS headers: a rebound page learns nothing
			s.refusals.record(r, CodeHostNotAllowed, "the Host header is not 127.0.0.1, [::1] or localhost with this station's port (DNS rebinding guard)")
			writeCode(w, r, CodeHostNotAllowed, "use http://127.0.0.1:<port>/, http://[::1]:<port>/ or http://localhost:<port>/")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// guard authenticates, checks the origin and the role, then calls the
// route's handler with the caller in the context.
func (s *server) guard(rt *Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		switch rt.Access {
		case AccessPublicAnyOrigin:
			if origin != "" {
				setCORS(w, origin)
			}
		case AccessPublic:
			if origin != "" {
				if !s.tokens.anyOrigins[origin] && !s.ownOrigin(origin) {
					s.refusals.record(r, CodeOriginNotAllowed, "no token allows this origin")
					writeCode(w, r, CodeOriginNotAllowed, "")
					return
				}
				setCORS(w, origin)
			}
		case AccessRoles, AccessTicket:
			var rec TokenRecord
			if tok, ok := bearer(r); ok {
				var found bool
				if rec, found = s.tokens.lookup(tok); !found {
					writeCode(w, r, CodeUnauthorized, "the token is not known to this station")
					return
				}
			} else if rt.Access == AccessTicket && r.URL.Query().Get("ticket") != "" {
				var ok bool
				if rec, ok = s.tickets.redeem(r.URL.Query().Get("ticket")); !ok {
					writeCode(w, r, CodeTicketInvalid, "get a new ticket from POST /v1/event-tickets")
					return
				}
			} else {
				writeCode(w, r, CodeUnauthorized, "send Authorization: Bearer <token>")
				return
			}
			if origin != "" {
				if !rec.allowsOrigin(origin) && !s.ownOrigin(origin) {
					s.refusals.record(r, CodeOriginNotAllowed, "the token sent does not allow this origin (add it with stationd token add --origin)")
					writeCode(w, r, CodeOriginNotAllowed, "")
					return
				}
				setCORS(w, origin)
			}
			if rt.Access == AccessRoles && !roleAllows(rec.Role, rt.Roles) {
				writeCode(w, r, CodeForbiddenRole, "")
				return
			}
			c := &service.Caller{
				TokenName:  rec.Name,
				Role:       rec.Role,
				OperatorID: operatorID(r),
				RequestID:  requestIDFrom(r.Context()),
				MaySeeSSN:  maySeeSSN(rec.Role),
			}
			if info, ok := r.Context().Value(keyInfo).(*reqInfo); ok {
				info.token, info.operator = c.TokenName, c.OperatorID
			}
			ctx := context.WithValue(r.Context(), keyCaller, c)
			r = r.WithContext(context.WithValue(ctx, keyToken, rec))
		}
		rt.h(s, w, r, rt)
	})
}

// operatorID takes X-Operator-Id as the staff member's id: printable
// ASCII, at most 64 characters (anything else is dropped, not echoed).
func operatorID(r *http.Request) string {
	v := strings.TrimSpace(r.Header.Get("X-Operator-Id"))
	if len(v) > 64 {
		return ""
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return ""
		}
	}
	return v
}

// preflight answers CORS preflights. A preflight carries no token, so an
// origin is allowed when any token allows it (the real request is then
// checked against its own token). Others get 403 and no CORS headers.
func (s *server) preflight(pattern string, methods []string) http.HandlerFunc {
	anyOrigin := false
	for _, rt := range routeTable {
		if rt.Pattern == pattern && rt.Access == AccessPublicAnyOrigin {
			anyOrigin = true
		}
	}
	allow := strings.Join(append(slices.Clone(methods), "OPTIONS"), ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		want := r.Header.Get("Access-Control-Request-Method")
		if origin == "" || want == "" {
			w.Header().Set("Allow", allow)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if (!anyOrigin && !s.tokens.anyOrigins[origin] && !s.ownOrigin(origin)) || !slices.Contains(methods, want) {
			reason := "preflight: no token allows this origin"
			if !slices.Contains(methods, want) {
				reason = "preflight: the method asked for is not served on this route"
			}
			s.refusals.record(r, CodeOriginNotAllowed, reason)
			writeCode(w, r, CodeOriginNotAllowed, "")
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		h.Add("Vary", "Access-Control-Request-Private-Network")
		h.Set("Access-Control-Allow-Methods", strings.Join(methods, ", "))
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", "600")
		if strings.EqualFold(r.Header.Get("Access-Control-Request-Private-Network"), "true") {
			h.Set("Access-Control-Allow-Private-Network", "true")
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
