package daemon

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"ssstation/cardapp"
	"ssstation/pcsc"
	"ssstation/pcsc/pcsctest"
	"ssstation/station/config"
	"ssstation/station/conform"
	"ssstation/station/diag"
	"ssstation/station/service"
)

// padFor puts a pcsctest.EmulatedPad on kp in front of the card: no
// virtual PIN pad exists (the same emulator as cardapp's PIN-pad tests).
func padFor(kp *pcsctest.Keypad) func(card *pcsc.Card) cardapp.PINPad {
	return func(card *pcsc.Card) cardapp.PINPad { return kp.Pad(card) }
}

// A vpcd reader has no PIN pad: it is reported so from the start, and a
// PIN pad request is refused before anything is queued — through the real
// stack, no APDU reaching the card. Routes that take no pad entry refuse
// it whatever the reader.
func TestPINPadRefusedOnVpcdReader(t *testing.T) {
	b := newDaemon(t, 4)
	vc, sim := startSim(t, "sample-v1")
	id := b.readerFor(vc.Reader, true)
	r, err := b.d.Reader(context.Background(), id)
	if err != nil || r.PINPad {
		t.Fatalf("vpcd reader: %+v %v", r, err)
	}
	bank := service.Caller{TokenName: "bank", Role: service.RoleBank}
	before := sim.APDUCount()
	for _, k := range []service.Kind{service.KindPINVerify, service.KindPINChange, service.KindActivate, service.KindPINReload} {
		_, err := b.d.Submit(context.Background(), service.Request{Kind: k, ReaderID: id, Caller: bank, PINEntry: service.PINEntryPinpad})
		if problemCode(err) != service.CodePINPadMissing {
			t.Fatalf("%s on the pad of a vpcd reader: %v", k, err)
		}
	}
	if n := sim.APDUCount() - before; n != 0 {
		t.Fatalf("refused PIN pad requests sent %d APDUs", n)
	}
}

// With a PIN pad (the emulated part 10 reader in front of the virtual
// card), pin_entry "pinpad" goes through cardapp's PIN pad functions: the
// PIN is typed on the pad, never in the request; a wrong one costs a try
// as on the host path; two new entries that differ spend nothing; change
// works on a fixed-length profile and is refused on a variable one.
func TestPINPadVerifyAndChangeThroughDaemon(t *testing.T) {
	kp := &pcsctest.Keypad{}
	b := newDaemonWith(t, 4, func(_ *Options, d *Daemon) {
		if d != nil {
			d.padFor = padFor(kp)
		}
	})
	vc, sim := startSim(t, "sample-v1")
	id := b.readerFor(vc.Reader, true)
	right := sim.PIN()
	bank := service.Caller{TokenName: "bank", Role: service.RoleBank}
	pad := func(k service.Kind, typed ...string) *service.Operation {
		t.Helper()
		kp.Type(typed...)
		return b.run(service.Request{Kind: k, ReaderID: id, Caller: bank, PINEntry: service.PINEntryPinpad})
	}
	if op := pad(service.KindPINVerify, right); op.State != service.StateDone {
		t.Fatalf("verify on the pad: %+v", op.Problem)
	}
	if r, _ := b.d.Reader(context.Background(), id); !r.PINPad {
		t.Fatal("the reader is not reported with its PIN pad")
	}
	op := pad(service.KindPINVerify, "975310")
	if op.Problem == nil || op.Problem.Code != service.CodePINIncorrect || op.Problem.TriesLeft == nil || *op.Problem.TriesLeft != sim.Tries() {
		t.Fatalf("wrong PIN on the pad: %+v (card tries %d)", op.Problem, sim.Tries())
	}
	sent := len(kp.Sent())
	op = pad(service.KindPINChange, right, "802468", "802469")
	if op.Problem == nil || op.Problem.Code != service.CodePINPadEntry || !op.Problem.Retryable || len(kp.Sent()) != sent {
		t.Fatalf("differing new PINs: %+v (APDUs sent by the pad: %d)", op.Problem, len(kp.Sent())-sent)
	}
	if op := pad(service.KindPINChange, right, "802468", "802468"); op.State != service.StateDone || sim.PIN() != "802468" {
		t.Fatalf("change on the pad: %+v", op.Problem)
	}
	if op := pad(service.KindPINVerify, "802468"); op.State != service.StateDone {
		t.Fatalf("new PIN on the pad: %+v", op.Problem)
	}
	for _, pin := range []string{right, "802468", "975310"} {
		if strings.Contains(b.logs(), pin) {
			t.Fatal("a PIN reached the log")
		}
	}

	// sample-v3's PINs are 4 to 16 digits: verify takes them, change cannot
	vc3, sim3 := startSim(t, "sample-v3")
	id3 := b.readerFor(vc3.Reader, true)
	kp.Type(sim3.PIN())
	if op := b.run(service.Request{Kind: service.KindPINVerify, ReaderID: id3, Caller: bank, PINEntry: service.PINEntryPinpad}); op.State != service.StateDone {
		t.Fatalf("variable-length verify on the pad: %+v", op.Problem)
	}
	kp.Type(sim3.PIN(), "802468", "802468")
	op = b.run(service.Request{Kind: service.KindPINChange, ReaderID: id3, Caller: bank, PINEntry: service.PINEntryPinpad})
	if op.Problem == nil || op.Problem.Code != service.CodePINPadMissing {
		t.Fatalf("variable-length change on the pad: %+v", op.Problem)
	}
}

