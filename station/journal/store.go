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
// request by PayloadDigest, a keyed digest of its canonical encoding (the
// station's is an HMAC under the station secret, see station/secret), and
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
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Begin starts an attempt at an operation. If no entry has e.OpID (a
// random OpID is chosen when it is empty) a new running entry is stored
// and returned with existed=false. Otherwise the stored entry is returned
// with existed=true after checking that Kind, CardID, PayloadDigest (and
// Profile, when both are set) match the request: a difference is an error
// wrapping ErrMismatch that names the field. Resuming a running or
// interrupted entry sets it running, clears its Error, counts the resume
// and records the new Reader. An entry that is done, failed or abandoned
// is returned with an error wrapping ErrFinished.
//
// Every Begin draws a new attempt token (Entry.Attempt): the writes that
// follow must carry it, and those of an earlier attempt are refused from
// now on (ErrStale).
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
	err = s.write(func(j *bolt.Bucket) error {
		ops := j.Bucket(bucketOps)
		cur, err := getEntry(ops, req.OpID)
		if errors.Is(err, ErrNotFound) {
			now := s.now()
			ne := &Entry{
				OpID: req.OpID, Kind: req.Kind, CardID: req.CardID,
				Reader: req.Reader, Profile: req.Profile,
				PayloadDigest: req.PayloadDigest, Note: req.Note,
				Status: StatusRunning, AttemptToken: NewOpID(), Created: now, Updated: now,
			}
			if err := putEntry(j, ne); err != nil {
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
		cur.AttemptToken = NewOpID()
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
		if err := putEntry(j, cur); err != nil {
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
		// Card ids are not secret: shown in full so that a technician can
		// tell which card the operation wants.
		return fmt.Errorf("operation %s: card id differs (journal %s, request %s): %w", cur.OpID, cur.CardID, req.CardID, ErrMismatch)
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
// committed to disk. id is the step's stable identifier (e.g.
// "update:EF06:2"), name its display name and index its place in the
// current plan (display only). Starting a step that has a record already
// (a redo after a resume) resets that record to started and counts the
// attempt. The entry must be running under this attempt: ErrStale for
// another attempt's token, ErrNotRunning when interrupted (Begin again),
// ErrFinished when done, failed or abandoned.
func (s *Store) StepStarted(at Attempt, id string, index int, name string) error {
	if err := checkStep(id, name, index); err != nil {
		return err
	}
	return s.update(at, func(e *Entry, now time.Time) error {
		if err := mustRun(e); err != nil {
			return err
		}
		rec := Step{ID: id, Name: name, Index: index, State: StateStarted, Started: now, Attempts: 1}
		for i, st := range e.Steps {
			if st.ID == id {
				rec.Attempts = st.Attempts + 1
				e.Steps = append(e.Steps[:i], e.Steps[i+1:]...)
				break
			}
		}
		e.Steps = append(e.Steps, rec)
		return nil
	})
}

// StepFinished records that a step has run to the end. Call it AFTER the
// card confirmed the step. The step must have been started (and not
// finished since): ErrSequence otherwise. detail is a short free text
// (never card data, PINs, keys or ID numbers: ErrSensitive).
func (s *Store) StepFinished(at Attempt, id string, detail string) error {
	if err := checkText("detail", detail, maxText); err != nil {
		return err
	}
	return s.update(at, func(e *Entry, now time.Time) error {
		if err := mustRun(e); err != nil {
			return err
		}
		for i := range e.Steps {
			st := &e.Steps[i]
			if st.ID != id {
				continue
			}
			if st.State != StateStarted {
				return fmt.Errorf("operation %s: step %s is %s, not started: %w", e.OpID, id, st.State, ErrSequence)
			}
			st.State = StateDone
			st.Finished = now
			st.Detail = detail
			return nil
		}
		return fmt.Errorf("operation %s: step %s finished but never started: %w", e.OpID, id, ErrSequence)
	})
}

// SetPINCheck records (check != "") or drops (check == "") the keyed
// digest of a PIN a step is about to set: a hex HMAC-SHA256 (64 hex
// characters) under a secret that is not in the journal. The entry must be
// running under this attempt.
func (s *Store) SetPINCheck(at Attempt, check string) error {
	if check != "" {
		if b, err := hex.DecodeString(check); err != nil || len(b) != 32 {
			return fmt.Errorf("%w: PIN check must be a hex HMAC-SHA256 (64 hex chars)", ErrInvalid)
		}
	}
	return s.update(at, func(e *Entry, now time.Time) error {
		if check != "" {
			if err := mustRun(e); err != nil {
				return err
			}
		}
		e.PINCheck = strings.ToLower(check)
		return nil
	})
}

// Interrupt records that the attempt stopped before its end with the
// outcome of the card's last command unknown or the work cut short (card
// pulled, reader or service lost, cancelled, a journal write failed): the
// entry becomes interrupted and keeps err's text. Steps are left as they
// are, so the entry says where it stopped. Any part of the text that looks
// like a citizen ID number is replaced by "[ID number removed]" rather
// than refused, so that the interruption itself is always recorded.
func (s *Store) Interrupt(at Attempt, err error) error {
	text := errText(err)
	return s.update(at, func(e *Entry, now time.Time) error {
		if e.Status.Final() {
			return fmt.Errorf("operation %s is %s: %w", e.OpID, e.Status, ErrFinished)
		}
		e.Status = StatusInterrupted
		e.Error = text
		return nil
	})
}

// Finish records the end of an operation: status is StatusDone or
// StatusFailed (only for a refusal known to have changed nothing). Done
// requires that no step is left started (ErrSequence). err's text is kept
// as in Interrupt. The PIN check is dropped. Finishing a final entry is
// ErrFinished.
func (s *Store) Finish(at Attempt, status Status, err error) error {
	if status != StatusDone && status != StatusFailed {
		return fmt.Errorf("%w: Finish with status %q (want done or failed)", ErrInvalid, status)
	}
	text := errText(err)
	return s.update(at, func(e *Entry, now time.Time) error {
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
		e.PINCheck = ""
		return nil
	})
}

// Abandon records that a technician gave up on an unfinished operation
// (its card is gone, or it will be redone under another id); note
// (required) says why. It needs no attempt token: a live attempt's next
// write then fails with ErrFinished. The PIN check is dropped. Abandoning
// a final entry is ErrFinished.
func (s *Store) Abandon(opID, note string) error {
	if strings.TrimSpace(note) == "" {
		return fmt.Errorf("%w: Abandon needs a note", ErrInvalid)
	}
	if err := checkText("note", note, maxText); err != nil {
		return err
	}
	return s.write(func(j *bolt.Bucket) error {
		e, err := getEntry(j.Bucket(bucketOps), opID)
		if err != nil {
			return err
		}
		if e.Status.Final() {
			return fmt.Errorf("operation %s is %s: %w", e.OpID, e.Status, ErrFinished)
		}
		e.Status = StatusAbandoned
		e.Note = note
		e.PINCheck = ""
		e.Updated = s.now()
		return putEntry(j, e)
	})
}

// Prune deletes the finished entries (done, failed, abandoned) last
// updated before cutoff and returns how many it deleted. Unfinished
// entries are kept whatever their age, and so are entries that cannot be
// decoded (a technician looks at those).
func (s *Store) Prune(cutoff time.Time) (int, error) {
	n := 0
	err := s.write(func(j *bolt.Bucket) error {
		ops := j.Bucket(bucketOps)
		var old []*Entry
		err := ops.ForEach(func(k, v []byte) error {
			e, err := decode(k, v)
			if err == nil && e.Status.Final() && e.Updated.Before(cutoff) {
				old = append(old, e)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range old {
			if err := ops.Delete([]byte(e.OpID)); err != nil {
				return err
			}
			if err := j.Bucket(bucketByCard).Delete([]byte(e.CardID + "\x00" + e.OpID)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// Get returns the entry with that OpID, or ErrNotFound (ErrDamaged for an
// entry that cannot be decoded).
func (s *Store) Get(opID string) (*Entry, error) {
	var out *Entry
	err := s.read(func(j bucketer) error {
		var err error
		out, err = getEntry(j.Bucket(bucketOps), opID)
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
// first. An entry that cannot be decoded is returned with StatusDamaged.
func (s *Store) ByCard(cardID string) ([]*Entry, error) {
	id, err := normCardID(cardID)
	if err != nil {
		return nil, err
	}
	prefix := []byte(id + "\x00")
	var out []*Entry
	err = s.read(func(j bucketer) error {
		ops, idx := j.Bucket(bucketOps), j.Bucket(bucketByCard)
		if ops == nil || idx == nil {
			return nil
		}
		c := idx.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			op := string(k[len(prefix):])
			e, err := getEntry(ops, op)
			switch {
			case errors.Is(err, ErrNotFound):
				continue
			case errors.Is(err, ErrDamaged):
				e = damaged([]byte(op), err)
				e.CardID = id
			case err != nil:
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortEntries(out, false)
	return out, nil
}

// List returns up to limit entries (all when limit <= 0), newest first by
// creation time. An entry that cannot be decoded is listed with
// StatusDamaged and the decoding error, never hiding the others.
func (s *Store) List(limit int) ([]*Entry, error) {
	var out []*Entry
	err := s.read(func(j bucketer) error {
		ops := j.Bucket(bucketOps)
		if ops == nil {
			return nil
		}
		return ops.ForEach(func(k, v []byte) error {
			e, err := decode(k, v)
			if err != nil {
				e = damaged(k, err)
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sortEntries(out, true)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func sortEntries(out []*Entry, newestFirst bool) {
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created) != newestFirst
		}
		return (out[i].OpID < out[j].OpID) != newestFirst
	})
}

// damaged stands for an entry that cannot be decoded.
func damaged(k []byte, err error) *Entry {
	op := string(k)
	if len(op) > maxOpID || !allIn(op, isOpIDChar) {
		op = fmt.Sprintf("%x", k)
		if len(op) > 2*maxOpID {
			op = op[:2*maxOpID]
		}
	}
	return &Entry{OpID: op, Status: StatusDamaged, Error: errText(err)}
}

// bucketer is the journal's bucket, or (in a version 1 file opened read
// only) the top level of the file.
type bucketer interface {
	Bucket(name []byte) *bolt.Bucket
}

// read runs fn on the journal's buckets in a reading transaction. A file
// can pass CheckFile and still hold a page whose element sizes point past
// the mapping (found by FuzzOpenFile): reading it faults, so the
// transaction runs under guard, where the fault becomes ErrDamaged
// instead of killing the process.
func (s *Store) read(fn func(j bucketer) error) error {
	return guard(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			if j := tx.Bucket(bucketJournal); j != nil {
				return fn(j)
			}
			return fn(tx)
		})
	})
}

// write runs fn on the journal's bucket in one writing transaction.
func (s *Store) write(fn func(j *bolt.Bucket) error) error {
	if s.readOnly {
		return fmt.Errorf("journal %s: %w", s.path, ErrReadOnly)
	}
	return guard(func() error { // see read: a damaged page faults
		return s.db.Update(func(tx *bolt.Tx) error {
			j := tx.Bucket(bucketJournal)
			if j == nil {
				return fmt.Errorf("%w: no journal bucket", ErrDamaged)
			}
			return fn(j)
		})
	})
}

// update runs fn on the entry in one writing transaction, after checking
// the attempt token, and stores it with Updated set, unless fn fails.
func (s *Store) update(at Attempt, fn func(e *Entry, now time.Time) error) error {
	return s.write(func(j *bolt.Bucket) error {
		e, err := getEntry(j.Bucket(bucketOps), at.OpID)
		if err != nil {
			return err
		}
		if e.AttemptToken != at.Token {
			return fmt.Errorf("operation %s: %w", e.OpID, ErrStale)
		}
		now := s.now()
		if err := fn(e, now); err != nil {
			return err
		}
		e.Updated = now
		return putEntry(j, e)
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
	var v []byte
	if ops != nil {
		v = ops.Get([]byte(opID))
	}
	if v == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, opID)
	}
	return decode([]byte(opID), v)
}

// decode reads one stored entry. A version 1 step has no ID: its name is
// its ID.
func decode(k, v []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("%w: entry %q: %w", ErrDamaged, fmt.Sprintf("%.64s", k), err)
	}
	if e.OpID != string(k) || e.Status == "" {
		return nil, fmt.Errorf("%w: entry %q: key and content disagree", ErrDamaged, fmt.Sprintf("%.64s", k))
	}
	for i := range e.Steps {
		if e.Steps[i].ID == "" {
			e.Steps[i].ID = e.Steps[i].Name
		}
	}
	return &e, nil
}

func putEntry(j *bolt.Bucket, e *Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := j.Bucket(bucketOps).Put([]byte(e.OpID), v); err != nil {
		return err
	}
	return j.Bucket(bucketByCard).Put([]byte(e.CardID+"\x00"+e.OpID), []byte(e.Status))
}
