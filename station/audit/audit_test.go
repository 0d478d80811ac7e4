package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"ssstation/station/store"
)

func openLog(t *testing.T) (*Log, *store.Store) {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	l, err := Open(s.DB())
	if err != nil {
		t.Fatal(err)
	}
	return l, s
}

func touch(t *testing.T, l *Log, op, card string, out Outcome) uint64 {
	t.Helper()
	seq, err := l.Begin(Begin{TokenName: "counter-1", Role: "counter", Operator: "staff-7", Reader: "r1", Operation: op})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Complete(seq, End{Outcome: out, CardID: card, SSNMasked: "1101**********0012", SW: "9000"}); err != nil {
		t.Fatal(err)
	}
	return seq
}

func TestChainVerifiesAndRecordsJoin(t *testing.T) {
	l, s := openLog(t)
	touch(t, l, "read", "AABB", OutcomeDone)
	touch(t, l, "activate", "CCDD", OutcomeFailed)
	n, err := Verify(s.DB())
	if err != nil || n != 4 {
		t.Fatalf("verify: %d entries, %v; want 4, nil", n, err)
	}
	recs, err := l.Records(Query{})
	if err != nil || len(recs) != 2 {
		t.Fatalf("records: %v %v", recs, err)
	}
	if recs[1].Operation != "activate" || recs[1].Outcome != OutcomeFailed || recs[1].CardID != "CCDD" || recs[1].Completed == nil {
		t.Fatalf("record not joined: %+v", recs[1])
	}
	byCard, _ := l.Records(Query{CardID: "aabb"})
	if len(byCard) != 1 || byCard[0].Operation != "read" {
		t.Fatalf("query by card: %+v", byCard)
	}
	var buf bytes.Buffer
	if n, err := Export(s.DB(), &buf); err != nil || n != 4 {
		t.Fatalf("export: %d %v", n, err)
	}
	if n, err := VerifyLines(&buf); err != nil || n != 4 {
		t.Fatalf("verify export: %d %v", n, err)
	}
}

// A changed entry breaks the chain at the entry after it (whose previous
// hash no longer matches), and the verifier names it.
func TestTamperNamed(t *testing.T) {
	l, s := openLog(t)
	for i := 0; i < 3; i++ {
		touch(t, l, "read", "AABB", OutcomeDone)
	}
	err := s.DB().Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		var e Entry
		json.Unmarshal(b.Get(key(3)), &e)
		e.Outcome = OutcomeFailed
		raw, _ := json.Marshal(e)
		return b.Put(key(3), raw)
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(s.DB())
	var be *BreakError
	if !errors.As(err, &be) || be.Seq != 4 {
		t.Fatalf("verify after tamper: %v, want a break at entry 4", err)
	}
	// Removing the last entry is caught by the head hash.
	l2, s2 := openLog(t)
	touch(t, l2, "read", "AABB", OutcomeDone)
	s2.DB().Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketAudit).Delete(key(2)) })
	if _, err := Verify(s2.DB()); !errors.As(err, &be) {
		t.Fatalf("verify after truncation: %v, want a break", err)
	}
}

func TestNoFullIDNumber(t *testing.T) {
	l, s := openLog(t)
	// An ID number typed as the operator is masked, never stored.
	if _, err := l.Begin(Begin{Operator: "staff 110101199003070012", Operation: "read"}); err != nil {
		t.Fatalf("operator with an ID number: %v", err)
	}
	// A card identification code has long digit runs and is kept as is.
	seq0, _ := l.Begin(Begin{Operation: "read"})
	if err := l.Complete(seq0, End{Outcome: OutcomeDone, CardID: "440300D1560000050102030405060708"}); err != nil {
		t.Fatalf("card id refused: %v", err)
	}
	seq, err := l.Begin(Begin{Operation: "read"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Complete(seq, End{Outcome: OutcomeDone, SSNMasked: "11010119900307001X"}); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("unmasked SSN: %v", err)
	}
	var buf bytes.Buffer
	Export(s.DB(), &buf)
	if strings.Contains(buf.String(), "19900307") || !strings.Contains(buf.String(), "staff 1101************12") || !strings.Contains(buf.String(), "440300D1560000050102030405060708") {
		t.Fatalf("export: %s", buf.String())
	}
	if _, err := Verify(s.DB()); err != nil {
		t.Fatal(err)
	}
}
