package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"ssstation/station/service"
)

// cardRoutes are the routes that start operations.
func cardRoutes() []Route {
	var out []Route
	for _, rt := range RouteTable() {
		if rt.Kind != "" {
			out = append(out, rt)
		}
	}
	return out
}

var keyN int

func freshKey() string { keyN++; return fmt.Sprintf("key-%d-%d", time.Now().UnixNano(), keyN) }

// TestBadBodiesNeverReachTheStation: malformed JSON, unknown fields,
// oversized bodies, wrong content types, trailing data and bad PIN
// formats get 4xx problem+json on every card route, and the station is
// never called.
func TestBadBodiesNeverReachTheStation(t *testing.T) {
	hs := newHarness(t)
	big := `{"reader_id":"` + strings.Repeat("a", MaxBodyBytes) + `"}`
	for _, rt := range cardRoutes() {
		path := concretePath(rt.Pattern)
		role := rt.Roles[0]
		hdr := map[string]string{"Idempotency-Key": freshKey()}
		cases := []struct {
			name, body, ctype string
			status            int
			code              service.Code
		}{
			{"malformed", `{"reader_id":`, "", 400, CodeInvalidJSON},
			{"not an object", `[1,2]`, "", 400, CodeInvalidJSON},
			{"unknown field", `{"reader_idd":"r1"}`, "", 400, CodeInvalidJSON},
			{"trailing data", `{} {}`, "", 400, CodeInvalidJSON},
			{"wrong type", `{"reader_id":5}`, "", 400, CodeInvalidJSON},
			{"oversized", big, "", 413, CodeBodyTooLarge},
			{"text/plain", `{}`, "text/plain", 415, CodeUnsupportedMedia},
			{"form", `a=b`, "application/x-www-form-urlencoded", 415, CodeUnsupportedMedia},
			{"latin1", `{}`, "application/json; charset=iso-8859-1", 415, CodeUnsupportedMedia},
			{"no body", ``, "", 415, CodeUnsupportedMedia},
		}
		for _, c := range cases {
			hdr["Idempotency-Key"] = freshKey()
			rec := hs.do(req{method: "POST", path: path, role: role, body: c.body, ctype: c.ctype, header: hdr})
			p := decodeProblem(t, rec)
			if rec.Code != c.status || p.Code != c.code {
				t.Errorf("%s %s: %d %s, want %d %s", path, c.name, rec.Code, p.Code, c.status, c.code)
			}
		}
	}
	pinCases := []struct{ path, body string }{
		{"/v1/card/pin/verify", `{"pin":"12a456"}`},
		{"/v1/card/pin/verify", `{"pin":"123"}`},
		{"/v1/card/pin/verify", `{"pin":"1234567890123"}`},
		{"/v1/card/pin/verify", `{}`},
		{"/v1/card/pin/verify", `{"pin":"１２３４５６"}`},
		{"/v1/card/pin/verify", `{"pin_entry":"pinpad","pin":"123456"}`},
		{"/v1/card/pin/change", `{"old_pin":"123456","new_pin":"65432 ","new_pin_confirm":"65432 "}`},
		{"/v1/card/pin/change", `{"old_pin":"","new_pin":"654321","new_pin_confirm":"654321"}`},
		{"/v1/card/pin/reload", `{"new_pin":"654321"}`},
		{"/v1/card/activate", `{"pin":"-12345","pin_confirm":"-12345"}`},
	}
	for _, c := range pinCases {
		rec := hs.do(req{method: "POST", path: c.path, role: service.RoleBank, body: c.body, header: map[string]string{"Idempotency-Key": freshKey()}})
		if c.path == "/v1/card/activate" {
			rec = hs.do(req{method: "POST", path: c.path, role: service.RoleCounter, body: c.body, header: map[string]string{"Idempotency-Key": freshKey()}})
		}
		p := wantProblem(t, rec, 400, CodePINFormat)
		if strings.Contains(rec.Body.String(), "12345") || p.LegacyCode != -33 {
			t.Errorf("%s: problem %s", c.body, rec.Body)
		}
	}
	// the two entries differ: refused here with the legacy -34
	rec := hs.do(req{method: "POST", path: "/v1/card/activate", role: service.RoleCounter, body: `{"pin":"123456","pin_confirm":"123465"}`, header: map[string]string{"Idempotency-Key": freshKey()}})
	if p := wantProblem(t, rec, 422, service.CodePINPolicy); p.LegacyCode != -34 {
		t.Errorf("mismatch legacy %d", p.LegacyCode)
	}
	for _, b := range []string{`{"block_kind":"forever"}`, `{"reader_id":"../etc"}`} {
		rec := hs.do(req{method: "POST", path: "/v1/card/block", role: service.RoleCounter, body: b, header: map[string]string{"Idempotency-Key": freshKey()}})
		wantProblem(t, rec, 400, CodeInvalidRequest)
	}
	rec = hs.do(req{method: "POST", path: "/v1/readers/r1/apdu", role: service.RoleTechnician, body: `{"apdus":["00A4"]}`, header: map[string]string{"Idempotency-Key": freshKey()}})
	wantProblem(t, rec, 400, CodeInvalidRequest)
	rec = hs.do(req{method: "POST", path: "/v1/card/personalize", role: service.RoleAdmin, body: `{"holder":{"ssn":"x","shoe_size":"42"},"card":{}}`, header: map[string]string{"Idempotency-Key": freshKey()}})
	wantProblem(t, rec, 400, CodeInvalidJSON)
	if n := hs.st.Submits(); n != 0 {
		t.Fatalf("station called %d times", n)
	}
}

