package api

import (
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"ssstation/station/service"
)

func concretePath(p string) string {
	p = strings.Replace(p, "/v1/readers/{id}", "/v1/readers/r1", 1)
	return strings.Replace(p, "/v1/operations/{id}", "/v1/operations/op-1", 1)
}

func wrongRole(rt Route) (service.Role, bool) {
	for _, r := range []service.Role{service.RoleCounter, service.RoleBank, service.RoleTechnician} {
		if !slices.Contains(rt.Roles, r) {
			return r, true
		}
	}
	return "", false
}

func rightRole(rt Route) service.Role {
	if rt.Access == AccessTicket {
		return service.RoleCounter
	}
	if len(rt.Roles) > 0 {
		return rt.Roles[0]
	}
	return ""
}

func noCORS(t *testing.T, h http.Header) {
	t.Helper()
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("CORS header %s on a refused request", k)
		}
	}
}

// TestRouteTableCallers walks THE route table: on every route a missing
// token gets 401, a wrong role 403, a foreign Host 403, a foreign Origin
// 403 without CORS headers, a disallowed preflight 403 without CORS
// headers; an allowed preflight gets the origin echoed, Vary: Origin,
// the methods and headers, and the Private Network answer when asked.
// None of it reaches the station.
func TestRouteTableCallers(t *testing.T) {
	hs := newHarness(t)
	withWrongRole := 0
	for _, rt := range RouteTable() {
		t.Run(rt.Method+" "+rt.Pattern, func(t *testing.T) {
			if rt.Access == AccessUndeclared {
				t.Fatal("route declares no access")
			}
			path := concretePath(rt.Pattern)
			body := ""
			if rt.Method == "POST" {
				body = "{}"
			}
			public := rt.Access == AccessPublic || rt.Access == AccessPublicAnyOrigin

			// foreign Host, with and without a valid token
			for _, host := range []string{"evil.example.com:18420", "127.0.0.1:9999", "127.0.0.1", "localhost.evil.com:18420", "10.0.0.5:18420"} {
				rec := hs.do(req{method: rt.Method, path: path, role: rightRole(rt), host: host, body: body})
				wantProblem(t, rec, 403, CodeHostNotAllowed)
			}
			for _, host := range []string{"localhost:18420", "[::1]:18420", "127.0.0.1:18420"} {
				rec := hs.do(req{method: "GET", path: "/v1/health", host: host})
				if rec.Code != 200 {
					t.Fatalf("Host %s refused: %d", host, rec.Code)
				}
			}

			if !public {
				rec := hs.do(req{method: rt.Method, path: path, body: body})
				wantProblem(t, rec, 401, CodeUnauthorized)
				if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
					t.Fatal("401 without WWW-Authenticate")
				}
				rec = hs.do(req{method: rt.Method, path: path, token: "sst_not-a-token", body: body})
				wantProblem(t, rec, 401, CodeUnauthorized)
				if wr, ok := wrongRole(rt); ok && rt.Access == AccessRoles {
					withWrongRole++
					rec = hs.do(req{method: rt.Method, path: path, role: wr, body: body})
					wantProblem(t, rec, 403, CodeForbiddenRole)
				} else if rt.Access == AccessRoles && !slices.Equal(rt.Roles, anyRole) {
					t.Fatal("no wrong role found for a route not open to every role")
				}
			}

			// foreign Origin
			rec := hs.do(req{method: rt.Method, path: path, role: rightRole(rt), origin: badOrigin, body: body})
			if rt.Access == AccessPublicAnyOrigin {
				if rec.Code != 200 || rec.Header().Get("Access-Control-Allow-Origin") != badOrigin {
					t.Fatalf("health from any origin: %d %q", rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
				}
			} else {
				wantProblem(t, rec, 403, CodeOriginNotAllowed)
				noCORS(t, rec.Header())
			}

			// preflights
			pre := func(origin string, pna bool) *http.Response {
				hdr := map[string]string{"Access-Control-Request-Method": rt.Method,
					"Access-Control-Request-Headers": "authorization, content-type, idempotency-key"}
				if pna {
					hdr["Access-Control-Request-Private-Network"] = "true"
				}
				return hs.do(req{method: "OPTIONS", path: path, origin: origin, header: hdr}).Result()
			}
			if rt.Access != AccessPublicAnyOrigin {
				res := pre(badOrigin, true)
				if res.StatusCode != 403 {
					t.Fatalf("disallowed preflight: %d", res.StatusCode)
				}
				noCORS(t, res.Header)
			}
			res := pre(goodOrigin, true)
			if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != goodOrigin ||
				!slices.Contains(res.Header.Values("Vary"), "Origin") ||
				!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), rt.Method) ||
				res.Header.Get("Access-Control-Allow-Private-Network") != "true" {
				t.Fatalf("allowed preflight: %d %v", res.StatusCode, res.Header)
			}
			for _, h := range []string{"Authorization", "Content-Type", "Idempotency-Key", "Prefer", "X-Operator-Id"} {
				if !strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), h) {
					t.Fatalf("preflight does not allow %s", h)
				}
			}
			if res.Header.Get("Access-Control-Allow-Origin") == "*" || res.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Fatal("wildcard or credentials in CORS")
			}
			if pre(goodOrigin, false).Header.Get("Access-Control-Allow-Private-Network") != "" {
				t.Fatal("Private Network allowed without being asked")
			}

			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("Cache-Control %q", cc)
			}
			if n := hs.st.Submits(); n != 0 {
				t.Fatalf("the station was called %d times by refused requests", n)
			}
			// the allowed origin with the right token gets its origin echoed
			if rt.Access != AccessTicket {
				rec := hs.do(req{method: rt.Method, path: path, role: rightRole(rt), origin: goodOrigin, body: body})
				if rec.Header().Get("Access-Control-Allow-Origin") != goodOrigin || rec.Code == 401 || rec.Code == 403 {
					t.Fatalf("allowed origin: %d %q %s", rec.Code, rec.Header().Get("Access-Control-Allow-Origin"), rec.Body)
				}
			}
			hs.st = newFakeStation() // forget the allowed request's submit
			hs.build()
		})
	}
	if withWrongRole < 15 {
		t.Fatalf("only %d routes had a wrong role checked", withWrongRole)
	}
}

