// Package journal is the station's durable journal of multi-step card
// operations (personalize, lock, activate, block). Every step is recorded
// in a bbolt file before it runs and again after it has run, each record
// in its own committed (fsync'd) transaction, so that a card pulled out of
// the reader — or a station that crashes — leaves an entry saying exactly
// where the operation stopped. Re-inserting the same card, recognised by
// its 16-byte card identification code and not by the reader it sits in,
// finds the unfinished entry with Unfinished and resumes it with Begin.
//
// The journal never stores the holder's data. A caller identifies the
// request by PayloadDigest, the hex SHA-256 of its canonical encoding, and
// a resume must present a request with the same digest. PINs, keys and ID
// numbers are never given to the journal; as a cheap guard against a
// mistake, free-text fields that contain something shaped like an
// 18-character citizen ID number are refused (see LooksLikeIDNumber).
//
// See docs/journal.md for what is stored and how resume works.
package journal

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Status is the state of an operation.
type Status string

// The statuses. Running and Interrupted are unfinished; Done, Failed and
// Abandoned are final.
const (
	StatusRunning     Status = "running"
	StatusInterrupted Status = "interrupted"
	StatusDone        Status = "done"
	StatusFailed      Status = "failed"
	StatusAbandoned   Status = "abandoned"
)

// Final reports whether the status is final (done, failed or abandoned):
// no step may be recorded on such an entry.
func (s Status) Final() bool {
	return s == StatusDone || s == StatusFailed || s == StatusAbandoned
}

// Unfinished reports whether the status is running or interrupted.
func (s Status) Unfinished() bool {
	return s == StatusRunning || s == StatusInterrupted
}

// StepState is the state of one step.
type StepState string

// The step states.
const (
	StateStarted StepState = "started"
	StateDone    StepState = "done"
)

// Operation kinds used by the station. Kind is not restricted to these.
const (
	KindPersonalize = "personalize"
	KindLock        = "lock"
	KindActivate    = "activate"
	KindBlock       = "block"
)