func TestReadMasksSSNByRoleAndPassesTheCaller(t *testing.T) {
	hs := newHarness(t)
	for role, masked := range map[service.Role]bool{service.RoleBank: true, service.RoleCounter: false} {
		rec := hs.do(req{method: "POST", path: "/v1/card/read", role: role, body: `{}`,
			header: map[string]string{"Prefer": "wait=10", "X-Operator-Id": "clerk-007"}})
		if rec.Code != 200 || rec.Header().Get("Preference-Applied") != "wait=10" {
			t.Fatalf("%s read: %d %s", role, rec.Code, rec.Body)
		}
		op := decodeOp(t, rec)
		var res struct {
			Card struct {
				SSN string `json:"ssn"`
			} `json:"card"`
			IReadCardBas string `json:"ireadcardbas"`
		}
		if err := json.Unmarshal(op.Result, &res); err != nil {
			t.Fatal(err)
		}
		full := strings.Contains(rec.Body.String(), fakeSSN)
		if full == masked || strings.Count(res.IReadCardBas, "|") != 9 || op.State != service.StateDone || op.ReaderID != "r1" {
			t.Fatalf("%s: masked=%v body %s", role, masked, rec.Body)
		}
		c := hs.st.lastReq.Caller
		if c.TokenName != "t-"+string(role) || c.Role != role || c.OperatorID != "clerk-007" || c.MaySeeSSN == masked || c.RequestID != rec.Header().Get("X-Request-Id") {
			t.Fatalf("caller %+v", c)
		}
	}
	rec := hs.do(req{method: "POST", path: "/v1/card/read", role: service.RoleBank, body: `{"full":true}`, header: map[string]string{"Prefer": "wait=10"}})
	if op := decodeOp(t, rec); op.Kind != service.KindReadFull {
		t.Fatalf("full read kind %s", op.Kind)
	}
}