// TestUndeclaredRouteRefused: a route without declared access, or with
// AccessRoles and no role, stops New.
func TestUndeclaredRouteRefused(t *testing.T) {
	base := RouteTable()
	for _, bad := range []Route{
		{Method: "GET", Pattern: "/v1/new", h: (*server).health},
		{Method: "GET", Pattern: "/v1/new", Access: AccessRoles, h: (*server).health},
		{Method: "POST", Pattern: "/v1/card/x", Access: AccessRoles, Roles: admin, Kind: service.KindBlock, body: func() cardBody { return &readerBody{} }, h: (*server).cardOp},
	} {
		if err := checkRouteTable(append(slices.Clone(base), bad)); err == nil {
			t.Errorf("route %+v accepted", bad)
		}
	}
	if err := checkRouteTable(base); err != nil {
		t.Fatal(err)
	}
}

// TestAdminIncludesEveryRole: the documented decision.
func TestAdminIncludesEveryRole(t *testing.T) {
	hs := newHarness(t)
	rec := hs.do(req{method: "GET", path: "/v1/readers", role: service.RoleAdmin})
	if rec.Code != 200 {
		t.Fatalf("admin on readers: %d", rec.Code)
	}
	rec = hs.do(req{method: "POST", path: "/v1/card/read", role: service.RoleAdmin, body: `{}`, header: map[string]string{"Prefer": "wait=10"}})
	if rec.Code != 200 {
		t.Fatalf("admin read: %d %s", rec.Code, rec.Body)
	}
}

// TestNoCardImports: the HTTP layer never links pcsc or cardapp.
func TestNoCardImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "ssstation/station/api").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "ssstation/pcsc" || strings.HasPrefix(dep, "ssstation/pcsc/") || dep == "ssstation/cardapp" || strings.HasPrefix(dep, "ssstation/cardapp/") {
			t.Errorf("station/api depends on %s", dep)
		}
	}
	if !strings.Contains(string(out), "ssstation/station/service") {
		t.Fatal("go list output does not look like a dependency list")
	}
}

func TestTokens(t *testing.T) {
	tok, rec, err := NewToken("counter-1", "counter", []string{"https://Counter.Example.cn:8443/"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "sst_") || len(tok) < 40 || strings.Contains(rec.Hash, tok) || rec.Hash != HashToken(tok) {
		t.Fatalf("token %q record %+v", tok, rec)
	}
	if rec.Origins[0] != "https://counter.example.cn:8443" {
		t.Fatalf("origin kept as %q", rec.Origins[0])
	}
	for _, bad := range [][]string{{"*"}, {"https://*.example.cn"}, {"https://a.cn/path"}, {"file://x"}, {"null"}} {
		if _, _, err := NewToken("x", "counter", bad); err == nil {
			t.Errorf("origin %q accepted", bad)
		}
	}
	if _, _, err := NewToken("x", "root", nil); err == nil {
		t.Error("unknown role accepted")
	}
	ts, err := newTokenSet([]TokenRecord{rec})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ts.lookup(tok); !ok {
		t.Fatal("token not found")
	}
	if _, ok := ts.lookup(tok + "x"); ok {
		t.Fatal("wrong token found")
	}
}
