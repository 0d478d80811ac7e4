package journal

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	card1 = "0123456789ABCDEF0123456789ABCDEF"
	card2 = "FEDCBA9876543210FEDCBA9876543210"
)

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// clock is a deterministic clock: each call is one second after the last.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2025, 3, 14, 12, 0, 59, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func openTest(t *testing.T, path string) *Store {
	t.Helper()
	s, err := OpenWith(path, Options{Timeout: 200 * time.Millisecond, Now: newClock().Now})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "journal.db")
	s := openTest(t, path)
	t.Cleanup(func() { s.Close() })
	return s, path
}

func req(op, kind, card, payload string) Entry {
	return Entry{OpID: op, Kind: kind, CardID: card, Reader: "ACS ACR39U ICC Reader 00 00",
		Profile: "ss-v3-sm4", PayloadDigest: digest(payload)}
}

func mustBegin(t *testing.T, s *Store, e Entry) *Entry {
	t.Helper()
	got, existed, err := s.Begin(e)
	if err != nil {
		t.Fatalf("Begin(%s): %v", e.OpID, err)
	}
	if existed {
		t.Fatalf("Begin(%s): existed on first Begin", e.OpID)
	}
	return got
}

func TestBeginNew(t *testing.T) {
	s, _ := newStore(t)
	e := mustBegin(t, s, req("op1", KindPersonalize, card1, "a"))
	if e.Status != StatusRunning || e.CardID != card1 || e.PayloadDigest != digest("a") || e.Created.IsZero() {
		t.Fatalf("new entry: %+v", e)
	}
	if got := e.StoppedAt(); got != "stopped before the first step" {
		t.Fatalf("StoppedAt = %q", got)
	}
	// Lower-case card id and upper-case digest are normalised.
	r := req("op2", KindLock, strings.ToLower(card1), "b")
	r.PayloadDigest = strings.ToUpper(r.PayloadDigest)
	e2 := mustBegin(t, s, r)
	if e2.CardID != card1 || e2.PayloadDigest != digest("b") {
		t.Fatalf("not normalised: %+v", e2)
	}
	// Empty OpID gets a random one.
	r = req("", KindBlock, card2, "c")
	e3 := mustBegin(t, s, r)
	if len(e3.OpID) != 32 {
		t.Fatalf("generated op id %q", e3.OpID)
	}
}

func TestBeginTwiceExisted(t *testing.T) {
	s, _ := newStore(t)
	r := req("op1", KindPersonalize, card1, "a")
	mustBegin(t, s, r)
	if err := s.StepStarted(at(t, s, "op1"), sid("select SSSE"), 1, "select SSSE"); err != nil {
		t.Fatal(err)
	}
	r.Reader = "other reader 01"
	e, existed, err := s.Begin(r)
	if err != nil || !existed {
		t.Fatalf("second Begin: existed=%v err=%v", existed, err)
	}
	if e.Status != StatusRunning || len(e.Steps) != 1 || e.Resumes != 1 || e.Reader != "other reader 01" {
		t.Fatalf("second Begin entry: %+v", e)
	}
}

func TestBeginMismatch(t *testing.T) {
	s, _ := newStore(t)
	base := req("op1", KindPersonalize, card1, "a")
	mustBegin(t, s, base)
	cases := []struct {
		name, field string
		mod         func(*Entry)
	}{
		{"card", "card id", func(e *Entry) { e.CardID = card2 }},
		{"digest", "payload digest", func(e *Entry) { e.PayloadDigest = digest("other request") }},
		{"kind", "kind", func(e *Entry) { e.Kind = KindLock }},
		{"profile", "profile", func(e *Entry) { e.Profile = "ss-v1-3des" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := base
			c.mod(&r)
			e, existed, err := s.Begin(r)
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("err = %v, want ErrMismatch", err)
			}
			if !existed || e != nil {
				t.Fatalf("existed=%v entry=%v", existed, e)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.field+" differs") {
				t.Fatalf("error does not name the field: %v", msg)
			}
			if strings.Contains(msg, digest("a")) || strings.Contains(msg, digest("other request")) {
				t.Fatalf("error prints a digest in full: %v", msg)
			}
		})
	}
	// The stored entry is untouched.
	e, err := s.Get("op1")
	if err != nil || e.Resumes != 0 || e.CardID != card1 {
		t.Fatalf("after mismatches: %+v, %v", e, err)
	}
}