// TestOperationsAsResources: without a wait the answer is 202 with
// Location; the operation long-polls to its end; a cancel is refused
// while a card write is in flight and works otherwise.
func TestOperationsAsResources(t *testing.T) {
	hs := newHarness(t)
	hs.st.hold = make(chan struct{})
	rec := hs.do(req{method: "POST", path: "/v1/card/verify", role: service.RoleCounter, body: `{"reader_id":"r1"}`})
	if rec.Code != 202 {
		t.Fatalf("verify without wait: %d", rec.Code)
	}
	op := decodeOp(t, rec)
	loc := rec.Header().Get("Location")
	if loc != "/v1/operations/"+op.ID || op.State != service.StateRunning {
		t.Fatalf("location %q op %+v", loc, op)
	}
	rec = hs.do(req{method: "GET", path: loc, role: service.RoleCounter, origin: goodOrigin})
	if rec.Code != 200 || decodeOp(t, rec).State != service.StateRunning {
		t.Fatalf("poll: %d %s", rec.Code, rec.Body)
	}
	// operation ids reach every event subscriber: only the token that
	// started it (and admin) may see it
	wantProblem(t, hs.do(req{method: "GET", path: loc, role: service.RoleBank}), 404, service.CodeNotFound)
	wantProblem(t, hs.do(req{method: "DELETE", path: loc, role: service.RoleBank}), 404, service.CodeNotFound)
	other, rec2, err := NewToken("counter-2", "counter", nil)
	if err != nil {
		t.Fatal(err)
	}
	hs.recs = append(hs.recs, rec2)
	hs.build()
	wantProblem(t, hs.do(req{method: "GET", path: loc, token: other}), 404, service.CodeNotFound)
	if rec := hs.do(req{method: "GET", path: loc, role: service.RoleAdmin}); rec.Code != 200 {
		t.Fatalf("admin view: %d", rec.Code)
	}
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- hs.do(req{method: "GET", path: loc + "?wait=30", role: service.RoleCounter}) }()
	close(hs.st.hold)
	rec = <-done
	if op := decodeOp(t, rec); rec.Code != 200 || op.State != service.StateDone || op.Progress != 1 || len(op.Steps) != 1 || op.Steps[0].State != "done" {
		t.Fatalf("long poll: %d %s", rec.Code, rec.Body)
	}

	hs.st.hold = make(chan struct{})
	defer close(hs.st.hold)
	rec = hs.do(req{method: "POST", path: "/v1/card/pin/tries", role: service.RoleBank, body: `{}`, header: map[string]string{"Prefer": "wait=0"}})
	op = decodeOp(t, rec)
	rec = hs.do(req{method: "DELETE", path: "/v1/operations/" + op.ID, role: service.RoleBank})
	if rec.Code != 200 || decodeOp(t, rec).State != service.StateCancelled {
		t.Fatalf("cancel: %d %s", rec.Code, rec.Body)
	}
	hs.st.writeBusy = true
	rec = hs.do(req{method: "POST", path: "/v1/card/block", role: service.RoleCounter, body: `{}`, header: map[string]string{"Idempotency-Key": freshKey()}})
	op = decodeOp(t, rec)
	wantProblem(t, hs.do(req{method: "DELETE", path: "/v1/operations/" + op.ID, role: service.RoleCounter}), 409, service.CodeCancelRefused)
	wantProblem(t, hs.do(req{method: "GET", path: "/v1/operations/nope", role: service.RoleCounter}), 404, service.CodeNotFound)
	wantProblem(t, hs.do(req{method: "GET", path: loc + "?wait=soon", role: service.RoleCounter}), 400, CodeInvalidRequest)
}

