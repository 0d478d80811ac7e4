package journal

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A worker whose attempt was taken over by a later Begin cannot write:
// its steps, interruption and end are refused, the live attempt's are not.
func TestStaleAttemptRefused(t *testing.T) {
	s, _ := newStore(t)
	r := req("op1", KindPersonalize, card1, "a")
	first := mustBegin(t, s, r).Attempt()
	must(t, s.StepStarted(first, "select", 1, "select SSSE"))
	second, existed, err := s.Begin(r)
	if err != nil || !existed || second.AttemptToken == first.Token || second.AttemptToken == "" {
		t.Fatalf("second Begin: %+v %v", second, err)
	}
	for name, err := range map[string]error{
		"StepStarted":  s.StepStarted(first, "update:EF05:1", 2, "update EF05 record 1"),
		"StepFinished": s.StepFinished(first, "select", ""),
		"Interrupt":    s.Interrupt(first, errors.New("late")),
		"Finish":       s.Finish(first, StatusFailed, errors.New("late")),
		"SetPINCheck":  s.SetPINCheck(first, digest("x")),
	} {
		if !errors.Is(err, ErrStale) {
			t.Errorf("%s with a stale token: %v", name, err)
		}
	}
	live := second.Attempt()
	must(t, s.StepStarted(live, "select", 1, "select SSSE"))
	must(t, s.StepFinished(live, "select", "9000"))
	must(t, s.Finish(live, StatusDone, nil))
	if e, _ := s.Get("op1"); e.Status != StatusDone || e.Error != "" {
		t.Fatalf("the stale worker changed the entry: %+v", e)
	}
}

// Steps are matched by their stable id: a plan that numbers them
// differently or words them differently still resumes.
func TestStepIDsSurviveRenumberingAndRewording(t *testing.T) {
	s, _ := newStore(t)
	r := req("op1", KindPersonalize, card1, "a")
	a := mustBegin(t, s, r).Attempt()
	must(t, s.StepStarted(a, "update:EF06:2", 3, "update EF06 record 2 (name)"))
	must(t, s.StepFinished(a, "update:EF06:2", ""))
	must(t, s.Interrupt(a, errors.New("card removed")))
	e, _, err := s.Begin(r)
	if err != nil {
		t.Fatal(err)
	}
	if !e.StepDone("update:EF06:2") {
		t.Fatal("the step is not found by its id")
	}
	a = e.Attempt()
	must(t, s.StepStarted(a, "update:EF06:2", 4, "write the name (EF06 record 2)"))
	must(t, s.StepFinished(a, "update:EF06:2", ""))
	must(t, s.Finish(a, StatusDone, nil))
	e, _ = s.Get("op1")
	if st, _ := e.Step("update:EF06:2"); st.Index != 4 || st.Attempts != 2 || !strings.HasPrefix(st.Name, "write the name") {
		t.Fatalf("step: %+v", st)
	}
	if err := s.StepStarted(Attempt{}, "has space", 1, "x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("step id with a space: %v", err)
	}
}

// The PIN check is kept while the step is in flight and dropped when the
// operation ends.
func TestPINCheckDroppedAtTheEnd(t *testing.T) {
	s, path := newStore(t)
	a := mustBegin(t, s, req("op1", KindActivate, card1, "a")).Attempt()
	check := digest("a keyed digest")
	must(t, s.SetPINCheck(a, check))
	if e, _ := s.Get("op1"); e.PINCheck != check {
		t.Fatalf("check not kept: %q", e.PINCheck)
	}
	if err := s.SetPINCheck(a, "123456"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a PIN as the check: %v", err)
	}
	must(t, s.Finish(a, StatusDone, nil))
	e, _ := s.Get("op1")
	if e.PINCheck != "" {
		t.Fatal("check kept after the end")
	}
	s.Close()
	s = openTest(t, path)
	defer s.Close()
	if e, _ := s.Get("op1"); e.PINCheck != "" {
		t.Fatal("check back after a reopen")
	}
}

// Listing opens read-only: a missing journal creates nothing, an existing
// one is listed and cannot be written.
func TestReadOnlyCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "journal.db")
	if _, err := OpenReadOnly(path, Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing journal: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the data directory was created: %v", err)
	}
	w := openTest(t, path)
	mustBegin(t, w, req("op1", KindBlock, card1, "a"))
	w.Close()
	before, _ := os.ReadFile(path)
	ro, err := OpenReadOnly(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if l, err := ro.List(0); err != nil || len(l) != 1 {
		t.Fatalf("list: %v %v", l, err)
	}
	if _, _, err := ro.Begin(req("op2", KindBlock, card1, "a")); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Begin on read-only: %v", err)
	}
	if err := ro.Abandon("op1", "card gone"); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Abandon on read-only: %v", err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("the read-only open changed the file")
	}
}

