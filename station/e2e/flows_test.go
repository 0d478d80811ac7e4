package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"ssstation/internal/cardsim/ssse"
)

const personalizeSSN = "320102198808082010"

func opOf(t testing.TB, r *resp) operation {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("want 200 and a finished operation, got %d: %s", r.status, r.body)
	}
	var op operation
	r.decode(t, &op)
	if op.State != "done" {
		t.Fatalf("operation %s not done: %s", op.ID, r.body)
	}
	return op
}

func problemOf(t *testing.T, r *resp, status int, code string) problem {
	t.Helper()
	if r.status != status || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
		t.Fatalf("want %d problem+json %s, got %d %s: %s", status, code, r.status, r.header.Get("Content-Type"), r.body)
	}
	var p problem
	r.decode(t, &p)
	if p.Code != code {
		t.Fatalf("want code %s, got %s: %s", code, p.Code, r.body)
	}
	return p
}

// The counter flow: read a delivered card (the legacy string keeps its
// 11 fields, the SSN masked for the counter role), activate it with the
// holder's PIN, block it as lost.
func TestCounterFlow(t *testing.T) {
	s := newStation(t)
	vc, sim := card(t, "delivered-v2")
	s.readerID(vc.Reader, true)

	op := opOf(t, s.post("/v1/card/read", "counter", "", map[string]any{}))
	var rr struct {
		Card struct {
			CardID string `json:"card_id"`
			SSN    string `json:"ssn"`
		} `json:"card"`
		IReadCardBas string `json:"ireadcardbas"`
	}
	json.Unmarshal(op.Result, &rr)
	if f := strings.Split(rr.IReadCardBas, "|"); len(f) != 12 || f[9] != "410100813475" {
		t.Fatalf("ireadcardbas %q is not the 11-field legacy string", rr.IReadCardBas)
	}
	ssn := sim.Image().Holder.SSN
	if rr.Card.SSN != ssn {
		t.Fatalf("the counter role may see the ID number, got %q", rr.Card.SSN)
	}
	// A bank teller's read comes from the cache (0 APDUs) with the ID
	// number masked, in the structured field and the legacy string alike.
	before := sim.APDUCount()
	op = opOf(t, s.post("/v1/card/read", "bank", "", map[string]any{}))
	json.Unmarshal(op.Result, &rr)
	if !strings.Contains(rr.Card.SSN, "*") || strings.Contains(rr.IReadCardBas, ssn) || sim.APDUCount() != before {
		t.Fatalf("bank read: SSN %q, %d APDUs", rr.Card.SSN, sim.APDUCount()-before)
	}

	before = sim.APDUCount()
	op = opOf(t, s.do("POST", "/v1/card/activate", "counter", map[string]any{"pin": "582064", "pin_confirm": "582064"},
		map[string]string{"Idempotency-Key": newKey(t, "act"), "Prefer": "wait=30", "X-Operator-Id": "clerk-7"}))
	if sim.State() != ssse.StateActive || sim.PIN() != "582064" || sim.APDUCount() == before {
		t.Fatalf("activation did not reach the card: state %s", sim.State())
	}
	op = opOf(t, s.post("/v1/card/block", "counter", newKey(t, "block"), map[string]any{"block_kind": "temporary"}))
	if sim.State() == ssse.StateActive {
		t.Fatalf("block left the card active")
	}
	// The audit trail has the activation: who, where, which card, outcome;
	// the ID number masked.
	a := s.do("GET", "/v1/audit?card="+rr.Card.CardID, "admin", nil, nil)
	var trail struct {
		Records []struct {
			Operation, Operator, Outcome string
			SSNMasked                    string `json:"ssn_masked"`
		} `json:"records"`
	}
	json.Unmarshal(a.body, &trail)
	found := false
	for _, rec := range trail.Records {
		if rec.Operation == "activate" && rec.Operator == "clerk-7" && rec.Outcome == "done" && strings.Contains(rec.SSNMasked, "*") {
			found = true
		}
	}
	if a.status != 200 || !found || strings.Contains(string(a.body), ssn) {
		t.Fatalf("audit: %d %s", a.status, a.body)
	}
	// The console's chain check: the hash chain holds over every touch.
	v := s.do("GET", "/v1/audit/verify", "admin", nil, nil)
	var chain struct {
		OK      bool `json:"ok"`
		Entries int  `json:"entries"`
	}
	json.Unmarshal(v.body, &chain)
	if v.status != 200 || !chain.OK || chain.Entries < 2*len(trail.Records) {
		t.Fatalf("audit verify: %d %s (records %d)", v.status, v.body, len(trail.Records))
	}
	if c := s.do("GET", "/v1/audit/verify", "counter", nil, nil); c.status != 403 {
		t.Fatalf("audit verify as counter: %d", c.status)
	}
	// Prometheus sees the APDUs, the insert and the operations of this reader.
	m := s.do("GET", "/metrics", "technician", nil, nil)
	id := s.readerID(vc.Reader, true)
	for _, want := range []string{`stationd_apdus_total{reader="` + id + `"}`, `stationd_card_inserts_total{reader="` + id + `"} 1`,
		`stationd_operation_duration_seconds_count{kind="activate",outcome="done",reader="` + id + `"} 1`, "stationd_pcsc_up 1"} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The counter may not personalize (wrong role) and gets no card touch.
	before = sim.APDUCount()
	r := s.post("/v1/card/personalize", "counter", newKey(t, "p"), personalizeBody())
	problemOf(t, r, http.StatusForbidden, "ROLE_NOT_ALLOWED")
	if sim.APDUCount() != before {
		t.Fatal("a refused request reached the card")
	}
}

