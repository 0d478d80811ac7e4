package api

import (
	"bytes"
	"net/http/httptest"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"ssstation/station/service"
)

func activate(hs *harness, key, body string) *httptest.ResponseRecorder {
	hdr := map[string]string{"Prefer": "wait=10"}
	if key != "" {
		hdr["Idempotency-Key"] = key
	}
	return hs.do(req{method: "POST", path: "/v1/card/activate", role: service.RoleCounter, body: body, header: hdr})
}

const activateJSON = `{"reader_id":"r1","pin":"246813","pin_confirm":"246813"}`

// TestIdempotency: missing key 400; a finished request replays its stored
// answer with Idempotent-Replayed and no station call; another body with
// the same key 422; another PIN with the same key is the same request
// (PINs are not in the fingerprint) and replays; no PIN in the store;
// a key of another token is another key; keys expire after 24 h.
func TestIdempotency(t *testing.T) {
	hs := newHarness(t)
	wantProblem(t, activate(hs, "", activateJSON), 400, CodeIdempotencyMissing)
	wantProblem(t, activate(hs, "bad key with spaces", activateJSON), 400, CodeInvalidRequest)

	first := activate(hs, `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, activateJSON)
	if first.Code != 200 || first.Header().Get("Idempotent-Replayed") != "" || hs.st.Submits() != 1 {
		t.Fatalf("first: %d %s", first.Code, first.Body)
	}
	again := activate(hs, `8e03978e-40d5-43e8-bc93-6894a57f9324`, activateJSON)
	if again.Code != 200 || again.Header().Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.Body.Bytes(), first.Body.Bytes()) || hs.st.Submits() != 1 {
		t.Fatalf("replay: %d %q %s", again.Code, again.Header().Get("Idempotent-Replayed"), again.Body)
	}
	otherPIN := activate(hs, `8e03978e-40d5-43e8-bc93-6894a57f9324`, `{"reader_id":"r1","pin":"999999","pin_confirm":"999999"}`)
	if otherPIN.Code != 200 || otherPIN.Header().Get("Idempotent-Replayed") != "true" || hs.st.Submits() != 1 {
		t.Fatalf("other PIN: %d %s", otherPIN.Code, otherPIN.Body)
	}
	wantProblem(t, activate(hs, `8e03978e-40d5-43e8-bc93-6894a57f9324`, `{"pin":"246813","pin_confirm":"246813"}`), 422, CodeIdempotencyMismatch)
	// the same key on another route is another request
	rec := hs.do(req{method: "POST", path: "/v1/card/block", role: service.RoleCounter, body: `{"reader_id":"r1"}`,
		header: map[string]string{"Idempotency-Key": "8e03978e-40d5-43e8-bc93-6894a57f9324"}})
	wantProblem(t, rec, 422, CodeIdempotencyMismatch)
	if hs.st.Submits() != 1 {
		t.Fatal("the station was called for a refused key")
	}
	// a failed operation is an answer too: replayed, no second try spent
	wrong := hs.do(req{method: "POST", path: "/v1/card/pin/verify", role: service.RoleBank, body: `{"pin":"111111"}`, header: map[string]string{"Idempotency-Key": "k-wrong", "Prefer": "wait=10"}})
	wrong2 := hs.do(req{method: "POST", path: "/v1/card/pin/verify", role: service.RoleBank, body: `{"pin":"111111"}`, header: map[string]string{"Idempotency-Key": "k-wrong", "Prefer": "wait=10"}})
	if wrong.Code != 422 || wrong2.Code != 422 || !bytes.Equal(wrong.Body.Bytes(), wrong2.Body.Bytes()) || wrong2.Header().Get("Idempotent-Replayed") != "true" || hs.st.tries != 2 {
		t.Fatalf("wrong PIN replay: %d %d tries %d", wrong.Code, wrong2.Code, hs.st.tries)
	}
	// a refusal before queueing frees the key for a retry
	hs.st.readers[0].CardPresent = false
	wantProblem(t, hs.do(req{method: "POST", path: "/v1/card/block", role: service.RoleCounter, body: `{}`, header: map[string]string{"Idempotency-Key": "k-absent"}}), 409, service.CodeCardAbsent)
	hs.st.readers[0].CardPresent = true
	if rec := hs.do(req{method: "POST", path: "/v1/card/block", role: service.RoleCounter, body: `{}`, header: map[string]string{"Idempotency-Key": "k-absent", "Prefer": "wait=10"}}); rec.Code != 200 || rec.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry after refusal: %d %s", rec.Code, rec.Body)
	}
	// no PIN anywhere in the store
	err := hs.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(idemBucket).ForEach(func(k, v []byte) error {
			for _, pin := range []string{"246813", "999999", "111111"} {
				if bytes.Contains(v, []byte(pin)) || bytes.Contains(k, []byte(pin)) {
					t.Errorf("PIN %s stored in %q", pin, k)
				}
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	// 24 h later the key is new again, and the other expired keys are swept
	if n := countKeys(t, hs); n != 3 {
		t.Fatalf("%d keys stored, want 3", n)
	}
	hs.clock.Add(IdempotencyTTL + time.Minute)
	before := hs.st.Submits()
	if rec := activate(hs, `8e03978e-40d5-43e8-bc93-6894a57f9324`, activateJSON); rec.Header().Get("Idempotent-Replayed") != "" || hs.st.Submits() != before+1 {
		t.Fatalf("expired key replayed: %d %s", rec.Code, rec.Body)
	}
	if n := countKeys(t, hs); n != 1 {
		t.Fatalf("%d keys after the sweep, want 1", n)
	}
}

func countKeys(t *testing.T, hs *harness) int {
	t.Helper()
	n := 0
	if err := hs.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(idemBucket).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIdempotencyInFlight: the same key while the first request is still
// being answered gets 409; the first then finishes normally.
func TestIdempotencyInFlight(t *testing.T) {
	hs := newHarness(t)
	hs.st.hold = make(chan struct{})
	first := make(chan *httptest.ResponseRecorder)
	go func() { first <- activate(hs, "k-flight", activateJSON) }()
	eventually(t, "first request submitted", func() bool { return hs.st.Submits() == 1 })
	wantProblem(t, activate(hs, "k-flight", activateJSON), 409, CodeIdempotencyInFlight)
	close(hs.st.hold)
	if rec := <-first; rec.Code != 200 {
		t.Fatalf("first: %d %s", rec.Code, rec.Body)
	}
	if hs.st.Submits() != 1 {
		t.Fatal("the in-flight retry reached the station")
	}
}

// TestIdempotencyAcrossRestart: the bbolt file is closed and reopened and
// a new handler on a new station replays the stored answer without
// calling it; a key left in flight by a crash answers from its operation.
func TestIdempotencyAcrossRestart(t *testing.T) {
	hs := newHarness(t)
	first := activate(hs, "k-restart", activateJSON)
	if first.Code != 200 {
		t.Fatalf("first: %d", first.Code)
	}
	// a 202 answer is stored too: the operation keeps running elsewhere
	hs.st.hold = make(chan struct{})
	pending := hs.do(req{method: "POST", path: "/v1/card/block", role: service.RoleCounter, body: `{}`, header: map[string]string{"Idempotency-Key": "k-202"}})
	if pending.Code != 202 {
		t.Fatalf("block without wait: %d", pending.Code)
	}
	close(hs.st.hold)

	hs.restart()
	again := activate(hs, "k-restart", activateJSON)
	if again.Code != 200 || again.Header().Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.Body.Bytes(), first.Body.Bytes()) {
		t.Fatalf("after restart: %d %s", again.Code, again.Body)
	}
	p := hs.do(req{method: "POST", path: "/v1/card/block", role: service.RoleCounter, body: `{}`, header: map[string]string{"Idempotency-Key": "k-202"}})
	if p.Code != 202 || p.Header().Get("Location") != pending.Header().Get("Location") {
		t.Fatalf("202 replay: %d %q", p.Code, p.Header().Get("Location"))
	}
	if hs.st.Submits() != 0 {
		t.Fatalf("the new station was called %d times", hs.st.Submits())
	}
	// the owner of an operation is known after the restart
	if rec := hs.do(req{method: "GET", path: p.Header().Get("Location"), role: service.RoleCounter}); rec.Code != 404 || decodeProblem(t, rec).Detail == "no operation with this id for this token" {
		t.Fatalf("owner lost across the restart: %d %s", rec.Code, rec.Body) // the new fake station does not know it: its own 404
	}

	// a key left in flight by an earlier run
	fp := func(body cardBody, k service.Kind, pattern string) string {
		r, _ := body.request(k)
		return fingerprint(pattern, r)
	}
	orphanNoOp := &idemStore{db: hs.db, run: "earlier", now: hs.clock.Now}
	scope := scopeKey("t-counter", "k-orphan")
	if out, _, err := orphanNoOp.begin(scope, fp(&blockBody{}, service.KindBlock, "/v1/card/block")); err != nil || out != idemProceed {
		t.Fatal(out, err)
	}
	wantProblem(t, hs.do(req{method: "POST", path: "/v1/card/block", role: service.RoleCounter, body: `{}`, header: map[string]string{"Idempotency-Key": "k-orphan"}}), 409, service.CodeInterrupted)

	// with its operation known, the answer comes from the operation
	op, err := hs.st.Submit(t.Context(), service.Request{Kind: service.KindBlock, Caller: service.Caller{TokenName: "t-counter", Role: service.RoleCounter}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hs.st.Wait(t.Context(), op.ID); err != nil {
		t.Fatal(err)
	}
	scope = scopeKey("t-counter", "k-orphan-op")
	if _, _, err := orphanNoOp.begin(scope, fp(&blockBody{}, service.KindBlock, "/v1/card/block")); err != nil {
		t.Fatal(err)
	}
	if err := orphanNoOp.setOp(scope, op.ID); err != nil {
		t.Fatal(err)
	}
	submits := hs.st.Submits()
	rec := hs.do(req{method: "POST", path: "/v1/card/block", role: service.RoleCounter, body: `{}`, header: map[string]string{"Idempotency-Key": "k-orphan-op"}})
	if rec.Code != 200 || rec.Header().Get("Idempotent-Replayed") != "true" || decodeOp(t, rec).ID != op.ID || hs.st.Submits() != submits {
		t.Fatalf("orphan with op: %d %s", rec.Code, rec.Body)
	}
}
