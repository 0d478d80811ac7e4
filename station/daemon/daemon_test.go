package daemon

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc/pcsctest"
	"ssstation/station/audit"
	"ssstation/station/config"
	"ssstation/station/journal"
	"ssstation/station/secret"
	"ssstation/station/service"
	"ssstation/station/store"
)

// bed is a daemon on this process's pcscd (pcsctest), its store in a
// temporary directory.
type bed struct {
	t   *testing.T
	d   *Daemon
	st  *store.Store
	log *strings.Builder
}

func newDaemon(t *testing.T, queue int, readers ...config.ReaderConfig) *bed {
	t.Helper()
	return newDaemonWith(t, queue, nil, readers...)
}

// newDaemonWith lets setup adjust the options and the daemon before it runs.
func newDaemonWith(t *testing.T, queue int, setup func(*Options, *Daemon), readers ...config.ReaderConfig) *bed {
	t.Helper()
	pcsctest.EnsurePCSCD(t)
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(t.TempDir(), store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	al, err := audit.Open(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	jr, err := journal.OpenDB(st.DB(), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	opts := Options{Profiles: set, Keys: keys.NewTestKeystore(), Store: st, Audit: al, Journal: jr, Secret: secret.ForTest([]byte("daemon test secret, 32 bytes ok")), QueueSize: queue, Readers: readers,
		TerminalNo: "410100813475", DeviceNo: "dev1", Logger: zerolog.New(logWriter{logs})}
	if setup != nil {
		setup(&opts, nil)
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(nil, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	return &bed{t: t, d: d, st: st, log: logs}
}

type logWriter struct{ b *strings.Builder }

var logMu = make(chan struct{}, 1)

func (w logWriter) Write(p []byte) (int, error) {
	logMu <- struct{}{}
	defer func() { <-logMu }()
	return w.b.Write(p)
}

func (b *bed) logs() string {
	logMu <- struct{}{}
	defer func() { <-logMu }()
	return b.log.String()
}

func startSim(t *testing.T, image string) (*pcsctest.VirtualCard, *ssse.Card) {
	t.Helper()
	set, _ := profiles.Builtin()
	img, err := ssse.Builtin(image)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := ssse.New(img, set)
	if err != nil {
		t.Fatal(err)
	}
	return pcsctest.StartCard(t, sim), sim
}

// readerFor waits until the daemon shows the card in reader (by PC/SC name).
func (b *bed) readerFor(name string, present bool) string {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		rs, _ := b.d.Readers(context.Background())
		for _, r := range rs.Readers {
			if r.Name == name && r.CardPresent == present {
				return r.ID
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.t.Fatalf("reader %q never showed card_present=%v", name, present)
	return ""
}

func (b *bed) run(req service.Request) *service.Operation {
	b.t.Helper()
	if req.Caller.TokenName == "" {
		req.Caller = service.Caller{TokenName: "test", Role: service.RoleAdmin, OperatorID: "staff-1", RequestID: "req-1"}
	}
	op, err := b.d.Submit(context.Background(), req)
	if err != nil {
		b.t.Fatalf("submit %s: %v", req.Kind, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	op, err = b.d.Wait(ctx, op.ID)
	if err != nil {
		b.t.Fatal(err)
	}
	if !op.State.Final() {
		b.t.Fatalf("%s did not end: %+v", req.Kind, op)
	}
	return op
}

func problemCode(err error) service.Code {
	if p, ok := service.AsProblem(err); ok {
		return p.Code
	}
	return ""
}

// A re-read while the card stays in is served from the cache: 0 APDUs at
// the virtual card and in the daemon's own count; the SSN is masked for a
// role that may not see it, in the structured field and the legacy string.
func TestReadCachedPerInsertion(t *testing.T) {
	b := newDaemon(t, 4)
	vc, sim := startSim(t, "sample-v3")
	id := b.readerFor(vc.Reader, true)

	op := b.run(service.Request{Kind: service.KindRead, ReaderID: id})
	if op.State != service.StateDone {
		t.Fatalf("read: %+v %+v", op, op.Problem)
	}
	var first ReadResult
	json.Unmarshal(op.Result, &first)
	if first.Cached || first.Card.CardID != "110100D156000005A1B2C3D4E5F60718" {
		t.Fatalf("first read: %+v", first)
	}
	if !first.SSNMasked || strings.Contains(first.IReadCardBas, "110105198512310029") || !strings.HasSuffix(first.IReadCardBas, "|410100813475|dev1|") {
		t.Fatalf("SSN not masked or legacy string wrong: %q", first.IReadCardBas)
	}
	apdusAtCard, apdusHere := sim.APDUCount(), b.d.Stats().APDUs[id]
	if apdusHere == 0 {
		t.Fatal("the daemon counted no APDUs for the first read")
	}
	op = b.run(service.Request{Kind: service.KindRead, Caller: service.Caller{TokenName: "bank", Role: service.RoleBank, MaySeeSSN: true}})
	var second ReadResult
	json.Unmarshal(op.Result, &second)
	if !second.Cached || second.Card.SSN != "110105198512310029" {
		t.Fatalf("second read not cached or SSN masked for a role that may see it: %+v", second)
	}
	if n := sim.APDUCount() - apdusAtCard; n != 0 {
		t.Fatalf("cached re-read sent %d APDUs to the card", n)
	}
	if n := b.d.Stats().APDUs[id] - apdusHere; n != 0 {
		t.Fatalf("cached re-read counted %d APDUs", n)
	}
	// Pull the card and put it back: the cache is gone.
	vc.Slot.Remove()
	b.readerFor(vc.Reader, false)
	vc.Slot.Insert()
	b.readerFor(vc.Reader, true)
	op = b.run(service.Request{Kind: service.KindRead, ReaderID: id})
	var third ReadResult
	json.Unmarshal(op.Result, &third)
	if third.Cached || sim.APDUCount() == apdusAtCard {
		t.Fatalf("read after re-insertion came from the cache")
	}
	// Every operation left a complete audit record, and the chain holds.
	al, _ := audit.Open(b.st.DB())
	recs, _ := al.Records(audit.Query{})
	if len(recs) != 3 || recs[0].Outcome != audit.OutcomeDone || recs[0].CardID == "" || recs[0].Operator != "staff-1" || !strings.Contains(recs[0].SSNMasked, "*") {
		t.Fatalf("audit records: %+v", recs)
	}
	if _, err := audit.Verify(b.st.DB()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.logs(), "110105198512310029") {
		t.Fatal("the daemon's log holds the full ID number")
	}
}

// Without a reader id: the one card reader holding a card, or
// AMBIGUOUS_READER when two do; an unknown id is READER_NOT_FOUND.
func TestReaderChoice(t *testing.T) {
	b := newDaemon(t, 4)
	vc1, _ := startSim(t, "sample-v3")
	b.readerFor(vc1.Reader, true)
	vc2, _ := startSim(t, "sample-v2")
	id2 := b.readerFor(vc2.Reader, true)
	_, err := b.d.Submit(context.Background(), service.Request{Kind: service.KindRead})
	if problemCode(err) != service.CodeAmbiguousReader {
		t.Fatalf("two cards, no reader: %v", err)
	}
	_, err = b.d.Submit(context.Background(), service.Request{Kind: service.KindRead, ReaderID: "r-nonexistent"})
	if problemCode(err) != service.CodeReaderNotFound {
		t.Fatalf("unknown reader: %v", err)
	}
	if !strings.HasPrefix(id2, "r-") || strings.Contains(id2, " ") {
		t.Fatalf("reader id %q is not a stable short id", id2)
	}
	op := b.run(service.Request{Kind: service.KindRead, ReaderID: id2})
	if op.State != service.StateDone {
		t.Fatalf("read in named reader: %+v", op.Problem)
	}
}

// A full queue answers READER_BUSY with Retry-After; the queued ones run.
func TestQueueFull(t *testing.T) {
	b := newDaemon(t, 1)
	vc, _ := startSim(t, "sample-v3")
	id := b.readerFor(vc.Reader, true)
	vc.Slot.Latency(300 * time.Millisecond)
	defer vc.Slot.Latency(0)
	caller := service.Caller{TokenName: "t", Role: service.RoleBank}
	var ops []*service.Operation
	var busy error
	for i := 0; i < 3; i++ {
		op, err := b.d.Submit(context.Background(), service.Request{Kind: service.KindPINTries, ReaderID: id, Caller: caller})
		if err != nil {
			busy = err
			break
		}
		ops = append(ops, op)
	}
	p, ok := service.AsProblem(busy)
	if !ok || p.Code != service.CodeReaderBusy || p.RetryAfter <= 0 || !p.Retryable {
		t.Fatalf("third submit on a queue of 1 (+1 running): %v", busy)
	}
	for _, op := range ops {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		got, _ := b.d.Wait(ctx, op.ID)
		cancel()
		if got.State != service.StateDone {
			t.Fatalf("queued operation: %+v %+v", got, got.Problem)
		}
	}
}

// No audit record, no card operation: AUDIT_UNAVAILABLE and 0 APDUs.
func TestAuditUnavailable(t *testing.T) {
	b := newDaemon(t, 4)
	vc, sim := startSim(t, "sample-v3")
	id := b.readerFor(vc.Reader, true)
	if err := b.st.DB().Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("audit")) }); err != nil {
		t.Fatal(err)
	}
	before := sim.APDUCount()
	_, err := b.d.Submit(context.Background(), service.Request{Kind: service.KindRead, ReaderID: id})
	if problemCode(err) != service.CodeAuditUnavailable {
		t.Fatalf("submit without an audit trail: %v", err)
	}
	// The worker may have taken the operation while the begin entry was
	// being written (it readies the card meanwhile): count once it let go.
	waitWorker(t, b.d, id, "idle", func(r *service.Reader) bool { return !r.Busy && r.QueueLength == 0 })
	if n := sim.APDUCount() - before; n != 0 {
		t.Fatalf("%d APDUs reached the card without an audit record", n)
	}
}

// Bank flow through the daemon: verify, wrong PIN with tries left,
// change, reload, unblock; bad PIN formats never reach the card.
func TestPINFlow(t *testing.T) {
	b := newDaemon(t, 4)
	vc, sim := startSim(t, "sample-v3")
	id := b.readerFor(vc.Reader, true)
	bank := service.Caller{TokenName: "bank", Role: service.RoleBank, OperatorID: "teller-2"}
	before := sim.APDUCount()
	for _, bad := range []service.Request{
		{Kind: service.KindPINVerify, PIN: "12ab56"},
		{Kind: service.KindPINChange, OldPIN: "864209", NewPIN: "12", PINConfirm: "12"},
		{Kind: service.KindPINChange, OldPIN: "864209", NewPIN: "135790", PINConfirm: "135791"},
		{Kind: service.KindPINVerify, PIN: "864209", PINEntry: service.PINEntryPinpad},
	} {
		bad.ReaderID, bad.Caller = id, bank
		if _, err := b.d.Submit(context.Background(), bad); err == nil {
			t.Fatalf("bad PIN request accepted: %s %q", bad.Kind, bad.NewPIN)
		}
	}
	if n := sim.APDUCount() - before; n != 0 {
		t.Fatalf("refused requests sent %d APDUs", n)
	}
	op := b.run(service.Request{Kind: service.KindPINVerify, ReaderID: id, Caller: bank, PIN: "111111"})
	if op.Problem == nil || op.Problem.Code != service.CodePINIncorrect || op.Problem.TriesLeft == nil || *op.Problem.TriesLeft != 2 || op.Problem.LegacyCode != -51 {
		t.Fatalf("wrong PIN: %+v", op.Problem)
	}
	op = b.run(service.Request{Kind: service.KindPINChange, ReaderID: id, Caller: bank, OldPIN: "864209", NewPIN: "135790", PINConfirm: "135790"})
	if op.State != service.StateDone || sim.PIN() != "135790" {
		t.Fatalf("change: %+v", op.Problem)
	}
	op = b.run(service.Request{Kind: service.KindPINReload, ReaderID: id, Caller: bank, NewPIN: "246801", PINConfirm: "246801"})
	if op.State != service.StateDone || sim.PIN() != "246801" {
		t.Fatalf("reload: %+v", op.Problem)
	}
	op = b.run(service.Request{Kind: service.KindPINTries, ReaderID: id, Caller: bank})
	if op.State != service.StateDone {
		t.Fatalf("tries: %+v", op.Problem)
	}
	if strings.Contains(b.logs(), "246801") || strings.Contains(b.logs(), "135790") {
		t.Fatal("a PIN reached the log")
	}
}

// Subscribe sees the card leave and come back, in order, and a resume
// after an id gets exactly what followed it.
func TestEventsAndResume(t *testing.T) {
	b := newDaemon(t, 4)
	vc, _ := startSim(t, "sample-v3")
	id := b.readerFor(vc.Reader, true)
	_, _, ch, cancel := b.d.Subscribe(0)
	defer cancel()
	vc.Slot.Remove()
	var removedID uint64
	deadline := time.After(20 * time.Second)
	for removedID == 0 {
		select {
		case ev := <-ch:
			if ev.Type == service.EventCardRemoved && strings.Contains(string(ev.Data), id) {
				removedID = ev.ID
			}
		case <-deadline:
			t.Fatal("no card.removed event")
		}
	}
	vc.Slot.Insert()
	b.readerFor(vc.Reader, true)
	backlog, lost, _, cancel2 := b.d.Subscribe(removedID - 1)
	defer cancel2()
	if lost || len(backlog) < 2 || backlog[0].ID != removedID || backlog[0].Type != service.EventCardRemoved {
		t.Fatalf("resume after %d: lost=%v backlog=%+v", removedID-1, lost, backlog)
	}
	found := false
	for i, ev := range backlog {
		if i > 0 && ev.ID != backlog[i-1].ID+1 {
			t.Fatalf("event ids not consecutive: %d after %d", ev.ID, backlog[i-1].ID)
		}
		if ev.Type == service.EventCardInserted {
			found = true
		}
	}
	if !found {
		t.Fatal("no card.inserted in the resumed backlog")
	}
}

// SIGTERM's Shutdown: new operations get SHUTTING_DOWN.
func TestShutdownRefuses(t *testing.T) {
	b := newDaemon(t, 4)
	vc, _ := startSim(t, "sample-v3")
	id := b.readerFor(vc.Reader, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.d.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := b.d.Submit(context.Background(), service.Request{Kind: service.KindRead, ReaderID: id})
	if problemCode(err) != service.CodeShuttingDown {
		t.Fatalf("submit after shutdown: %v", err)
	}
	if err := b.d.Ready(context.Background()); problemCode(err) != service.CodeShuttingDown {
		t.Fatalf("ready after shutdown: %v", err)
	}
}

// Readers named in the configuration get its ids and roles: an ignored
// reader takes no operation and does not count as a card reader when the
// request names none.
func TestReaderRoles(t *testing.T) {
	d := pcsctest.EnsurePCSCD(t)
	b := newDaemon(t, 4,
		config.ReaderConfig{Name: d.Readers[0].Name, ID: "desk-1", Role: "card"},
		config.ReaderConfig{Name: d.Readers[1].Name, ID: "spare", Role: "ignore"})
	startSim(t, "sample-v3")
	startSim(t, "sample-v2")
	b.readerFor(d.Readers[0].Name, true)
	b.readerFor(d.Readers[1].Name, true)
	rs, _ := b.d.Readers(context.Background())
	got := map[string]string{}
	for _, r := range rs.Readers {
		got[r.ID] = r.Role
	}
	if got["desk-1"] != "card" || got["spare"] != "ignore" {
		t.Fatalf("readers: %+v", rs.Readers)
	}
	if _, err := b.d.Submit(context.Background(), service.Request{Kind: service.KindRead, ReaderID: "spare"}); problemCode(err) != service.CodeReaderNotFound {
		t.Fatalf("operation on an ignored reader: %v", err)
	}
	op := b.run(service.Request{Kind: service.KindRead})
	if op.State != service.StateDone || op.ReaderID != "desk-1" {
		t.Fatalf("read without a reader: %+v %+v", op, op.Problem)
	}
}

// The store never holds a read's card data: the operation snapshot kept
// for GET /v1/operations after a restart has no result for reads.
func TestStoredOperationHoldsNoCardData(t *testing.T) {
	b := newDaemon(t, 4)
	vc, sim := startSim(t, "sample-v3")
	id := b.readerFor(vc.Reader, true)
	op := b.run(service.Request{Kind: service.KindRead, ReaderID: id, Caller: service.Caller{TokenName: "c", Role: service.RoleCounter, MaySeeSSN: true}})
	if !strings.Contains(string(op.Result), sim.Image().Holder.SSN) {
		t.Fatalf("the counter's read has no ID number: %s", op.Result)
	}
	err := b.st.DB().View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			return bk.ForEach(func(k, v []byte) error {
				if strings.Contains(string(v), sim.Image().Holder.SSN) || strings.Contains(string(v), sim.Image().Holder.Name) {
					t.Errorf("bucket %s key %q holds card data", name, k)
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}