// The bank flow: change the PIN, a wrong PIN with tries left, reload a
// forgotten PIN, unblock a blocked one.
func TestBankFlow(t *testing.T) {
	s := newStation(t)
	vc, sim := card(t, "sample-v3")
	s.readerID(vc.Reader, true)

	opOf(t, s.post("/v1/card/pin/change", "bank", newKey(t, "chg"), map[string]any{"old_pin": "864209", "new_pin": "135790", "new_pin_confirm": "135790"}))
	if sim.PIN() != "135790" {
		t.Fatal("change did not set the PIN")
	}
	p := problemOf(t, s.post("/v1/card/pin/verify", "bank", newKey(t, "v1"), map[string]any{"pin": "111111"}), http.StatusUnprocessableEntity, "PIN_INCORRECT")
	if p.TriesLeft == nil || *p.TriesLeft != 2 || p.LegacyCode != -51 || p.SW != "63C2" {
		t.Fatalf("wrong PIN problem: %+v", p)
	}
	opOf(t, s.post("/v1/card/pin/reload", "bank", newKey(t, "rl"), map[string]any{"new_pin": "246801", "new_pin_confirm": "246801"}))
	if sim.PIN() != "246801" {
		t.Fatal("reload did not set the PIN")
	}
	for i := 0; i < 3; i++ {
		s.post("/v1/card/pin/verify", "bank", newKey(t, "bad"), map[string]any{"pin": "111111"})
	}
	problemOf(t, s.post("/v1/card/pin/verify", "bank", newKey(t, "blk"), map[string]any{"pin": "246801"}), http.StatusLocked, "PIN_BLOCKED")
	opOf(t, s.post("/v1/card/pin/unblock", "bank", newKey(t, "ub"), map[string]any{}))
	opOf(t, s.post("/v1/card/pin/verify", "bank", newKey(t, "ok"), map[string]any{"pin": "246801"}))

	// Bad PIN formats never reach the card.
	before := sim.APDUCount()
	for _, body := range []map[string]any{{"pin": "12ab56"}, {"pin": ""}, {"pin": "1234567890123456789"}} {
		r := s.post("/v1/card/pin/verify", "bank", newKey(t, "fmt"), body)
		if r.status < 400 || r.status >= 500 {
			t.Fatalf("bad PIN %v: %d", body, r.status)
		}
	}
	if sim.APDUCount() != before {
		t.Fatal("a badly formed PIN reached the card")
	}
}