// A symlink at the journal's path is refused, for writing and reading.
func TestSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.db")
	w := openTest(t, real)
	w.Close()
	link := filepath.Join(dir, "journal.db")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWith(link, Options{}); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("OpenWith a symlink: %v", err)
	}
	if _, err := OpenReadOnly(link, Options{}); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("OpenReadOnly a symlink: %v", err)
	}
	dangling := filepath.Join(dir, "dangling.db")
	os.Symlink(filepath.Join(dir, "nowhere.db"), dangling)
	if _, err := OpenWith(dangling, Options{}); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("OpenWith a dangling symlink: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nowhere.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("the symlink's target was created")
	}
}

// journalFile writes a journal with a few entries and returns its bytes.
func journalFile(t *testing.T, path string) []byte {
	t.Helper()
	s := openTest(t, path)
	for i, op := range []string{"op1", "op2", "op3", "op4"} {
		a := mustBegin(t, s, req(op, KindPersonalize, card1, op)).Attempt()
		must(t, s.StepStarted(a, "select", i, "select SSSE"))
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// metaField reads a uint64 of the newest valid meta page: offset in the
// meta (after the 16-byte page header).
func metaField(b []byte, off int) uint64 {
	const ps = 4096
	var best, txid uint64
	for p := 0; p < 2; p++ {
		m := b[p*ps+16:]
		if binary.LittleEndian.Uint32(m[0:]) != 0xED0CDAED {
			continue
		}
		if tx := binary.LittleEndian.Uint64(m[48:]); tx >= txid {
			txid, best = tx, binary.LittleEndian.Uint64(m[off:])
		}
	}
	return best
}

// Truncated, overwritten and garbled journal files give an error wrapping
// ErrDamaged: never a panic, never a SIGSEGV or SIGBUS, and the file is
// left as it is.
func TestDamagedFilesGiveAnError(t *testing.T) {
	dir := t.TempDir()
	good := journalFile(t, filepath.Join(dir, "good.db"))
	const ps = 4096
	freelist := metaField(good, 32)
	cases := map[string]func([]byte) []byte{
		"truncated to 100 bytes":   func(b []byte) []byte { return b[:100] },
		"truncated to one page":    func(b []byte) []byte { return b[:ps] },
		"truncated to three pages": func(b []byte) []byte { return b[:3*ps] },
		"truncated by half":        func(b []byte) []byte { return b[:len(b)/2] },
		"not a journal":            func(b []byte) []byte { return []byte(strings.Repeat("not a bbolt file\n", 1000)) },
		"meta pages zeroed": func(b []byte) []byte {
			clear(b[:2*ps])
			return b
		},
		"freelist page overwritten": func(b []byte) []byte {
			p := b[int(freelist)*ps:]
			binary.LittleEndian.PutUint16(p[8:], 0x01) // a branch page where the freelist is
			binary.LittleEndian.PutUint16(p[10:], 0xFFFF)
			return b
		},
		"data pages zeroed": func(b []byte) []byte {
			for p := 2; p*ps < len(b); p++ {
				if uint64(p) != freelist {
					clear(b[p*ps : (p+1)*ps])
				}
			}
			return b
		},
		"data pages garbled": func(b []byte) []byte {
			for p := 2; p*ps < len(b); p++ {
				if uint64(p) != freelist {
					for i := p*ps + 16; i < (p+1)*ps; i++ {
						b[i] ^= 0xA5
					}
				}
			}
			return b
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal.db")
			bad := damage(append([]byte(nil), good...))
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, open := range []func() (*Store, error){
				func() (*Store, error) { return OpenWith(path, Options{Timeout: 100 * time.Millisecond}) },
				func() (*Store, error) { return OpenReadOnly(path, Options{Timeout: 100 * time.Millisecond}) },
			} {
				s, err := open()
				if err == nil {
					// bbolt found nothing wrong: every entry must then read.
					_, lerr := s.List(0)
					s.Close()
					t.Fatalf("opened a damaged file (list: %v)", lerr)
				}
				if !errors.Is(err, ErrDamaged) {
					t.Fatalf("error does not wrap ErrDamaged: %v", err)
				}
			}
			after, _ := os.ReadFile(path)
			if string(after) != string(bad) {
				t.Fatal("the damaged file was changed")
			}
		})
	}
}

// One entry that cannot be decoded is listed as damaged; the others are
// listed as they are.
func TestOneBadEntryDoesNotHideOthers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	journalFile(t, path)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		j := tx.Bucket(bucketJournal)
		j.Bucket(bucketOps).Put([]byte("op2"), []byte("{not json"))
		return j.Bucket(bucketOps).Put([]byte("op3"), []byte(`{"op_id":"other","status":"done"}`))
	})
	db.Close()
	s := openTest(t, path)
	defer s.Close()
	l, err := s.List(0)
	if err != nil || len(l) != 4 {
		t.Fatalf("list: %d %v", len(l), err)
	}
	bad := 0
	for _, e := range l {
		if e.Status == StatusDamaged {
			bad++
			if e.Error == "" {
				t.Fatal("a damaged entry without its error")
			}
		}
	}
	if bad != 2 {
		t.Fatalf("%d damaged entries listed, want 2", bad)
	}
	byCard, err := s.ByCard(card1)
	if err != nil || len(byCard) != 4 {
		t.Fatalf("by card: %d %v", len(byCard), err)
	}
	if _, err := s.Get("op2"); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Get of a damaged entry: %v", err)
	}
	if u, err := s.Unfinished(card1); err != nil || len(u) != 2 {
		t.Fatalf("unfinished: %d %v", len(u), err)
	}
}