// TestProblems: a wrong PIN answers problem+json with tries_left, sw and
// the legacy code; station refusals keep their code, Retry-After is set;
// an error that is not a Problem never shows its text.
func TestProblems(t *testing.T) {
	hs := newHarness(t)
	rec := hs.do(req{method: "POST", path: "/v1/card/pin/verify", role: service.RoleBank, body: `{"pin":"000000"}`,
		header: map[string]string{"Idempotency-Key": freshKey(), "Prefer": "wait=10"}})
	p := wantProblem(t, rec, 422, service.CodePINIncorrect)
	if p.TriesLeft == nil || *p.TriesLeft != 2 || p.SW != "63C2" || p.LegacyCode != -51 || p.OperationID == "" || p.ReaderID != "r1" || !strings.HasPrefix(p.Type, problemTypeBase) || p.Instance != "/v1/card/pin/verify" {
		t.Fatalf("wrong PIN problem %+v", p)
	}
	if strings.Contains(rec.Body.String(), "000000") {
		t.Fatal("PIN in the problem")
	}
	// two more wrong PINs block it
	hs.do(req{method: "POST", path: "/v1/card/pin/verify", role: service.RoleBank, body: `{"pin":"000000"}`, header: map[string]string{"Idempotency-Key": freshKey(), "Prefer": "wait=10"}})
	rec = hs.do(req{method: "POST", path: "/v1/card/pin/verify", role: service.RoleBank, body: `{"pin":"000000"}`, header: map[string]string{"Idempotency-Key": freshKey(), "Prefer": "wait=10"}})
	if p := wantProblem(t, rec, 423, service.CodePINBlocked); p.LegacyCode != -52 {
		t.Fatalf("blocked legacy %d", p.LegacyCode)
	}

	hs.st.readers[2].CardPresent = true // two card readers hold a card
	wantProblem(t, hs.do(req{method: "POST", path: "/v1/card/read", role: service.RoleBank, body: `{}`}), 409, service.CodeAmbiguousReader)
	rec = hs.do(req{method: "POST", path: "/v1/card/pin/verify", role: service.RoleBank, body: `{"reader_id":"r1","pin_entry":"pinpad"}`, header: map[string]string{"Idempotency-Key": freshKey()}})
	wantProblem(t, rec, 422, service.CodePINPadMissing)
	hs.st.readers[0].CardPresent = false
	if p := wantProblem(t, hs.do(req{method: "POST", path: "/v1/card/read", role: service.RoleBank, body: `{"reader_id":"r1"}`}), 409, service.CodeCardAbsent); p.LegacyCode != -2 {
		t.Fatalf("absent legacy %d", p.LegacyCode)
	}
	wantProblem(t, hs.do(req{method: "POST", path: "/v1/card/read", role: service.RoleBank, body: `{"reader_id":"r9"}`}), 404, service.CodeReaderNotFound)
	wantProblem(t, hs.do(req{method: "GET", path: "/v1/readers/r9", role: service.RoleTechnician}), 404, service.CodeReaderNotFound)

	hs.st.notReady = &service.Problem{Code: service.CodePCSCUnavailable, Title: "down", Retryable: true, RetryAfter: 1500 * time.Millisecond}
	rec = hs.do(req{method: "GET", path: "/v1/ready"})
	if p := wantProblem(t, rec, 503, service.CodePCSCUnavailable); !p.Retryable || rec.Header().Get("Retry-After") != "2" {
		t.Fatalf("retry-after %q retryable %v", rec.Header().Get("Retry-After"), p.Retryable)
	}
	hs.st.notReady = errors.New("open /var/run/pcscd/pcscd.comm: no such file or directory")
	rec = hs.do(req{method: "GET", path: "/v1/ready"})
	wantProblem(t, rec, 503, CodeNotReady)
	if strings.Contains(rec.Body.String(), "pcscd.comm") {
		t.Fatal("OS string in the answer")
	}
	wantProblem(t, hs.do(req{method: "GET", path: "/v1/nothing", role: service.RoleAdmin}), 404, service.CodeNotFound)
	wantProblem(t, hs.do(req{method: "PUT", path: "/v1/card/read", role: service.RoleAdmin, body: "{}"}), 405, CodeMethodNotAllowed)
	wantProblem(t, hs.do(req{method: "GET", path: "/v1/card/read", role: service.RoleAdmin}), 405, CodeMethodNotAllowed)
}

