package audit

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// An end entry committed after the answer (later) lands with the
// caller's record in one transaction; Records waits for it.
func TestCompleteLaterCommitsWithTheCallersRecord(t *testing.T) {
	l, s := openLog(t)
	if err := s.DB().Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("ops")); return err }); err != nil {
		t.Fatal(err)
	}
	seq, err := l.Begin(Begin{TokenName: "counter-1", Role: "counter", Reader: "r1", Operation: "read", OpID: "op-1"})
	if err != nil {
		t.Fatal(err)
	}
	also := func(tx *bolt.Tx) error { return tx.Bucket([]byte("ops")).Put([]byte("op-1"), []byte("done")) }
	if err := l.CompleteWith(seq, End{Outcome: OutcomeDone, CardID: "AABB"}, also, true); err != nil {
		t.Fatal(err)
	}
	recs, err := l.Records(Query{})
	if err != nil || len(recs) != 1 || recs[0].Outcome != OutcomeDone || recs[0].CardID != "AABB" {
		t.Fatalf("records after a later end: %+v %v", recs, err)
	}
	var v []byte
	s.DB().View(func(tx *bolt.Tx) error { v = tx.Bucket([]byte("ops")).Get([]byte("op-1")); return nil })
	if string(v) != "done" {
		t.Fatalf("the caller's record is %q", v)
	}
	if n, err := Verify(s.DB()); err != nil || n != 2 {
		t.Fatalf("verify: %d %v", n, err)
	}
}

// A begin entry whose end never came (the station stopped before the
// end's commit) verifies, and a later run shows it as outcome unknown;
// the run that began it shows it started.
func TestBeginWithoutEndIsUnknownAfterARestart(t *testing.T) {
	l, s := openLog(t)
	touch(t, l, "read", "AABB", OutcomeDone)
	if _, err := l.Begin(Begin{TokenName: "counter-1", Role: "counter", Reader: "r1", Operation: "read", OpID: "op-2"}); err != nil {
		t.Fatal(err)
	}
	recs, _ := l.Records(Query{})
	if len(recs) != 2 || recs[1].Outcome != OutcomeStarted {
		t.Fatalf("this run's open touch: %+v", recs)
	}
	again, err := Open(s.DB()) // the next run of the station
	if err != nil {
		t.Fatal(err)
	}
	recs, _ = again.Records(Query{})
	if len(recs) != 2 || recs[0].Outcome != OutcomeDone || recs[1].Outcome != OutcomeUnknown || recs[1].Completed != nil {
		t.Fatalf("after a restart: %+v", recs)
	}
	if n, err := Verify(s.DB()); err != nil || n != 3 {
		t.Fatalf("a begin without an end must verify: %d %v", n, err)
	}
	if n, err := Unfinished(s.DB()); err != nil || n != 1 {
		t.Fatalf("unfinished touches: %d %v", n, err)
	}
}

// A failing caller's record does not cost the end entry.
func TestCallersRecordFailureKeepsTheEntry(t *testing.T) {
	l, s := openLog(t)
	seq, err := l.Begin(Begin{Reader: "r1", Operation: "block", OpID: "op-3"})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = l.CompleteWith(seq, End{Outcome: OutcomeFailed}, func(*bolt.Tx) error { return boom }, false)
	if !errors.Is(err, boom) {
		t.Fatalf("the caller's failure is not reported: %v", err)
	}
	recs, _ := l.Records(Query{})
	if len(recs) != 1 || recs[0].Outcome != OutcomeFailed {
		t.Fatalf("the end entry is missing: %+v", recs)
	}
	if _, err := Verify(s.DB()); err != nil {
		t.Fatal(err)
	}
}

// Concurrent touches share commits and the chain still holds every
// entry once, in order.
func TestConcurrentTouchesGroupCommit(t *testing.T) {
	l, s := openLog(t)
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			seq, err := l.Begin(Begin{Reader: fmt.Sprintf("r%d", i%3), Operation: "read", OpID: fmt.Sprintf("op-%d", i)})
			if err != nil {
				errs <- err
				return
			}
			errs <- l.CompleteWith(seq, End{Outcome: OutcomeDone, CardID: fmt.Sprintf("%04X", i)}, nil, i%2 == 0)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	recs, err := l.Records(Query{})
	if err != nil || len(recs) != n {
		t.Fatalf("records: %d %v", len(recs), err)
	}
	for _, r := range recs {
		if r.Outcome != OutcomeDone || r.Completed == nil {
			t.Fatalf("touch not completed: %+v", r)
		}
	}
	if got, err := Verify(s.DB()); err != nil || got != 2*n {
		t.Fatalf("verify: %d %v", got, err)
	}
}