// The diagnosis through the daemon: each reader's part runs on its
// worker, behind an operation already running there, and the report is
// the diag.Report of `sscard diag --json`.
func TestDiagnosticsQueueBehindTheWorker(t *testing.T) {
	b := newDaemon(t, 4)
	vc, _ := startSim(t, "sample-v3")
	id := b.readerFor(vc.Reader, true)
	// hold the worker: a job that waits until released
	b.d.mu.Lock()
	w := b.d.readers[id]
	b.d.mu.Unlock()
	release := make(chan struct{})
	started := make(chan struct{})
	hold := &job{ctx: context.Background(), done: make(chan struct{}), run: func(context.Context, *pcsc.Context, error) {
		close(started)
		<-release
	}}
	if err := b.d.enqueueJob(w, hold); err != nil {
		t.Fatal(err)
	}
	<-started
	type result struct {
		raw json.RawMessage
		err error
	}
	res := make(chan result, 1)
	go func() {
		raw, err := b.d.Diagnostics(context.Background(), service.DiagnosticsOptions{Latency: 3})
		res <- result{raw, err}
	}()
	// the diagnosis is queued behind the running job, not beside it
	for {
		b.d.mu.Lock()
		pending := w.pending
		b.d.mu.Unlock()
		if pending == 2 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case r := <-res:
		t.Fatalf("the diagnosis ended while the reader was busy: %s %v", r.raw, r.err)
	default:
	}
	close(release)
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	// decoded into the parts checked (the report's decoded ATR marshals
	// one way only)
	var rep struct {
		OK       bool     `json:"ok"`
		Problems []string `json:"problems"`
		Service  diag.ServiceReport
		Readers  []struct {
			Name string `json:"name"`
			Role string `json:"role"`
			Card *struct {
				Identification json.RawMessage `json:"identification"`
				Latency        *diag.Latency   `json:"latency"`
			} `json:"card"`
		} `json:"readers"`
		Keys  diag.KeysReport `json:"keys"`
		Store diag.FileHealth `json:"store"`
	}
	if err := json.Unmarshal(r.raw, &rep); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rr := range rep.Readers {
		if rr.Name != vc.Reader {
			continue
		}
		found = true
		if rr.Role != "card" || rr.Card == nil || len(rr.Card.Identification) == 0 || rr.Card.Latency == nil || rr.Card.Latency.N != 3 || rr.Card.Latency.OK != 3 {
			t.Fatalf("reader report: %s", r.raw)
		}
	}
	if !found || !rep.Service.Reachable || rep.Store.State != "ok" || rep.Store.AuditOK == nil || !*rep.Store.AuditOK || !rep.Keys.Configured {
		t.Fatalf("report: %s", r.raw)
	}
	if !rep.OK {
		t.Fatalf("problems on a good card: %v", rep.Problems)
	}
}