func personalizeBody() map[string]any {
	return map[string]any{
		"holder": map[string]any{"ssn": personalizeSSN, "name": "周杰", "gender": "1", "nationality": "01", "birthplace": "320102", "birth_date": "19880808"},
		"card":   map[string]any{"card_type": "3", "init_org": "320100000001", "issue_date": "20261123", "expiry_date": "20361123", "card_number": "N32010003"},
		"lock":   true,
	}
}

// The same activation retried with the same key gets the same answer and
// sends 0 APDUs, also across a daemon restart.
func TestIdempotentActivationAcrossRestart(t *testing.T) {
	s := newStation(t)
	vc, sim := card(t, "delivered-v2")
	s.readerID(vc.Reader, true)
	key := newKey(t, "act")
	body := map[string]any{"pin": "582064", "pin_confirm": "582064"}
	first := s.post("/v1/card/activate", "counter", key, body)
	opOf(t, first)
	n := sim.APDUCount()
	again := s.post("/v1/card/activate", "counter", key, body)
	if again.status != first.status || string(again.body) != string(first.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay differs: %d %s", again.status, again.body)
	}
	s.stop()
	s.start()
	s.readerID(vc.Reader, true)
	n2 := sim.APDUCount()
	after := s.post("/v1/card/activate", "counter", key, body)
	if after.status != first.status || string(after.body) != string(first.body) || after.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay after restart differs: %d %s", after.status, after.body)
	}
	if sim.APDUCount() != n2 || n2 < n {
		t.Fatalf("replays sent %d APDUs", sim.APDUCount()-n2)
	}
	// The same key with another body is refused.
	// The same key with another request is refused; PINs are left out of
	// the fingerprint, so another reader id makes it another request.
	id := s.readerID(vc.Reader, true)
	problemOf(t, s.post("/v1/card/activate", "counter", key, map[string]any{"pin": "582064", "pin_confirm": "582064", "reader_id": id}), http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED")
}