// Finished entries older than the retention go when the journal is opened;
// unfinished ones stay whatever their age.
func TestRetentionPrunesOldFinishedEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	c := newClock()
	s, err := OpenWith(path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"done", "failed", "abandoned", "open"} {
		a := mustBegin(t, s, req(op, KindBlock, card1, op)).Attempt()
		switch op {
		case "done":
			must(t, s.Finish(a, StatusDone, nil))
		case "failed":
			must(t, s.Finish(a, StatusFailed, errors.New("6985")))
		case "abandoned":
			must(t, s.Abandon(op, "card gone"))
		}
	}
	s.Close()
	later := func() time.Time { return c.Now().Add(40 * 24 * time.Hour) }
	s, err = OpenWith(path, Options{Now: later, Retention: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := s.List(0)
	s.Close()
	if len(l) != 1 || l[0].OpID != "open" {
		t.Fatalf("after pruning: %+v", l)
	}
	// A negative retention keeps everything.
	s, _ = OpenWith(path, Options{Now: func() time.Time { return later().Add(1000 * 24 * time.Hour) }, Retention: -1})
	l, _ = s.List(0)
	s.Close()
	if len(l) != 1 {
		t.Fatalf("negative retention pruned: %+v", l)
	}
}

// The daemon's shared file: the journal lives in its own bucket, next to
// the caller's, and Close leaves the database open.
func TestOpenDBSharesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "station.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket([]byte("audit"))
		return b.Put([]byte("k"), []byte("v"))
	})
	s, err := OpenDB(db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := mustBegin(t, s, req("op1", KindBlock, card1, "a")).Attempt()
	must(t, s.Finish(a, StatusDone, nil))
	must(t, s.Close())
	var top []string
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error { top = append(top, string(name)); return nil })
	})
	if err != nil {
		t.Fatalf("the database was closed with the journal: %v", err)
	}
	if strings.Join(top, ",") != "audit,journal" {
		t.Fatalf("top-level buckets: %v", top)
	}
	s2, _ := OpenDB(db, Options{})
	if e, err := s2.Get("op1"); err != nil || e.Status != StatusDone {
		t.Fatalf("reopened: %+v %v", e, err)
	}
}

// A version 1 file (buckets at the top level, steps without ids) is read
// by OpenReadOnly as it is and moved under the journal bucket by OpenWith.
func TestVersion1FileReadAndMoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	v1 := map[string]any{"op_id": "old1", "kind": "personalize", "card_id": card1, "payload_digest": digest("a"),
		"status": "interrupted", "steps": []map[string]any{{"name": "update EF06 record 2 (name)", "index": 3, "state": "started", "attempts": 1}}}
	b, _ := json.Marshal(v1)
	db.Update(func(tx *bolt.Tx) error {
		ops, _ := tx.CreateBucket(bucketOps)
		ops.Put([]byte("old1"), b)
		idx, _ := tx.CreateBucket(bucketByCard)
		idx.Put([]byte(card1+"\x00old1"), []byte("interrupted"))
		meta, _ := tx.CreateBucket(bucketMeta)
		return meta.Put(keyVersion, []byte("1"))
	})
	db.Close()
	ro, err := OpenReadOnly(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := ro.Unfinished(card1); err != nil || len(u) != 1 || !u[0].StepPending("update EF06 record 2 (name)") {
		t.Fatalf("read-only, version 1: %+v %v", u, err)
	}
	ro.Close()
	s := openTest(t, path)
	defer s.Close()
	e, existed, err := s.Begin(Entry{OpID: "old1", Kind: "personalize", CardID: card1, PayloadDigest: digest("a")})
	if err != nil || !existed || e.Resumes != 1 {
		t.Fatalf("resume a version 1 entry: %+v %v", e, err)
	}
}