// Step is the record of one step of an operation. The journal keeps one
// record per step name: starting a step again (after a resume) resets its
// record to started, counts the attempt and moves it to the end of
// Entry.Steps, so the last element is always the step started last.
type Step struct {
	Name     string    `json:"name"`
	Index    int       `json:"index"`
	State    StepState `json:"state"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	// Attempts counts how many times the step was started (1 for a step
	// that ran once).
	Attempts int `json:"attempts"`
}

// Entry is one operation on one card.
type Entry struct {
	// OpID identifies the operation (letters, digits and ._:- only, at
	// most 64 characters). Begin chooses a random one when it is empty.
	OpID string `json:"op_id"`
	// Kind is the operation: personalize, lock, activate, block, ...
	Kind string `json:"kind"`
	// CardID is the card identification code: 16 bytes as 32 upper-case
	// hex characters (lower case is accepted and upper-cased).
	CardID string `json:"card_id"`
	// Reader is the PC/SC reader the operation last ran in. It is
	// informational: a card is matched by CardID, never by reader.
	Reader string `json:"reader,omitempty"`
	// Profile is the firmware profile the card was recognised as.
	Profile string `json:"profile,omitempty"`
	// PayloadDigest is the hex SHA-256 (64 characters, stored lower case)
	// of the caller's canonical request. The request itself is never
	// stored.
	PayloadDigest string `json:"payload_digest"`

	Status Status `json:"status"`
	Steps  []Step `json:"steps,omitempty"`
	// Error is the text of the error that interrupted or failed the
	// operation.
	Error string `json:"error,omitempty"`
	// Note is a technician's note (Abandon) or the caller's.
	Note string `json:"note,omitempty"`
	// Resumes counts how many times Begin took the entry up again.
	Resumes int `json:"resumes,omitempty"`

	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// LastStep returns the step started last, or false if no step was recorded.
func (e *Entry) LastStep() (Step, bool) {
	if e == nil || len(e.Steps) == 0 {
		return Step{}, false
	}
	return e.Steps[len(e.Steps)-1], true
}

// StepDone reports whether a step with that name has finished (and was not
// started again since).
func (e *Entry) StepDone(name string) bool {
	if e == nil {
		return false
	}
	for _, st := range e.Steps {
		if st.Name == name {
			return st.State == StateDone
		}
	}
	return false
}

// Step returns the record of the step with that name.
func (e *Entry) Step(name string) (Step, bool) {
	if e != nil {
		for _, st := range e.Steps {
			if st.Name == name {
				return st, true
			}
		}
	}
	return Step{}, false
}

// Pending returns the steps that were started and not finished, in the
// order they were started. After an interruption these are the steps that
// must be redone.
func (e *Entry) Pending() []Step {
	if e == nil {
		return nil
	}
	var out []Step
	for _, st := range e.Steps {
		if st.State != StateDone {
			out = append(out, st)
		}
	}
	return out
}

// StoppedAt describes in words where the operation stopped, for example
// "stopped during step 3 (update EF06 record 2), started 12:01:02" or
// "stopped after step 5 (read back), finished 12:01:09". Times are printed
// in the zone the journal's clock gave them.
func (e *Entry) StoppedAt() string {
	st, ok := e.LastStep()
	if !ok {
		if e != nil && e.Status == StatusDone {
			return "done, no step recorded"
		}
		return "stopped before the first step"
	}
	verb := "stopped"
	if e.Status == StatusDone {
		verb = "done"
	}
	if st.State == StateDone {
		return fmt.Sprintf("%s after step %d (%s), finished %s", verb, st.Index, st.Name, st.Finished.Format("15:04:05"))
	}
	return fmt.Sprintf("%s during step %d (%s), started %s", verb, st.Index, st.Name, st.Started.Format("15:04:05"))
}

// Errors. Errors returned by the Store wrap one of these (or a bbolt or
// file system error); test with errors.Is.
var (
	// ErrNotFound: no entry with that OpID.
	ErrNotFound = errors.New("journal: operation not found")
	// ErrMismatch: Begin found an entry with that OpID whose Kind, CardID,
	// PayloadDigest or Profile differs from the request; or a step was
	// recorded with another index than before.
	ErrMismatch = errors.New("journal: entry does not match the request")
	// ErrFinished: the entry is done, failed or abandoned; no step,
	// interruption or status may be recorded on it.
	ErrFinished = errors.New("journal: operation already finished")
	// ErrNotRunning: a step was recorded on an interrupted entry; Begin it
	// again first.
	ErrNotRunning = errors.New("journal: operation is not running (Begin it again to resume)")
	// ErrSequence: a step was finished that was not started, or an entry
	// was marked done while a step was still started.
	ErrSequence = errors.New("journal: step out of sequence")
	// ErrInvalid: a field is malformed.
	ErrInvalid = errors.New("journal: invalid field")
	// ErrSensitive: a free-text field looks like it holds a citizen ID
	// number.
	ErrSensitive = errors.New("journal: field looks like a citizen ID number")
	// ErrLocked: another process (or another Store in this process) holds
	// the journal file.
	ErrLocked = errors.New("journal locked by another process")
)

// DefaultTimeout is how long Open waits for the file lock.
const DefaultTimeout = 2 * time.Second

// Limits on field lengths (in bytes). Longer error texts are truncated,
// other fields refused.
const (
	maxOpID   = 64
	maxKind   = 32
	maxShort  = 256 // Reader, Profile, step name
	maxText   = 2048
	formatVer = "1"
)

var (
	bucketOps    = []byte("ops")
	bucketByCard = []byte("by-card")
	bucketMeta   = []byte("meta")
	keyVersion   = []byte("version")
)

// Store is an open journal. It is safe for concurrent use: bbolt
// serialises the writing transactions.
type Store struct {
	// Now is the journal's clock (time.Now when nil). Set it before use.
	Now func() time.Time

	db   *bolt.DB
	path string
}

// Options tune OpenWith.
type Options struct {
	// Timeout is how long to wait for the file lock (DefaultTimeout when
	// zero). A negative Timeout fails at once when the file is locked.
	Timeout time.Duration
}

// Open opens or creates the journal at path with the default options.
func Open(path string) (*Store, error) { return OpenWith(path, Options{}) }

// OpenWith opens or creates the journal at path. The parent directory is
// created with mode 0700 and the file with mode 0600 (an existing file with
// wider permissions is narrowed to 0600). When another process holds the
// file, OpenWith waits opt.Timeout and returns an error wrapping ErrLocked.
func OpenWith(path string, opt Options) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty journal path", ErrInvalid)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal: create directory: %w", err)
	}
	timeout := opt.Timeout
	switch {
	case timeout == 0:
		timeout = DefaultTimeout
	case timeout < 0:
		timeout = time.Nanosecond
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("journal %s: %w (waited %s for the file lock)", path, ErrLocked, timeout)
		}
		return nil, fmt.Errorf("journal %s: open: %w", path, err)
	}
	fail := func(err error) (*Store, error) {
		db.Close()
		return nil, err
	}
	if fi, err := os.Stat(path); err != nil {
		return fail(fmt.Errorf("journal %s: %w", path, err))
	} else if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fail(fmt.Errorf("journal %s: narrow permissions to 0600: %w", path, err))
		}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keyVersion); {
		case v == nil:
			if err := meta.Put(keyVersion, []byte(formatVer)); err != nil {
				return err
			}
		case string(v) != formatVer:
			return fmt.Errorf("journal format version %q, this station reads %q", v, formatVer)
		}
		if _, err := tx.CreateBucketIfNotExists(bucketOps); err != nil {
			return err
		}
		_, err = tx.CreateBucketIfNotExists(bucketByCard)
		return err
	})
	if err != nil {
		return fail(fmt.Errorf("journal %s: %w", path, err))
	}
	return &Store{db: db, path: path}, nil
}

// Path returns the journal file's path.
func (s *Store) Path() string { return s.path }

// Close closes the journal. Entries not finished stay as they are (running
// or interrupted) and are found again after the next Open.
func (s *Store) Close() error { return s.db.Close() }

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Begin starts an operation. If no entry has e.OpID (a random OpID is
// chosen when it is empty) a new running entry is stored and returned with
// existed=false. Otherwise the stored entry is returned with existed=true
// after checking that Kind, CardID, PayloadDigest (and Profile, when both
// are set) match the request: a difference is an error wrapping
// ErrMismatch that names the field. Resuming a running or interrupted entry
// sets it running, clears its Error, counts the resume and records the new
// Reader. An entry that is done, failed or abandoned is returned with an
// error wrapping ErrFinished: nothing is left to do (or allowed) under that
// OpID.
//
// Begin refuses (ErrSensitive) any free-text field that looks like a
// citizen ID number, and malformed fields (ErrInvalid). Only OpID, Kind,
// CardID, Reader, Profile, PayloadDigest and Note are taken from e.
func (s *Store) Begin(e Entry) (*Entry, bool, error) {
	req, err := normalize(e)
	if err != nil {
		return nil, false, err
	}
	var out *Entry
	existed := false
	err = s.db.Update(func(tx *bolt.Tx) error {
		ops := tx.Bucket(bucketOps)
		cur, err := getEntry(ops, req.OpID)
		if errors.Is(err, ErrNotFound) {
			now := s.now()
			ne := &Entry{
				OpID: req.OpID, Kind: req.Kind, CardID: req.CardID,
				Reader: req.Reader, Profile: req.Profile,
				PayloadDigest: req.PayloadDigest, Note: req.Note,
				Status: StatusRunning, Created: now, Updated: now,
			}
			if err := putEntry(tx, ne); err != nil {
				return err
			}
			out = ne
			return nil
		}
		if err != nil {
			return err
		}
		existed = true
		if err := matches(cur, req); err != nil {
			return err
		}
		if cur.Status.Final() {
			out = cur
			return fmt.Errorf("operation %s is %s: %w", cur.OpID, cur.Status, ErrFinished)
		}
		cur.Status = StatusRunning
		cur.Error = ""
		cur.Resumes++
		if req.Reader != "" {
			cur.Reader = req.Reader
		}
		if cur.Profile == "" {
			cur.Profile = req.Profile
		}
		if req.Note != "" {
			cur.Note = req.Note
		}
		cur.Updated = s.now()
		if err := putEntry(tx, cur); err != nil {
			return err
		}
		out = cur
		return nil
	})
	if err != nil {
		var ret *Entry
		if errors.Is(err, ErrFinished) {
			ret = out
		}
		return ret, existed, err
	}
	return out, existed, nil
}

func matches(cur *Entry, req Entry) error {
	mismatch := func(field, have, want string) error {
		return fmt.Errorf("operation %s: %s differs (journal %s, request %s): %w",
			cur.OpID, field, abbrev(have), abbrev(want), ErrMismatch)
	}
	switch {
	case cur.Kind != req.Kind:
		return fmt.Errorf("operation %s: kind differs (journal %q, request %q): %w", cur.OpID, cur.Kind, req.Kind, ErrMismatch)
	case cur.CardID != req.CardID:
		return mismatch("card id", cur.CardID, req.CardID)
	case cur.PayloadDigest != req.PayloadDigest:
		return mismatch("payload digest", cur.PayloadDigest, req.PayloadDigest)
	case cur.Profile != "" && req.Profile != "" && cur.Profile != req.Profile:
		return fmt.Errorf("operation %s: profile differs (journal %q, request %q): %w", cur.OpID, cur.Profile, req.Profile, ErrMismatch)
	}
	return nil
}

// abbrev shows the first 8 characters of a hex value.
func abbrev(h string) string {
	if len(h) <= 8 {
		return h
	}
	return h[:8] + "…"
}

// StepStarted records that a step is about to run. Call it BEFORE sending
// the step's first command to the card; it returns once the record is
// committed to disk. Starting a step that has a record already (a redo
// after a resume) resets that record to started. A step name keeps the
// index it was first recorded with, and an index its name (ErrMismatch).
// The entry must be running: ErrNotRunning when interrupted (Begin again),
// ErrFinished when done, failed or abandoned.
func (s *Store) StepStarted(opID, step string, index int) error {
	if err := checkStep(step, index); err != nil {
		return err
	}
	return s.update(opID, func(e *Entry, now time.Time) error {
		if err := mustRun(e); err != nil {
			return err
		}
		pos := -1
		for i, st := range e.Steps {
			switch {
			case st.Name == step && st.Index != index:
				return fmt.Errorf("operation %s: step %q was recorded as step %d, now %d: %w", e.OpID, step, st.Index, index, ErrMismatch)
			case st.Name != step && st.Index == index:
				return fmt.Errorf("operation %s: step %d was recorded as %q, now %q: %w", e.OpID, index, st.Name, step, ErrMismatch)
			case st.Name == step:
				pos = i
			}
		}
		rec := Step{Name: step, Index: index, State: StateStarted, Started: now, Attempts: 1}
		if pos >= 0 {
			rec.Attempts = e.Steps[pos].Attempts + 1
			e.Steps = append(e.Steps[:pos], e.Steps[pos+1:]...)
		}
		e.Steps = append(e.Steps, rec)
		return nil
	})
}

// StepFinished records that a step has run to the end. Call it AFTER the
// card confirmed the step. The step must have been started (and not
// finished since): ErrSequence otherwise. detail is a short free text
// (never card data, PINs, keys or ID numbers: ErrSensitive).
func (s *Store) StepFinished(opID, step string, index int, detail string) error {
	if err := checkStep(step, index); err != nil {
		return err
	}
	if err := checkText("detail", detail, maxText); err != nil {
		return err
	}
	return s.update(opID, func(e *Entry, now time.Time) error {
		if err := mustRun(e); err != nil {
			return err
		}
		for i := range e.Steps {
			st := &e.Steps[i]
			if st.Name != step {
				continue
			}
			if st.Index != index {
				return fmt.Errorf("operation %s: step %q was recorded as step %d, now %d: %w", e.OpID, step, st.Index, index, ErrMismatch)
			}
			if st.State != StateStarted {
				return fmt.Errorf("operation %s: step %d (%s) is %s, not started: %w", e.OpID, index, step, st.State, ErrSequence)
			}
			st.State = StateDone
			st.Finished = now
			st.Detail = detail
			return nil
		}
		return fmt.Errorf("operation %s: step %d (%s) finished but never started: %w", e.OpID, index, step, ErrSequence)
	})
}

// Interrupt records that the operation stopped before its end because the
// card was pulled or the reader lost: the entry becomes interrupted and
// keeps err's text. Steps are left as they are, so the entry says where it
// stopped. Interrupting an interrupted entry replaces the error text.
// Any part of the text that looks like a citizen ID number is replaced by
// "[ID number removed]" rather than refused, so that the interruption
// itself is always recorded.
func (s *Store) Interrupt(opID string, err error) error {
	text := errText(err)
	return s.update(opID, func(e *Entry, now time.Time) error {
		if e.Status.Final() {
			return fmt.Errorf("operation %s is %s: %w", e.OpID, e.Status, ErrFinished)
		}
		e.Status = StatusInterrupted
		e.Error = text
		return nil
	})
}

// Finish records the end of an operation: status is StatusDone or
// StatusFailed. Done requires that no step is left started (ErrSequence).
// err's text is kept as in Interrupt. Finishing a final entry is
// ErrFinished.
func (s *Store) Finish(opID string, status Status, err error) error {
	if status != StatusDone && status != StatusFailed {
		return fmt.Errorf("%w: Finish with status %q (want done or failed)", ErrInvalid, status)
	}
	text := errText(err)
	return s.update(opID, func(e *Entry, now time.Time) error {
		if e.Status.Final() {
			return fmt.Errorf("operation %s is %s: %w", e.OpID, e.Status, ErrFinished)
		}
		if status == StatusDone {
			if p := e.Pending(); len(p) > 0 {
				return fmt.Errorf("operation %s: cannot be done, step %d (%s) started and not finished: %w", e.OpID, p[0].Index, p[0].Name, ErrSequence)
			}
		}
		e.Status = status
		e.Error = text
		return nil
	})
}

// Abandon records that a technician gave up on an unfinished operation;
// note (required) says why. Abandoning a final entry is ErrFinished.
func (s *Store) Abandon(opID, note string) error {
	if strings.TrimSpace(note) == "" {
		return fmt.Errorf("%w: Abandon needs a note", ErrInvalid)
	}
	if err := checkText("note", note, maxText); err != nil {
		return err
	}
	return s.update(opID, func(e *Entry, now time.Time) error {
		if e.Status.Final() {
			return fmt.Errorf("operation %s is %s: %w", e.OpID, e.Status, ErrFinished)
		}
		e.Status = StatusAbandoned
		e.Note = note
		return nil
	})
}

// Get returns the entry with that OpID, or ErrNotFound.
func (s *Store) Get(opID string) (*Entry, error) {
	var out *Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = getEntry(tx.Bucket(bucketOps), opID)
		return err
	})
	return out, err
}

// Unfinished returns the running and interrupted entries for the card,
// oldest first. cardID is the card identification code (32 hex chars).
func (s *Store) Unfinished(cardID string) ([]*Entry, error) {
	all, err := s.ByCard(cardID)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, e := range all {
		if e.Status.Unfinished() {
			out = append(out, e)
		}
	}
	return out, nil
}

// ByCard returns every entry for the card, whatever its status, oldest
// first.
func (s *Store) ByCard(cardID string) ([]*Entry, error) {
	id, err := normCardID(cardID)
	if err != nil {
		return nil, err
	}
	prefix := []byte(id + "\x00")
	var out []*Entry
	err = s.db.View(func(tx *bolt.Tx) error {
		ops := tx.Bucket(bucketOps)
		c := tx.Bucket(bucketByCard).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			e, err := getEntry(ops, string(k[len(prefix):]))
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].OpID < out[j].OpID
	})
	return out, nil
}

// List returns up to limit entries (all when limit <= 0), newest first by
// creation time.
func (s *Store) List(limit int) ([]*Entry, error) {
	var out []*Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOps).ForEach(func(k, v []byte) error {
			e, err := decode(k, v)
			if err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].OpID > out[j].OpID
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// update runs fn on the entry in one writing transaction and stores it
// with Updated set, unless fn fails.
func (s *Store) update(opID string, fn func(e *Entry, now time.Time) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		e, err := getEntry(tx.Bucket(bucketOps), opID)
		if err != nil {
			return err
		}
		now := s.now()
		if err := fn(e, now); err != nil {
			return err
		}
		e.Updated = now
		return putEntry(tx, e)
	})
}

func mustRun(e *Entry) error {
	switch {
	case e.Status.Final():
		return fmt.Errorf("operation %s is %s: %w", e.OpID, e.Status, ErrFinished)
	case e.Status != StatusRunning:
		return fmt.Errorf("operation %s is %s: %w", e.OpID, e.Status, ErrNotRunning)
	}
	return nil
}

func getEntry(ops *bolt.Bucket, opID string) (*Entry, error) {
	v := ops.Get([]byte(opID))
	if v == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, opID)
	}
	return decode([]byte(opID), v)
}

func decode(k, v []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("journal: entry %q is corrupt: %w", k, err)
	}
	return &e, nil
}

func putEntry(tx *bolt.Tx, e *Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketOps).Put([]byte(e.OpID), v); err != nil {
		return err
	}
	return tx.Bucket(bucketByCard).Put([]byte(e.CardID+"\x00"+e.OpID), []byte(e.Status))
}

// ---- validation ----

// normalize checks a Begin request and returns it normalised.
func normalize(e Entry) (Entry, error) {
	var err error
	if e.OpID == "" {
		e.OpID = NewOpID()
	}
	if len(e.OpID) > maxOpID || !allIn(e.OpID, isOpIDChar) {
		return e, fmt.Errorf("%w: op id %q (want 1..%d of A-Z a-z 0-9 . _ : -)", ErrInvalid, e.OpID, maxOpID)
	}
	if LooksLikeIDNumber(e.OpID) {
		return e, fmt.Errorf("%w: op id", ErrSensitive)
	}
	if e.Kind == "" || len(e.Kind) > maxKind || !allIn(e.Kind, isKindChar) {
		return e, fmt.Errorf("%w: kind %q (want 1..%d of a-z 0-9 _ -)", ErrInvalid, e.Kind, maxKind)
	}
	if e.CardID, err = normCardID(e.CardID); err != nil {
		return e, err
	}
	d := strings.ToLower(e.PayloadDigest)
	if b, err := hex.DecodeString(d); err != nil || len(b) != 32 {
		return e, fmt.Errorf("%w: payload digest must be a hex SHA-256 (64 hex chars), got %d chars", ErrInvalid, len(e.PayloadDigest))
	}
	e.PayloadDigest = d
	for _, f := range []struct {
		name, val string
		max       int
	}{
		{"reader", e.Reader, maxShort},
		{"profile", e.Profile, maxShort},
		{"note", e.Note, maxText},
		{"error", e.Error, maxText},
	} {
		if err := checkText(f.name, f.val, f.max); err != nil {
			return e, err
		}
	}
	return e, nil
}

func normCardID(id string) (string, error) {
	u := strings.ToUpper(id)
	if b, err := hex.DecodeString(u); err != nil || len(b) != 16 {
		return "", fmt.Errorf("%w: card id must be the 16-byte card identification code as 32 hex chars, got %d chars", ErrInvalid, len(id))
	}
	return u, nil
}

func checkStep(step string, index int) error {
	if strings.TrimSpace(step) == "" {
		return fmt.Errorf("%w: empty step name", ErrInvalid)
	}
	if index < 0 {
		return fmt.Errorf("%w: step index %d", ErrInvalid, index)
	}
	return checkText("step name", step, maxShort)
}

// checkText refuses a free-text field that is too long, is not UTF-8,
// holds control characters other than tab and newline, or looks like it
// holds a citizen ID number.
func checkText(field, v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, field, max)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, field)
	}
	for _, r := range v {
		if unicode.IsControl(r) && r != '\t' && r != '\n' {
			return fmt.Errorf("%w: %s holds control character %U", ErrInvalid, field, r)
		}
	}
	if LooksLikeIDNumber(v) {
		return fmt.Errorf("%w: %s (the journal never stores holder data)", ErrSensitive, field)
	}
	return nil
}

// errText is the text kept for an error: ID-number-shaped runs removed,
// control characters replaced, truncated to maxText bytes.
func errText(err error) string {
	if err == nil {
		return ""
	}
	t := RedactIDNumbers(err.Error())
	t = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || (unicode.IsControl(r) && r != '\t' && r != '\n') {
			return '?'
		}
		return r
	}, t)
	if len(t) > maxText {
		cut := maxText
		for cut > 0 && !utf8.RuneStart(t[cut]) {
			cut--
		}
		t = t[:cut] + "…"
	}
	return t
}

// LooksLikeIDNumber reports whether s contains something shaped like an
// 18-character citizen ID number: a run of exactly 18 ASCII digits, or of
// exactly 17 digits followed by X or x, not part of a longer run of digits.
// It is a cheap guard against a programming mistake, not a detector: it
// does not check the date or the check digit (so it also refuses other
// 18-digit numbers), and it misses numbers written with separators,
// full-width digits, the old 15-digit form, or hex/base64-encoded data.
func LooksLikeIDNumber(s string) bool {
	return len(idRuns(s)) > 0
}

// RedactIDNumbers replaces every run LooksLikeIDNumber finds by
// "[ID number removed]".
func RedactIDNumbers(s string) string {
	runs := idRuns(s)
	if len(runs) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for _, r := range runs {
		b.WriteString(s[last:r[0]])
		b.WriteString("[ID number removed]")
		last = r[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// idRuns returns the [start, end) byte ranges of ID-number-shaped runs.
func idRuns(s string) [][2]int {
	var out [][2]int
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		switch n := j - i; {
		case n == 18:
			out = append(out, [2]int{i, j})
		case n == 17 && j < len(s) && (s[j] == 'X' || s[j] == 'x'):
			out = append(out, [2]int{i, j + 1})
		}
		i = j
	}
	return out
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isOpIDChar(r rune) bool {
	return r < utf8.RuneSelf && (isDigit(byte(r)) || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' ||
		r == '.' || r == '_' || r == ':' || r == '-')
}

func isKindChar(r rune) bool {
	return r < utf8.RuneSelf && (isDigit(byte(r)) || r >= 'a' && r <= 'z' || r == '_' || r == '-')
}

func allIn(s string, ok func(rune) bool) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !ok(r) {
			return false
		}
	}
	return true
}