func TestStoppedDuringAndAfter(t *testing.T) {
	s, _ := newStore(t)
	mustBegin(t, s, req("op1", KindPersonalize, card1, "a"))
	steps := []string{"select SSSE", "verify PIN", "update EF06 record 2"}
	for i, st := range steps[:2] {
		if err := s.StepStarted(at(t, s, "op1"), sid(st), i+1, st); err != nil {
			t.Fatal(err)
		}
		if err := s.StepFinished(at(t, s, "op1"), sid(st), "9000"); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := s.Get("op1")
	// Clock: Open 12:01:00 (retention), Begin 12:01:01, steps 12:01:02..12:01:05.
	if got, want := e.StoppedAt(), "stopped after step 2 (verify PIN), finished 12:01:05"; got != want {
		t.Fatalf("StoppedAt = %q, want %q", got, want)
	}
	if err := s.StepStarted(at(t, s, "op1"), sid(steps[2]), 3, steps[2]); err != nil {
		t.Fatal(err)
	}
	e, _ = s.Get("op1")
	if got, want := e.StoppedAt(), "stopped during step 3 (update EF06 record 2), started 12:01:06"; got != want {
		t.Fatalf("StoppedAt = %q, want %q", got, want)
	}
	last, ok := e.LastStep()
	if !ok || last.Name != steps[2] || last.State != StateStarted {
		t.Fatalf("LastStep = %+v %v", last, ok)
	}
	if !e.StepDone(sid("verify PIN")) || e.StepDone(sid(steps[2])) || e.StepDone("lock") {
		t.Fatalf("StepDone wrong: %+v", e.Steps)
	}
	if p := e.Pending(); len(p) != 1 || p[0].Name != steps[2] {
		t.Fatalf("Pending = %+v", p)
	}
}

func TestRedoStartedStep(t *testing.T) {
	s, _ := newStore(t)
	r := req("op1", KindPersonalize, card1, "a")
	mustBegin(t, s, r)
	must(t, s.StepStarted(at(t, s, "op1"), sid("select"), 1, "select"))
	must(t, s.StepFinished(at(t, s, "op1"), sid("select"), ""))
	must(t, s.StepStarted(at(t, s, "op1"), sid("update EF06 record 2"), 2, "update EF06 record 2"))
	must(t, s.Interrupt(at(t, s, "op1"), errors.New("card removed (SCARD_W_REMOVED_CARD)")))
	// A step may not be recorded while interrupted.
	if err := s.StepStarted(at(t, s, "op1"), sid("update EF06 record 2"), 2, "update EF06 record 2"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("step on interrupted: %v", err)
	}
	e, existed, err := s.Begin(r)
	if err != nil || !existed || e.Status != StatusRunning || e.Error != "" {
		t.Fatalf("resume: %+v %v %v", e, existed, err)
	}
	must(t, s.StepStarted(at(t, s, "op1"), sid("select"), 1, "select"))
	must(t, s.StepFinished(at(t, s, "op1"), sid("select"), ""))
	must(t, s.StepStarted(at(t, s, "op1"), sid("update EF06 record 2"), 2, "update EF06 record 2"))
	must(t, s.StepFinished(at(t, s, "op1"), sid("update EF06 record 2"), "written"))
	e, _ = s.Get("op1")
	if len(e.Steps) != 2 || e.Steps[0].Attempts != 2 || e.Steps[1].Attempts != 2 || !e.StepDone(sid("update EF06 record 2")) {
		t.Fatalf("steps after redo: %+v", e.Steps)
	}
	// Finishing something not started.
	if err := s.StepFinished(at(t, s, "op1"), sid("lock"), ""); !errors.Is(err, ErrSequence) {
		t.Fatalf("finish never started: %v", err)
	}
	if err := s.StepFinished(at(t, s, "op1"), sid("select"), ""); !errors.Is(err, ErrSequence) {
		t.Fatalf("finish twice: %v", err)
	}
}

func TestInterruptThenUnfinished(t *testing.T) {
	s, _ := newStore(t)
	mustBegin(t, s, req("op1", KindPersonalize, card1, "a"))
	mustBegin(t, s, req("op2", KindActivate, card1, "b"))
	mustBegin(t, s, req("op3", KindLock, card1, "c"))
	must(t, s.StepStarted(at(t, s, "op1"), sid("select"), 1, "select"))
	must(t, s.Interrupt(at(t, s, "op1"), errors.New("card pulled")))
	must(t, s.Finish(at(t, s, "op3"), StatusDone, nil))

	u, err := s.Unfinished(card1)
	if err != nil {
		t.Fatal(err)
	}
	if len(u) != 2 || u[0].OpID != "op1" || u[1].OpID != "op2" {
		t.Fatalf("Unfinished = %v", opIDs(u))
	}
	if u[0].Status != StatusInterrupted || u[0].Error != "card pulled" {
		t.Fatalf("interrupted entry: %+v", u[0])
	}
	// Lower case finds it too.
	if u, _ := s.Unfinished(strings.ToLower(card1)); len(u) != 2 {
		t.Fatalf("lower-case Unfinished = %v", opIDs(u))
	}
	all, _ := s.ByCard(card1)
	if len(all) != 3 {
		t.Fatalf("ByCard = %v", opIDs(all))
	}
}

func TestUnfinishedOtherCardEmpty(t *testing.T) {
	s, _ := newStore(t)
	mustBegin(t, s, req("op1", KindPersonalize, card1, "a"))
	must(t, s.Interrupt(at(t, s, "op1"), errors.New("reader lost")))
	u, err := s.Unfinished(card2)
	if err != nil || len(u) != 0 {
		t.Fatalf("Unfinished(other card) = %v, %v", opIDs(u), err)
	}
	// A card id sharing a prefix must not match either.
	if _, err := s.Unfinished(card1[:30]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short card id: %v", err)
	}
}

func TestFinishThenStepStarted(t *testing.T) {
	s, _ := newStore(t)
	r := req("op1", KindPersonalize, card1, "a")
	mustBegin(t, s, r)
	must(t, s.StepStarted(at(t, s, "op1"), sid("select"), 1, "select"))
	// Done with a step left started is refused.
	if err := s.Finish(at(t, s, "op1"), StatusDone, nil); !errors.Is(err, ErrSequence) {
		t.Fatalf("done with pending step: %v", err)
	}
	must(t, s.StepFinished(at(t, s, "op1"), sid("select"), ""))
	must(t, s.Finish(at(t, s, "op1"), StatusDone, nil))
	if err := s.StepStarted(at(t, s, "op1"), sid("lock"), 2, "lock"); !errors.Is(err, ErrFinished) {
		t.Fatalf("StepStarted on done: %v", err)
	}
	if err := s.StepFinished(at(t, s, "op1"), sid("select"), ""); !errors.Is(err, ErrFinished) {
		t.Fatalf("StepFinished on done: %v", err)
	}
	if err := s.Interrupt(at(t, s, "op1"), nil); !errors.Is(err, ErrFinished) {
		t.Fatalf("Interrupt on done: %v", err)
	}
	if err := s.Finish(at(t, s, "op1"), StatusFailed, nil); !errors.Is(err, ErrFinished) {
		t.Fatalf("Finish on done: %v", err)
	}
	e, existed, err := s.Begin(r)
	if !errors.Is(err, ErrFinished) || !existed || e == nil || e.Status != StatusDone {
		t.Fatalf("Begin on done: %+v %v %v", e, existed, err)
	}
	if got := e.StoppedAt(); !strings.HasPrefix(got, "done after step 1 (select)") {
		t.Fatalf("StoppedAt on done = %q", got)
	}
	// Failed is final too.
	mustBegin(t, s, req("op2", KindLock, card1, "b"))
	must(t, s.Finish(at(t, s, "op2"), StatusFailed, errors.New("6982 security status not satisfied")))
	if err := s.StepStarted(at(t, s, "op2"), sid("lock"), 1, "lock"); !errors.Is(err, ErrFinished) {
		t.Fatalf("StepStarted on failed: %v", err)
	}
	if err := s.Finish(at(t, s, "op2"), StatusAbandoned, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Finish(abandoned): %v", err)
	}
}

func TestAbandon(t *testing.T) {
	s, _ := newStore(t)
	mustBegin(t, s, req("op1", KindBlock, card1, "a"))
	must(t, s.Interrupt(at(t, s, "op1"), errors.New("card pulled")))
	if err := s.Abandon("op1", ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("abandon without note: %v", err)
	}
	must(t, s.Abandon("op1", "card destroyed, re-issued"))
	e, _ := s.Get("op1")
	if e.Status != StatusAbandoned || e.Note != "card destroyed, re-issued" {
		t.Fatalf("abandoned: %+v", e)
	}
	if u, _ := s.Unfinished(card1); len(u) != 0 {
		t.Fatalf("abandoned still unfinished: %v", opIDs(u))
	}
	if err := s.StepStarted(at(t, s, "op1"), sid("x"), 1, "x"); !errors.Is(err, ErrFinished) {
		t.Fatalf("step on abandoned: %v", err)
	}
	if err := s.Abandon("op1", "again"); !errors.Is(err, ErrFinished) {
		t.Fatalf("abandon twice: %v", err)
	}
}

func TestIDNumberRefused(t *testing.T) {
	s, _ := newStore(t)
	const id = "11010519491231002X"
	for _, c := range []struct {
		name string
		mod  func(*Entry)
	}{
		{"reader", func(e *Entry) { e.Reader = "reader " + id }},
		{"note", func(e *Entry) { e.Note = "holder " + id }},
		{"error", func(e *Entry) { e.Error = "bad " + id }},
		{"profile", func(e *Entry) { e.Profile = "110105194912310021" }},
		{"op id", func(e *Entry) { e.OpID = "op-" + id }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := req("op1", KindPersonalize, card1, "a")
			c.mod(&r)
			if _, _, err := s.Begin(r); !errors.Is(err, ErrSensitive) {
				t.Fatalf("Begin with ID number in %s: %v", c.name, err)
			}
		})
	}
	if _, err := s.Get("op1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused entry was stored: %v", err)
	}
	mustBegin(t, s, req("op1", KindPersonalize, card1, "a"))
	must(t, s.StepStarted(at(t, s, "op1"), sid("write EF05"), 1, "write EF05"))
	if err := s.StepFinished(at(t, s, "op1"), sid("write EF05"), "wrote "+id); !errors.Is(err, ErrSensitive) {
		t.Fatalf("detail with ID number: %v", err)
	}
	if err := s.StepStarted(at(t, s, "op1"), sid("write "+id), 2, "write "+id); !errors.Is(err, ErrSensitive) {
		t.Fatalf("step name with ID number: %v", err)
	}
	if err := s.Abandon("op1", id); !errors.Is(err, ErrSensitive) {
		t.Fatalf("abandon note with ID number: %v", err)
	}
	// An error text is redacted, not refused: the interruption must be kept.
	must(t, s.Interrupt(at(t, s, "op1"), fmt.Errorf("write %s: card removed", id)))
	e, _ := s.Get("op1")
	if strings.Contains(e.Error, id) || e.Error != "write [ID number removed]: card removed" || e.Status != StatusInterrupted {
		t.Fatalf("error text: %q (%s)", e.Error, e.Status)
	}
	raw, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), id) || strings.Contains(string(raw), id[:17]) {
		t.Fatal("ID number reached the journal file")
	}
}

func TestLooksLikeIDNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"11010519491231002X":       true,
		"11010519491231002x":       true,
		"110105194912310021":       true,
		"id=110105194912310021;":   true,
		"a11010519491231002Xb":     true,
		"1101051949123100211":      false, // 19 digits
		"11010519491231002":        false, // 17 digits
		"1101051949123100":         false,
		"110105 19491231 002X":     false, // separators: not caught (documented)
		"0123456789ABCDEF01234567": false,
		"":                         false,
	} {
		if got := LooksLikeIDNumber(s); got != want {
			t.Errorf("LooksLikeIDNumber(%q) = %v, want %v", s, got, want)
		}
	}
	for i := 0; i < 2000; i++ {
		if id := NewOpID(); LooksLikeIDNumber(id) || len(id) != 32 {
			t.Fatalf("NewOpID gave %q", id)
		}
	}
}

func TestInvalidFields(t *testing.T) {
	s, _ := newStore(t)
	for name, mod := range map[string]func(*Entry){
		"card short":   func(e *Entry) { e.CardID = card1[:30] },
		"card not hex": func(e *Entry) { e.CardID = strings.Repeat("G", 32) },
		"digest":       func(e *Entry) { e.PayloadDigest = "abc" },
		"no digest":    func(e *Entry) { e.PayloadDigest = "" },
		"kind":         func(e *Entry) { e.Kind = "" },
		"kind upper":   func(e *Entry) { e.Kind = "Lock" },
		"op id nul":    func(e *Entry) { e.OpID = "op\x00x" },
		"reader ctl":   func(e *Entry) { e.Reader = "r\x1b[2J" },
	} {
		r := req("op1", KindLock, card1, "a")
		mod(&r)
		if _, _, err := s.Begin(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if err := s.StepStarted(at(t, s, "nope"), sid("x"), 1, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("StepStarted unknown op: %v", err)
	}
	if _, err := s.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get unknown op: %v", err)
	}
}

func TestReopenKeepsEntries(t *testing.T) {
	s, path := newStore(t)
	mustBegin(t, s, req("op1", KindPersonalize, card1, "a"))
	must(t, s.StepStarted(at(t, s, "op1"), sid("select"), 1, "select"))
	must(t, s.StepFinished(at(t, s, "op1"), sid("select"), "9000"))
	must(t, s.StepStarted(at(t, s, "op1"), sid("update EF06 record 2"), 2, "update EF06 record 2"))
	before, _ := s.Get("op1")
	// "Crash": close without Finish or Interrupt.
	must(t, s.Close())

	s2 := openTest(t, path)
	defer s2.Close()
	e, err := s2.Get("op1")
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != StatusRunning || len(e.Steps) != 2 || !e.StepDone("select") || e.Steps[1].State != StateStarted {
		t.Fatalf("after reopen: %+v", e)
	}
	if e.StoppedAt() != before.StoppedAt() || !e.Created.Equal(before.Created) {
		t.Fatalf("after reopen: %q vs %q", e.StoppedAt(), before.StoppedAt())
	}
	u, _ := s2.Unfinished(card1)
	if len(u) != 1 || u[0].OpID != "op1" {
		t.Fatalf("Unfinished after reopen = %v", opIDs(u))
	}
}

// TestCrashDurability runs a child process that records steps and then
// exits without closing the journal (os.Exit: no deferred Close, no
// Finish). What was committed must be there afterwards.
func TestCrashDurability(t *testing.T) {
	if os.Getenv("JOURNAL_CRASH_CHILD") != "" {
		t.Skip("child")
	}
	path := filepath.Join(t.TempDir(), "journal.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "JOURNAL_CRASH_CHILD="+path)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("child: %v\n%s", err, out)
	}
	s := openTest(t, path)
	defer s.Close()
	e, err := s.Get("crash1")
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != StatusRunning || e.StoppedAt() != "stopped during step 2 (update EF06 record 2), started 12:01:04" {
		t.Fatalf("after crash: %s %q", e.Status, e.StoppedAt())
	}
}

func TestCrashChild(t *testing.T) {
	path := os.Getenv("JOURNAL_CRASH_CHILD")
	if path == "" {
		t.Skip("helper for TestCrashDurability")
	}
	s := openTest(t, path)
	if _, _, err := s.Begin(req("crash1", KindPersonalize, card1, "a")); err != nil {
		t.Fatal(err)
	}
	must(t, s.StepStarted(at(t, s, "crash1"), sid("select"), 1, "select"))
	must(t, s.StepFinished(at(t, s, "crash1"), sid("select"), ""))
	must(t, s.StepStarted(at(t, s, "crash1"), sid("update EF06 record 2"), 2, "update EF06 record 2"))
	os.Exit(3)
}

func TestFileModes(t *testing.T) {
	_, path := newStore(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v, want 0700", di.Mode().Perm())
	}
}

func TestWideModeNarrowed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	s := openTest(t, path)
	must(t, s.Close())
	must(t, os.Chmod(path, 0o644))
	s = openTest(t, path)
	defer s.Close()
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v after reopen, want 0600", fi.Mode().Perm())
	}
}