// Personalization runs as an operation with progress; kill -9 in the
// middle leaves it resumable: after a restart the same data resumes it,
// and `sscard audit verify` passes on the store.
func TestPersonalizeKillResume(t *testing.T) {
	s := newStation(t)
	vc, sim := card(t, "blank-v3")
	s.readerID(vc.Reader, true)
	vc.Slot.Latency(150 * time.Millisecond)

	r := s.do("POST", "/v1/card/personalize", "admin", personalizeBody(), map[string]string{"Idempotency-Key": newKey(t, "p1"), "Prefer": "wait=0"})
	if r.status != http.StatusAccepted || r.header.Get("Location") == "" {
		t.Fatalf("personalize with wait=0: %d %s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	// Wait until a few steps are done, then kill -9.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var op operation
		s.do("GET", loc, "admin", nil, nil).decode(t, &op)
		if len(op.Steps) >= 3 && op.State == "running" {
			if op.Progress <= 0 {
				t.Fatalf("steps without progress: %+v", op)
			}
			break
		}
		if op.State != "running" && op.State != "queued" || time.Now().After(deadline) {
			t.Fatalf("personalization never got under way: %+v", op)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.kill()
	vc.Slot.Latency(0)

	s.start()
	s.readerID(vc.Reader, true)
	op := opOf(t, s.post("/v1/card/personalize", "admin", newKey(t, "p2"), personalizeBody()))
	var res struct {
		Journal struct {
			Resumed bool   `json:"resumed"`
			OpID    string `json:"op_id"`
		} `json:"journal"`
	}
	json.Unmarshal(op.Result, &res)
	if !res.Journal.Resumed {
		t.Fatalf("the second personalization did not resume the first: %s", op.Result)
	}
	if sim.State() == ssse.StateBlank {
		t.Fatal("the card is still blank")
	}
	s.stop()
	out, err := exec.Command(sscard, "audit", "verify", "--store", s.store).CombinedOutput()
	if err != nil {
		t.Fatalf("sscard audit verify: %v\n%s", err, out)
	}
	exp, err := exec.Command(sscard, "audit", "export", "--store", s.store).Output()
	if err != nil || !strings.Contains(string(exp), `"operation":"personalize"`) || strings.Contains(string(exp), personalizeSSN) {
		t.Fatalf("audit export: %v\n%s", err, exp)
	}
	// A changed record breaks the chain: verify fails and names the record
	// after it, whose previous-record hash no longer matches.
	db, err := bolt.Open(s.store, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		k := []byte{0, 0, 0, 0, 0, 0, 0, 2}
		return b.Put(k, bytes.Replace(b.Get(k), []byte(`"outcome":"`), []byte(`"outcome":"x`), 1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(sscard, "audit", "verify", "--store", s.store, "--json").Output()
	var v struct {
		OK       bool   `json:"ok"`
		BrokenAt uint64 `json:"broken_at"`
	}
	json.Unmarshal(out, &v)
	if err == nil || v.OK || v.BrokenAt != 3 {
		t.Fatalf("verify of a changed trail: %v %s", err, out)
	}
}

// Hot-plug seen over Server-Sent Events, and a reconnect with
// Last-Event-ID gets what it missed.
func TestHotplugSSEResume(t *testing.T) {
	s := newStation(t)
	vc, _ := card(t, "sample-v3")
	id := s.readerID(vc.Reader, true)

	events := s.events
	next := func(br *bufio.Reader) sse { return s.nextEvent(br) }
	waitFor := func(br *bufio.Reader, typ string) sse {
		for {
			ev := next(br)
			if ev.typ == typ && strings.Contains(ev.data, id) {
				return ev
			}
		}
	}
	br, closeStream := events("")
	vc.Slot.Remove()
	removed := waitFor(br, "card.removed")
	closeStream()
	// The card comes back while nobody listens.
	vc.Slot.Insert()
	s.readerID(vc.Reader, true)
	br2, close2 := events(removed.id)
	defer close2()
	ev := next(br2)
	if ev.typ != "card.inserted" || !strings.Contains(ev.data, id) {
		t.Fatalf("resume after %s: first event %+v, want this reader's card.inserted", removed.id, ev)
	}
}

// SIGTERM lets the personalization in progress finish (the grace period
// bounds it) and refuses new operations with 503 SHUTTING_DOWN; after a
// restart the finished operation is still there.
func TestSIGTERMFinishesOperation(t *testing.T) {
	s := newStation(t)
	vc, sim := card(t, "blank-v3")
	s.readerID(vc.Reader, true)
	vc.Slot.Latency(100 * time.Millisecond)
	defer vc.Slot.Latency(0)

	r := s.do("POST", "/v1/card/personalize", "admin", personalizeBody(), map[string]string{"Idempotency-Key": newKey(t, "p"), "Prefer": "wait=0"})
	if r.status != http.StatusAccepted {
		t.Fatalf("personalize: %d %s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	for {
		var op operation
		s.do("GET", loc, "admin", nil, nil).decode(t, &op)
		if len(op.Steps) >= 2 {
			break
		}
		time.Sleep(30 * time.Millisecond)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	refused := false
	for i := 0; i < 100 && !refused; i++ {
		r := s.do("POST", "/v1/card/pin/tries", "bank", map[string]any{}, nil)
		if r.status == http.StatusServiceUnavailable {
			problemOf(t, r, http.StatusServiceUnavailable, "SHUTTING_DOWN")
			refused = true
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !refused {
		t.Fatal("no SHUTTING_DOWN while the operation finished")
	}
	<-s.exited
	s.cmd = nil
	if sim.State() == ssse.StateBlank || sim.State() == ssse.StatePersonalized {
		t.Fatalf("the personalization did not finish on SIGTERM: card %s", sim.State())
	}
	vc.Slot.Latency(0)
	s.start()
	var op operation
	r = s.do("GET", loc, "admin", nil, nil)
	r.decode(t, &op)
	if op.State != "done" {
		t.Fatalf("after restart the operation is %s: %s", op.State, r.body)
	}
}

// Malformed JSON, unknown fields, an oversized body and a wrong content
// type get 4xx problem+json, and no APDU reaches the card.
func TestBadRequestsTouchNoCard(t *testing.T) {
	s := newStation(t)
	vc, sim := card(t, "sample-v3")
	s.readerID(vc.Reader, true)
	before := sim.APDUCount()
	send := func(ct, body string) *resp {
		req, _ := http.NewRequest("POST", s.base+"/v1/card/pin/verify", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.tokens["bank"])
		req.Header.Set("Idempotency-Key", newKey(t, "bad"))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		res, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b strings.Builder
		bufio.NewReader(res.Body).WriteTo(&b)
		r := &resp{status: res.StatusCode, header: res.Header, body: []byte(b.String())}
		s.validate(req, []byte(body), r)
		return r
	}
	for name, r := range map[string]*resp{
		"malformed":     send("application/json", `{"pin": "8642`),
		"unknown field": send("application/json", `{"pin":"864209","foo":1}`),
		"oversized":     send("application/json", `{"pin":"`+strings.Repeat("1", 200<<10)+`"}`),
		"content type":  send("text/plain", `{"pin":"864209"}`),
		"bad PIN":       send("application/json", `{"pin":"86420x"}`),
	} {
		if r.status < 400 || r.status >= 500 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	if n := sim.APDUCount() - before; n != 0 {
		t.Fatalf("bad requests sent %d APDUs to the card", n)
	}
}

// sse is one Server-Sent Event.
type sse struct{ id, typ, data string }

// events opens the event stream with a fresh ticket (and Last-Event-ID).
func (s *station) events(last string) (*bufio.Reader, func()) {
	s.t.Helper()
	var tk struct {
		Ticket string `json:"ticket"`
	}
	r := s.do("POST", "/v1/event-tickets", "counter", map[string]any{}, nil)
	if r.status != http.StatusCreated {
		s.t.Fatalf("ticket: %d %s", r.status, r.body)
	}
	r.decode(s.t, &tk)
	req, _ := http.NewRequest("GET", s.base+"/v1/events?ticket="+tk.Ticket, nil)
	req.Header.Set("Accept", "text/event-stream")
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	res, err := (&http.Client{}).Do(req)
	if err != nil || res.StatusCode != 200 {
		s.t.Fatalf("events: %v %v", err, res)
	}
	return bufio.NewReader(res.Body), func() { res.Body.Close() }
}

// nextEvent reads the next event (heartbeats and comments skipped).
func (s *station) nextEvent(br *bufio.Reader) sse {
	s.t.Helper()
	var ev sse
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			s.t.Fatalf("event stream ended: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && ev.typ != "":
			return ev
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.typ = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		}
	}
}

// Personalization is an operation with progress: the stream shows each
// step (increasing index, progress below 1) and then its completion.
func TestPersonalizeProgress(t *testing.T) {
	s := newStation(t)
	vc, sim := card(t, "blank-v2")
	s.readerID(vc.Reader, true)
	br, closeStream := s.events("")
	defer closeStream()
	op := opOf(t, s.post("/v1/card/personalize", "admin", newKey(t, "p"), personalizeBody()))
	if sim.State() == ssse.StateBlank || op.Progress != 1 || len(op.Steps) < 3 {
		t.Fatalf("personalization: card %s, %+v", sim.State(), op)
	}
	for _, st := range op.Steps {
		if st.State != "done" {
			t.Fatalf("step %q is %s in a finished operation", st.Name, st.State)
		}
	}
	lastIndex, steps := 0, 0
	for {
		ev := s.nextEvent(br)
		if !strings.Contains(ev.data, op.ID) {
			continue
		}
		if ev.typ == "operation.completed" {
			break
		}
		if ev.typ != "operation.progress" {
			t.Fatalf("unexpected %s before completion: %s", ev.typ, ev.data)
		}
		var p struct {
			Index    int     `json:"index"`
			Total    int     `json:"total"`
			Progress float64 `json:"progress"`
			Step     string  `json:"step"`
		}
		json.Unmarshal([]byte(ev.data), &p)
		if p.Index <= lastIndex || p.Index > p.Total || p.Progress >= 1 || p.Step == "" {
			t.Fatalf("progress event out of order: %s (last index %d)", ev.data, lastIndex)
		}
		lastIndex = p.Index
		steps++
	}
	if steps != len(op.Steps) {
		t.Fatalf("%d progress events for %d steps", steps, len(op.Steps))
	}
}