// Conformance through the daemon is an operation on the reader: the
// sample card passes its profile's read-side checks with the wire trace.
func TestConformOperation(t *testing.T) {
	b := newDaemon(t, 4)
	vc, _ := startSim(t, "sample-v3")
	id := b.readerFor(vc.Reader, true)
	tech := service.Caller{TokenName: "tech", Role: service.RoleTechnician}
	op := b.run(service.Request{Kind: service.KindConform, ReaderID: id, Caller: tech})
	if op.State != service.StateDone {
		t.Fatalf("conform: %+v", op.Problem)
	}
	var rep conform.Report
	if err := json.Unmarshal(op.Result, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Summary.Pass == 0 || rep.Destructive || len(rep.Checks) == 0 || len(rep.Checks[0].Wire) == 0 {
		t.Fatalf("report: %s", op.Result)
	}
	if len(op.Steps) == 0 {
		t.Fatal("no progress steps")
	}
	op = b.run(service.Request{Kind: service.KindConform, ReaderID: id, Caller: tech, Profile: "no-such-profile"})
	if op.Problem == nil || op.Problem.Code != service.CodeInvalidData {
		t.Fatalf("unknown profile: %+v", op.Problem)
	}
}

// A PSAM reader mapped as a card reader is refused at start.
func TestPSAMReaderAsCardReaderRefused(t *testing.T) {
	b := newDaemon(t, 4)
	_, err := New(Options{Profiles: b.d.opts.Profiles, Store: b.st, Audit: b.d.opts.Audit, Journal: b.d.opts.Journal, Secret: b.d.opts.Secret,
		PSAMReader: "Virtual PCD 00 01", Readers: []config.ReaderConfig{{Name: "Virtual PCD 00 01", ID: "desk", Role: "card"}}})
	if err == nil || !strings.Contains(err.Error(), "PSAM") {
		t.Fatalf("PSAM reader as a card reader: %v", err)
	}
	if _, err := New(Options{Profiles: b.d.opts.Profiles, Store: b.st, Audit: b.d.opts.Audit, Journal: b.d.opts.Journal, Secret: b.d.opts.Secret,
		PSAMReader: "Virtual PCD 00 01", Readers: []config.ReaderConfig{{Name: "Virtual PCD 00 01", ID: "psam", Role: "psam"}, {Name: "Virtual PCD 00 00", ID: "desk", Role: "card"}}}); err != nil {
		t.Fatalf("a sound mapping refused: %v", err)
	}
}

// Test keys are said in the log at start and in every read result.
func TestTestKeysMarked(t *testing.T) {
	b := newDaemonWith(t, 4, func(o *Options, _ *Daemon) {
		if o != nil {
			o.TestKeys = true
		}
	})
	if !strings.Contains(b.logs(), "TEST KEYS") {
		t.Fatal("no TEST KEYS line at start")
	}
	vc, _ := startSim(t, "sample-v3")
	id := b.readerFor(vc.Reader, true)
	for i := 0; i < 2; i++ { // fresh, then cached
		op := b.run(service.Request{Kind: service.KindRead, ReaderID: id})
		var rr ReadResult
		if err := json.Unmarshal(op.Result, &rr); err != nil || !rr.TestKeys || rr.Cached != (i == 1) {
			t.Fatalf("read %d: %s", i, op.Result)
		}
	}
}

// Stored operations older than the retention are pruned; recent ones,
// interrupted ones (resumable, as their journal entry) and ones that never
// ended stay.
func TestStoredOperationsPruned(t *testing.T) {
	b := newDaemonWith(t, 4, func(o *Options, _ *Daemon) {
		if o != nil {
			o.OperationRetention = 48 * time.Hour
		}
	})
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	put := func(id string, st service.State, updated time.Time) {
		raw, _ := json.Marshal(service.Operation{ID: id, Kind: service.KindRead, State: st, Created: updated, Updated: updated})
		if err := b.st.DB().Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketOps).Put([]byte(id), raw) }); err != nil {
			t.Fatal(err)
		}
	}
	put("op-old-done", service.StateDone, now.Add(-72*time.Hour))
	put("op-old-failed", service.StateFailed, now.Add(-49*time.Hour))
	put("op-old-running", service.StateRunning, now.Add(-72*time.Hour))
	put("op-old-interrupted", service.StateInterrupted, now.Add(-72*time.Hour))
	put("op-new-done", service.StateDone, now.Add(-time.Hour))
	n, err := b.d.pruneStoredOps(now)
	if err != nil || n != 2 {
		t.Fatalf("pruned %d: %v", n, err)
	}
	for id, want := range map[string]bool{"op-old-done": false, "op-old-failed": false, "op-old-running": true, "op-old-interrupted": true, "op-new-done": true} {
		op, err := b.d.Operation(context.Background(), id)
		if got := err == nil && op != nil; got != want {
			t.Errorf("%s kept=%v, want %v (%v)", id, got, want, err)
		}
	}
	// a negative retention keeps everything
	b.d.opts.OperationRetention = -1
	if n, err := b.d.pruneStoredOps(now.Add(1000 * time.Hour)); n != 0 || err != nil {
		t.Fatalf("kept-for-ever pruned %d: %v", n, err)
	}
}