func TestSecondOpenLocked(t *testing.T) {
	_, path := newStore(t)
	start := time.Now()
	s2, err := OpenWith(path, Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "journal locked by another process") {
		t.Fatalf("second Open: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second Open took %v", d)
	}
}

func TestList(t *testing.T) {
	s, _ := newStore(t)
	for i := 1; i <= 4; i++ {
		mustBegin(t, s, req(fmt.Sprintf("op%d", i), KindActivate, card1, fmt.Sprint(i)))
	}
	l, err := s.List(0)
	if err != nil || strings.Join(opIDs(l), ",") != "op4,op3,op2,op1" {
		t.Fatalf("List(0) = %v, %v", opIDs(l), err)
	}
	l, _ = s.List(2)
	if strings.Join(opIDs(l), ",") != "op4,op3" {
		t.Fatalf("List(2) = %v", opIDs(l))
	}
}

func TestConcurrent(t *testing.T) {
	s, _ := newStore(t)
	var wg sync.WaitGroup
	const n = 8
	errs := make(chan error, n)
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			op := fmt.Sprintf("op%d", g)
			card := fmt.Sprintf("%032X", g)
			if _, _, err := s.Begin(req(op, KindPersonalize, card, op)); err != nil {
				errs <- err
				return
			}
			for i := 1; i <= 5; i++ {
				name := fmt.Sprintf("step %d", i)
				if err := s.StepStarted(at(t, s, op), sid(name), i, name); err != nil {
					errs <- err
					return
				}
				if err := s.StepFinished(at(t, s, op), sid(name), ""); err != nil {
					errs <- err
					return
				}
			}
			errs <- s.Finish(at(t, s, op), StatusDone, nil)
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	l, _ := s.List(0)
	if len(l) != n {
		t.Fatalf("%d entries", len(l))
	}
	for _, e := range l {
		if e.Status != StatusDone || len(e.Steps) != 5 {
			t.Fatalf("entry %s: %s, %d steps", e.OpID, e.Status, len(e.Steps))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func opIDs(es []*Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.OpID)
	}
	return out
}

// at is the current attempt of op: the test acts as the live worker.
func at(t testing.TB, s *Store, op string) Attempt {
	if e, err := s.Get(op); err == nil {
		return e.Attempt()
	}
	return Attempt{OpID: op}
}

// sid makes a step id from a display name.
func sid(name string) string { return strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(name) }