func TestHealthReadersAuditMetrics(t *testing.T) {
	hs := newHarness(t)
	rec := hs.do(req{method: "GET", path: "/v1/health", origin: goodOrigin})
	var h map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &h)
	if len(h) != 3 || h["ok"] != true || h["version"] != "test" || h["origin_allowed"] != true {
		t.Fatalf("health %s", rec.Body)
	}
	rec = hs.do(req{method: "GET", path: "/v1/health", origin: badOrigin})
	if !strings.Contains(rec.Body.String(), `"origin_allowed":false`) {
		t.Fatalf("health %s", rec.Body)
	}
	rec = hs.do(req{method: "GET", path: "/v1/readers", role: service.RoleTechnician})
	var rs service.Readers
	_ = json.Unmarshal(rec.Body.Bytes(), &rs)
	if rs.Version != 7 || len(rs.Readers) != 3 || rec.Header().Get("ETag") != `W/"7"` {
		t.Fatalf("readers %s", rec.Body)
	}
	rec = hs.do(req{method: "GET", path: "/v1/readers/r3", role: service.RoleTechnician})
	if !strings.Contains(rec.Body.String(), `"pinpad":true`) {
		t.Fatalf("reader %s", rec.Body)
	}
	rec = hs.do(req{method: "GET", path: "/v1/audit?card=B2&from=2026-11-01&to=2026-12-01T00:00:00Z", role: service.RoleAdmin})
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"card_id":"B2"`) || strings.Contains(rec.Body.String(), "A1") {
		t.Fatalf("audit %d %s", rec.Code, rec.Body)
	}
	wantProblem(t, hs.do(req{method: "GET", path: "/v1/audit?from=yesterday", role: service.RoleAdmin}), 400, CodeInvalidRequest)
	rec = hs.do(req{method: "GET", path: "/v1/openapi.json"})
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"openapi":"3.0.3"`) {
		t.Fatalf("openapi %d", rec.Code)
	}
	rec = hs.do(req{method: "GET", path: "/metrics", role: service.RoleTechnician})
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `stationd_http_requests_total{method="GET",route="/v1/openapi.json",status="200"} 1`) ||
		!strings.Contains(rec.Body.String(), `route="/v1/audit",status="400"`) {
		t.Fatalf("metrics %d %s", rec.Code, rec.Body)
	}
}

// TestLogLines: one line per request with its id, route, status and
// duration; never a PIN, a body or the SSN.
func TestLogLines(t *testing.T) {
	hs := newHarness(t)
	rec := hs.do(req{method: "POST", path: "/v1/card/activate", role: service.RoleCounter, body: `{"pin":"918273","pin_confirm":"918273"}`,
		header: map[string]string{"Idempotency-Key": freshKey(), "Prefer": "wait=10"}})
	if rec.Code != 200 {
		t.Fatalf("activate %d %s", rec.Code, rec.Body)
	}
	hs.do(req{method: "POST", path: "/v1/card/pin/change", role: service.RoleBank, body: `{"old_pin":"918273","new_pin":"564738","new_pin_confirm":"564738"}`,
		header: map[string]string{"Idempotency-Key": freshKey(), "Prefer": "wait=10"}})
	hs.do(req{method: "POST", path: "/v1/card/read", role: service.RoleCounter, body: `{}`, header: map[string]string{"Prefer": "wait=10"}})
	hs.do(req{method: "POST", path: "/v1/card/pin/verify", role: service.RoleBank, body: `{"pin":"91827x"}`, header: map[string]string{"Idempotency-Key": freshKey()}})
	logs := hs.logs.String()
	for _, secret := range []string{"918273", "564738", "91827x", fakeSSN, hs.tokens[service.RoleCounter]} {
		if strings.Contains(logs, secret) {
			t.Fatalf("secret %q in the log:\n%s", secret, logs)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d log lines:\n%s", len(lines), logs)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["request_id"] != rec.Header().Get("X-Request-Id") || first["route"] != "/v1/card/activate" || first["status"] != float64(200) || first["duration"] == nil ||
		first["token"] != "t-counter" {
		t.Fatalf("log line %v", first)
	}
}
