package journal_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"ssstation/station/journal"
)

// The fuzz targets use only the journal's exported API, plus bbolt to
// plant one entry; the file layout they rely on (a top-level "journal"
// bucket holding "ops") is the documented one of docs/journal.md.

const fuzzCard = "0123456789ABCDEF0123456789ABCDEF"

func fuzzClock() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

func fuzzEntry(op string) journal.Entry {
	sum := sha256.Sum256([]byte(op))
	return journal.Entry{OpID: op, Kind: journal.KindPersonalize, CardID: fuzzCard,
		Profile: "ss-v3-sm4", PayloadDigest: hex.EncodeToString(sum[:])}
}

// goodJournal writes a journal with two running entries, op1 and op2, and
// returns the file's bytes.
func goodJournal(tb testing.TB, dir string) []byte {
	tb.Helper()
	path := filepath.Join(dir, "good.db")
	s, err := journal.OpenWith(path, journal.Options{Now: fuzzClock})
	if err != nil {
		tb.Fatalf("open a new journal: %v", err)
	}
	for i, op := range []string{"op1", "op2"} {
		e, _, err := s.Begin(fuzzEntry(op))
		if err != nil {
			tb.Fatalf("Begin %s: %v", op, err)
		}
		if err := s.StepStarted(e.Attempt(), "select:SSSE", i, "select SSSE"); err != nil {
			tb.Fatalf("StepStarted: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// checkListed asserts what every listing promises: each entry either
// decoded (with an OpID Get finds again) or is marked damaged with its
// error, and a damaged entry's OpID is printable.
func checkListed(t *testing.T, s *journal.Store, list []*journal.Entry) {
	t.Helper()
	for _, e := range list {
		if e.Status == journal.StatusDamaged {
			if e.Error == "" {
				t.Fatalf("damaged entry %q without its error", e.OpID)
			}
			if len(e.OpID) > 128 || strings.ContainsFunc(e.OpID, func(r rune) bool { return r < 0x21 || r > 0x7E }) {
				t.Fatalf("damaged entry listed under an unprintable id %q", e.OpID)
			}
			continue
		}
		// A damaged inline bucket that bbolt copied out of the mapping can
		// list keys read from past its copy (bbolt does not bound inline
		// pages), which a lookup then misses: a listed entry is either
		// found under its id or reported missing, never mixed up.
		got, err := s.Get(e.OpID)
		if err != nil {
			if !errors.Is(err, journal.ErrNotFound) && !errors.Is(err, journal.ErrDamaged) {
				t.Fatalf("Get(%q) after List: %v", e.OpID, err)
			}
			continue
		}
		if got.OpID != e.OpID {
			t.Fatalf("Get(%q) after List found %q", e.OpID, got.OpID)
		}
	}
}

// FuzzOpenFile writes the fuzzed bytes as a journal file and opens it, read
// only and then for writing. A file that is not a sound journal must give
// an error wrapping ErrDamaged (issue 8 §4): never a panic, never a change
// to the file by the read-only open. A file that opens must list, and
// accept a new operation.
func FuzzOpenFile(f *testing.F) {
	good := goodJournal(f, f.TempDir())
	const ps = 4096
	f.Add(good)
	f.Add(good[:100])
	f.Add(good[:ps])
	f.Add(good[:len(good)/2])
	f.Add(bytes.Repeat([]byte("not a bbolt file\n"), 300))
	f.Add([]byte{})
	zeroMeta := bytes.Clone(good)
	clear(zeroMeta[:2*ps])
	f.Add(zeroMeta)

	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "journal.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		opt := journal.Options{Timeout: -1, Now: fuzzClock, Retention: -1}

		s, err := journal.OpenReadOnly(path, opt)
		if err != nil {
			if len(data) > 0 && !errors.Is(err, journal.ErrDamaged) {
				t.Fatalf("read-only open of a bad file: error does not wrap ErrDamaged: %v", err)
			}
		} else {
			list, lerr := s.List(0)
			if lerr != nil && !errors.Is(lerr, journal.ErrDamaged) {
				t.Fatalf("List on a file that opened: error does not wrap ErrDamaged: %v", lerr)
			}
			checkListed(t, s, list)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
			t.Fatal("the read-only open changed the file")
		}

		w, err := journal.OpenWith(path, opt)
		if err != nil {
			if len(data) > 0 && !errors.Is(err, journal.ErrDamaged) {
				t.Fatalf("open of a bad file: error does not wrap ErrDamaged: %v", err)
			}
			return
		}
		defer w.Close()
		list, err := w.List(0)
		if err != nil && !errors.Is(err, journal.ErrDamaged) {
			t.Fatalf("List on a file that opened for writing: error does not wrap ErrDamaged: %v", err)
		}
		checkListed(t, w, list)
		if _, _, err := w.Begin(fuzzEntry("fuzz-new")); err != nil && !errors.Is(err, journal.ErrDamaged) {
			t.Fatalf("Begin on a file that opened: %v", err)
		}
	})
}

// FuzzEntryDecode plants one fuzzed entry (key and stored value) next to
// two good ones. The journal must still open, list every entry (the bad
// one marked damaged, never hiding the others), find the good ones by id,
// and either decode the planted one under its own key or report it
// damaged.
func FuzzEntryDecode(f *testing.F) {
	good := goodJournal(f, f.TempDir())
	f.Add([]byte("op3"), []byte(`{"op_id":"op3","kind":"personalize","card_id":"`+fuzzCard+`","status":"running","created":"2026-01-02T03:04:05Z","updated":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte("op2"), []byte("{not json"))
	f.Add([]byte("op3"), []byte(`{"op_id":"other","status":"done"}`))
	f.Add([]byte("op3"), []byte(`{"op_id":"op3","status":""}`))
	f.Add([]byte("op3"), []byte(`{"op_id":"op3","status":"done","steps":[{"name":"x"}],"created":"0000-01-01T00:00:00+23:59"}`))
	f.Add([]byte("\x00\xff bad key"), []byte(`null`))
	f.Add([]byte("op3"), []byte(`{"op_id":"op3","status":"running"}{"trailing":1}`))

	f.Fuzz(func(t *testing.T, key, value []byte) {
		if len(key) == 0 || len(key) > bolt.MaxKeySize || string(key) == "op1" {
			return // bbolt refuses such keys; op1 stays the witness
		}
		path := filepath.Join(t.TempDir(), "journal.db")
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			j := tx.Bucket([]byte("journal"))
			if j == nil || j.Bucket([]byte("ops")) == nil {
				return errors.New(`no "journal"/"ops" bucket: the file layout changed, update this test`)
			}
			return j.Bucket([]byte("ops")).Put(key, value)
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		want := 3
		if string(key) == "op2" {
			want = 2
		}

		opt := journal.Options{Timeout: -1, Now: fuzzClock, Retention: -1}
		for _, open := range []func() (*journal.Store, error){
			func() (*journal.Store, error) { return journal.OpenReadOnly(path, opt) },
			func() (*journal.Store, error) { return journal.OpenWith(path, opt) },
		} {
			s, err := open()
			if err != nil {
				t.Fatalf("one bad entry stopped the journal from opening: %v", err)
			}
			list, err := s.List(0)
			if err != nil || len(list) != want {
				s.Close()
				t.Fatalf("List: %d entries, %v; want %d", len(list), err, want)
			}
			checkListed(t, s, list)
			if e, err := s.Get("op1"); err != nil || e.Status != journal.StatusRunning {
				s.Close()
				t.Fatalf("the good entry op1: %v", err)
			}
			if e, err := s.Get(string(key)); err == nil {
				if e.OpID != string(key) {
					s.Close()
					t.Fatalf("Get(%q) returned entry %q", key, e.OpID)
				}
			} else if !errors.Is(err, journal.ErrDamaged) {
				s.Close()
				t.Fatalf("Get of the planted entry: error does not wrap ErrDamaged: %v", err)
			}
			if _, err := s.ByCard(fuzzCard); err != nil {
				s.Close()
				t.Fatalf("ByCard: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
