package daemon

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"ssstation/station/audit"
	"ssstation/station/service"
)

// waitWorker polls the reader until pred holds (the worker's state is
// only visible through Reader).
func waitWorker(t *testing.T, d *Daemon, id string, what string, pred func(*service.Reader) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := d.Reader(context.Background(), id); err == nil && pred(r) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the reader's worker never got %s", what)
}

// The worker takes an operation while its audit begin entry commits and
// readies the card meanwhile, but no APDU reaches the card before the
// entry is durable: here the commit is held back by a write transaction
// of the test's own.
func TestNoAPDUBeforeTheBeginIsDurable(t *testing.T) {
	b := newDaemon(t, 4)
	vc, sim := startSim(t, "sample-v3")
	id := b.readerFor(vc.Reader, true)

	hold, err := b.st.DB().Begin(true) // the audit's commit waits for it
	if err != nil {
		t.Fatal(err)
	}
	before := sim.APDUCount()
	type submitted struct {
		op  *service.Operation
		err error
	}
	done := make(chan submitted, 1)
	go func() {
		op, err := b.d.Submit(context.Background(), service.Request{Kind: service.KindRead, ReaderID: id,
			Caller: service.Caller{TokenName: "test", Role: service.RoleCounter}})
		done <- submitted{op, err}
	}()
	waitWorker(t, b.d, id, "the operation", func(r *service.Reader) bool { return r.Busy })
	if n := sim.APDUCount() - before; n != 0 {
		hold.Rollback()
		t.Fatalf("%d APDUs reached the card before its audit record was committed", n)
	}
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	s := <-done
	if s.err != nil {
		t.Fatal(s.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	op, err := b.d.Wait(ctx, s.op.ID)
	if err != nil || op.State != service.StateDone {
		t.Fatalf("the read after its begin entry: %+v %v", op, err)
	}
	if sim.APDUCount() == before {
		t.Fatal("the read sent no APDU")
	}
	recs, err := b.d.opts.Audit.Records(audit.Query{})
	if err != nil || len(recs) == 0 || recs[len(recs)-1].OpID != op.ID || recs[len(recs)-1].Outcome != audit.OutcomeDone {
		t.Fatalf("audit records: %+v %v", recs, err)
	}
}

// A read's end entry and stored operation are committed after its
// answer, together: once flushed (as Shutdown does) both are in the file.
func TestReadEndCommittedAfterTheAnswer(t *testing.T) {
	b := newDaemon(t, 4)
	vc, _ := startSim(t, "sample-v3")
	id := b.readerFor(vc.Reader, true)
	op := b.run(service.Request{Kind: service.KindRead, ReaderID: id})
	if op.State != service.StateDone {
		t.Fatalf("read: %+v", op)
	}
	b.d.opts.Audit.Flush()
	n, err := audit.Verify(b.st.DB())
	if err != nil || n < 2 {
		t.Fatalf("verify: %d %v", n, err)
	}
	if u, err := audit.Unfinished(b.st.DB()); err != nil || u != 0 {
		t.Fatalf("%d touches without an end after Flush (%v)", u, err)
	}
	var stored service.Operation
	if err := b.st.DB().View(func(tx *bolt.Tx) error {
		return json.Unmarshal(tx.Bucket(bucketOps).Get([]byte(op.ID)), &stored)
	}); err != nil || stored.State != service.StateDone || stored.Result != nil {
		t.Fatalf("stored operation: %+v %v", stored, err)
	}
}
