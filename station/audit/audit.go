// Package audit keeps the station's audit trail in the store's bbolt file:
// one record per card touch, written BEFORE the card is touched and
// completed after.
//
// The trail is a hash chain. Every entry holds the SHA-256 of the entry
// before it, so a changed, removed or inserted entry breaks the chain at
// that point and `sscard audit verify` names it. Because a chained entry
// can never be rewritten, a touch is two entries: its "begin" entry
// (written before any APDU: who, where, what) and its "end" entry
// (outcome, status word, card), which refers to the begin entry by
// sequence number. Records joins them back into one record per touch.
//
// No PIN, no key and no full ID number is ever stored: the SSN only in
// its masked form, and every text field is refused if it looks like a
// full ID number.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketAudit = []byte("audit")      // seq (8 bytes big endian) -> entry JSON
	bucketMeta  = []byte("audit-meta") // "head" -> hex hash of the last entry
	keyHead     = []byte("head")
)

// Genesis is the "previous hash" of the first entry.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Phase says which half of a touch an entry is.
type Phase string

const (
	PhaseBegin Phase = "begin"
	PhaseEnd   Phase = "end"
)

// Outcome of a touch.
type Outcome string

const (
	OutcomeStarted     Outcome = "started" // begin entry: the outcome is not known yet
	OutcomeDone        Outcome = "done"
	OutcomeFailed      Outcome = "failed"
	OutcomeInterrupted Outcome = "interrupted"
	OutcomeCancelled   Outcome = "cancelled"
	// OutcomeUnknown is shown (never stored) for a begin entry without
	// an end entry that this run of the station is not working on: the
	// station stopped (a crash, kill -9) between the touch and the commit
	// of its end entry. Ends of operations that answer without an
	// Idempotency-Key (reads) are committed after the answer, so such a
	// touch's result was perhaps shown but its end is not recorded. The
	// chain itself is intact: an entry that was never written breaks
	// nothing.
	OutcomeUnknown Outcome = "unknown"
)

// Entry is one link of the chain.
type Entry struct {
	Seq   uint64    `json:"seq"`
	Phase Phase     `json:"phase"`
	Time  time.Time `json:"time"`
	// Begin is the sequence number of the begin entry an end entry completes.
	Begin uint64 `json:"begin,omitempty"`

	TokenName string `json:"token_name,omitempty"`
	Role      string `json:"role,omitempty"`
	Operator  string `json:"operator,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Reader    string `json:"reader,omitempty"`
	Operation string `json:"operation,omitempty"`
	OpID      string `json:"op_id,omitempty"`
	// CardID is the card identification code (EF05 record 1, hex): not
	// personal data.
	CardID    string  `json:"card_id,omitempty"`
	SSNMasked string  `json:"ssn_masked,omitempty"`
	Outcome   Outcome `json:"outcome"`
	SW        string  `json:"sw,omitempty"`
	Code      string  `json:"code,omitempty"`

	// Prev is the hex SHA-256 of the previous entry's stored bytes.
	Prev string `json:"prev"`
}

// Record is one touch: its begin entry completed by its end entry.
type Record struct {
	Seq       uint64     `json:"seq"`
	Time      time.Time  `json:"time"`
	Completed *time.Time `json:"completed,omitempty"`
	TokenName string     `json:"token_name,omitempty"`
	Role      string     `json:"role,omitempty"`
	Operator  string     `json:"operator,omitempty"`
	RequestID string     `json:"request_id,omitempty"`
	Reader    string     `json:"reader,omitempty"`
	Operation string     `json:"operation"`
	OpID      string     `json:"op_id,omitempty"`
	CardID    string     `json:"card_id,omitempty"`
	SSNMasked string     `json:"ssn_masked,omitempty"`
	Outcome   Outcome    `json:"outcome"`
	SW        string     `json:"sw,omitempty"`
	Code      string     `json:"code,omitempty"`
}

// Begin is what is known before a card is touched.
type Begin struct {
	TokenName, Role, Operator, RequestID string
	Reader, Operation, OpID              string
}

// End is what is known after.
type End struct {
	Outcome   Outcome
	CardID    string
	SSNMasked string
	SW        string
	Code      string
}

// ErrUnsafe is returned for an SSN that is not masked, a card id that is
// not hex or an operation id that is not a plain token: such an entry is
// never written.
var ErrUnsafe = errors.New("audit: a field looks like a full ID number")

// Log is the audit trail in an open bbolt file.
//
// Writes are group-committed: entries (with the caller's own records of
// the same touch, see CompleteWith) queued while a commit is in progress
// go into the next one, so concurrent touches share an fsync instead of
// queueing for one each. A waiting writer returns when its own entry is
// durable.
type Log struct {
	db  *bolt.DB
	Now func() time.Time
	// OnLaterError hears of an entry committed after its caller went on
	// (CompleteWith later) that could not be written (set before use).
	OnLaterError func(begin uint64, err error)

	mu         sync.Mutex
	idle       *sync.Cond // signalled when the queue is empty and no commit runs
	queue      []*write
	committing bool
	// delayed is the pending start of a commit of entries nobody waits
	// for (laterDelay): a waiting writer or Flush takes it over at once.
	delayed *time.Timer
	// open are the begin entries this run wrote and has not completed:
	// Records shows them "started", other ends missing as "unknown".
	open map[uint64]bool
}

// write is one queued entry and what its transaction also writes.
type write struct {
	e    Entry
	also func(*bolt.Tx) error
	seq  uint64
	in   bool // the entry is committed (err may still be also's)
	err  error
	done chan struct{} // nil: nobody waits (committed after the answer)
}

// Open prepares the audit buckets in db (the store's file).
func Open(db *bolt.DB) (*Log, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketAudit); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketMeta)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	l := &Log{db: db, open: map[uint64]bool{}}
	l.idle = sync.NewCond(&l.mu)
	return l, nil
}

func (l *Log) now() time.Time {
	if l.Now != nil {
		return l.Now().UTC()
	}
	return time.Now().UTC()
}

// Begin writes the begin entry of a touch and returns its sequence
// number. An error means the touch must not start.
func (l *Log) Begin(b Begin) (uint64, error) {
	e := Entry{Phase: PhaseBegin, TokenName: b.TokenName, Role: b.Role, Operator: b.Operator, RequestID: b.RequestID,
		Reader: b.Reader, Operation: b.Operation, OpID: b.OpID, Outcome: OutcomeStarted}
	return l.append(e, nil, true)
}

// Complete writes the end entry of the touch begun at seq.
func (l *Log) Complete(seq uint64, end End) error {
	return l.CompleteWith(seq, end, nil, false)
}

// CompleteWith writes the end entry of the touch begun at seq in one
// transaction with also (the caller's own record of the touch, e.g. the
// stored operation; nil for none), so a touch ends with one commit.
//
// With later set it returns at once and the commit follows in the
// background (Flush waits for it): for touches whose answer needs no
// durable record. A crash before that commit leaves the begin entry
// alone, which Records shows as OutcomeUnknown; the chain still verifies.
// An error from also does not cost the end entry: it is then written on
// its own and also's error returned (or, later, dropped).
func (l *Log) CompleteWith(seq uint64, end End, also func(*bolt.Tx) error, later bool) error {
	e := Entry{Phase: PhaseEnd, Begin: seq, Outcome: end.Outcome, CardID: end.CardID, SSNMasked: end.SSNMasked, SW: end.SW, Code: end.Code}
	_, err := l.append(e, also, !later)
	return err
}

// laterDelay is how long the commit of entries nobody waits for waits.
const laterDelay = 2 * time.Millisecond

// takeDelayedLocked cancels the delayed commit, if it has not started:
// the caller then commits the queue (it is the committer).
func (l *Log) takeDelayedLocked() bool {
	if l.delayed == nil || !l.delayed.Stop() {
		return false
	}
	l.delayed = nil
	return true
}

// Flush waits until every queued entry is committed (or failed).
func (l *Log) Flush() {
	l.mu.Lock()
	if l.takeDelayedLocked() {
		l.mu.Unlock()
		l.drain()
		l.mu.Lock()
	}
	for l.committing || len(l.queue) > 0 {
		l.idle.Wait()
	}
	l.mu.Unlock()
}

// append queues e and, when wait is set, returns once it is committed.
// The first writer to find no commit running commits the queue; when
// more arrived meanwhile, a goroutine takes over so the waiter answers
// as soon as its own entry is durable.
func (l *Log) append(e Entry, also func(*bolt.Tx) error, wait bool) (uint64, error) {
	if err := sanitize(&e); err != nil {
		return 0, err
	}
	w := &write{e: e, also: also}
	if wait {
		w.done = make(chan struct{})
	}
	l.mu.Lock()
	w.e.Time = l.now()
	l.queue = append(l.queue, w)
	lead := !l.committing || (wait && l.takeDelayedLocked())
	l.committing = true
	if lead && !wait {
		// Nobody waits: the commit starts a moment later, so the answer
		// it follows leaves first, and it may ride on the next commit.
		l.delayed = time.AfterFunc(laterDelay, func() {
			l.mu.Lock()
			l.delayed = nil
			l.mu.Unlock()
			l.drain()
		})
	}
	l.mu.Unlock()
	if lead && wait && l.commitNext() {
		go l.drain()
	}
	if !wait {
		return 0, nil
	}
	<-w.done
	switch {
	case !w.in:
		return 0, fmt.Errorf("audit: write: %w", w.err)
	case w.err != nil:
		return w.seq, fmt.Errorf("audit: the record written with the entry: %w", w.err)
	}
	return w.seq, nil
}

func (l *Log) drain() {
	for l.commitNext() {
	}
}

// commitNext commits what is queued in one transaction and reports
// whether more is queued (false: the committer's role is given up).
func (l *Log) commitNext() bool {
	l.mu.Lock()
	batch := l.queue
	l.queue = nil
	l.mu.Unlock()
	run := func(ws []*write, withAlso bool) error {
		return l.db.Update(func(tx *bolt.Tx) error {
			for _, w := range ws {
				if err := l.put(tx, w, withAlso); err != nil {
					return err
				}
			}
			return nil
		})
	}
	err := run(batch, true)
	for _, w := range batch {
		w.in, w.err = err == nil, err
	}
	if err != nil && len(batch) > 1 {
		// One failing write must not take the others down: each alone.
		for _, w := range batch {
			w.err = run([]*write{w}, true)
			w.in = w.err == nil
		}
	}
	for _, w := range batch {
		if !w.in && w.also != nil {
			// The caller's record may be what failed: the entry goes in
			// alone, and the caller still hears of the failure.
			if run([]*write{w}, false) == nil {
				w.in = true
			}
		}
	}
	l.mu.Lock()
	for _, w := range batch {
		switch {
		case !w.in:
		case w.e.Phase == PhaseBegin:
			l.open[w.seq] = true
		default:
			delete(l.open, w.e.Begin)
		}
	}
	more := len(l.queue) > 0
	if !more {
		l.committing = false
		l.idle.Broadcast()
	}
	l.mu.Unlock()
	for _, w := range batch {
		switch {
		case w.done != nil:
			close(w.done)
		case w.err != nil && l.OnLaterError != nil:
			l.OnLaterError(w.e.Begin, w.err)
		}
	}
	return more
}

// put appends w's entry to the chain inside tx (and w.also when withAlso).
func (l *Log) put(tx *bolt.Tx, w *write, withAlso bool) error {
	w.seq = 0
	e := w.e
	b, meta := tx.Bucket(bucketAudit), tx.Bucket(bucketMeta)
	if b == nil || meta == nil {
		return errors.New("audit buckets missing")
	}
	if e.Phase == PhaseEnd && b.Get(key(e.Begin)) == nil {
		return fmt.Errorf("no begin entry %d", e.Begin)
	}
	prev := Genesis
	if h := meta.Get(keyHead); h != nil {
		prev = string(h)
	}
	n, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq, e.Prev = n, prev
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := b.Put(key(n), raw); err != nil {
		return err
	}
	if err := meta.Put(keyHead, []byte(hashOf(raw))); err != nil {
		return err
	}
	if withAlso && w.also != nil {
		if err := w.also(tx); err != nil {
			return err
		}
	}
	w.seq = n
	return nil
}

// sanitize keeps full ID numbers out of the trail: a run of 15 or more
// digits in a free-text field (token name, operator, request id…) is
// masked, a card id must be hex, and an SSN must already be masked.
func sanitize(e *Entry) error {
	for _, f := range []*string{&e.TokenName, &e.Role, &e.Operator, &e.RequestID, &e.Reader, &e.Operation, &e.SW, &e.Code} {
		*f = maskDigitRuns(*f)
		if len(*f) > 200 {
			*f = (*f)[:200]
		}
	}
	if !isHex(e.CardID) || len(e.CardID) > 64 || !isToken(e.OpID) {
		return ErrUnsafe
	}
	if e.SSNMasked != "" && (!strings.Contains(e.SSNMasked, "*") || looksLikeIDNumber(e.SSNMasked)) {
		return ErrUnsafe
	}
	return nil
}

// check is Verify's test of a stored entry.
func check(e *Entry) error {
	for _, f := range []string{e.TokenName, e.Role, e.Operator, e.RequestID, e.Reader, e.Operation, e.SW, e.Code, e.SSNMasked} {
		if looksLikeIDNumber(f) {
			return ErrUnsafe
		}
	}
	if !isHex(e.CardID) {
		return ErrUnsafe
	}
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isToken(s string) bool {
	if len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// maskDigitRuns replaces every run of 15 or more digits (with an X check
// character, an ID number) by asterisks but its first 4 and last 2.
func maskDigitRuns(s string) string {
	if !looksLikeIDNumber(s) {
		return s
	}
	b := []byte(s)
	for i := 0; i < len(b); {
		if b[i] < '0' || b[i] > '9' {
			i++
			continue
		}
		j := i
		for j < len(b) && (b[j] >= '0' && b[j] <= '9' || (j > i && (b[j] == 'X' || b[j] == 'x'))) {
			j++
		}
		if j-i >= 15 {
			for k := i + 4; k < j-2; k++ {
				b[k] = '*'
			}
		}
		i = j
	}
	return string(b)
}

// looksLikeIDNumber finds a run of 15 or more digits (an 18-character ID
// number with an X check character has 17).
func looksLikeIDNumber(s string) bool {
	run := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			run++
			if run >= 15 {
				return true
			}
			continue
		}
		run = 0
	}
	return false
}

func key(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

func hashOf(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// Query selects records; zero fields select everything. From is
// inclusive, To exclusive.
type Query struct {
	CardID   string
	From, To time.Time
	Limit    int // newest first when set; 0 = all
}

// Records returns one record per touch, oldest first (newest Limit when
// Limit is set). Entries still queued are committed first; a touch
// without an end entry is "started" while this run works on it and
// "unknown" otherwise (OutcomeUnknown).
func (l *Log) Records(q Query) ([]Record, error) {
	l.Flush()
	var out []Record
	err := l.db.View(func(tx *bolt.Tx) error {
		recs, err := records(tx)
		if err != nil {
			return err
		}
		l.mu.Lock()
		for i := range recs {
			if recs[i].Completed == nil && !l.open[recs[i].Seq] {
				recs[i].Outcome = OutcomeUnknown
			}
		}
		l.mu.Unlock()
		for _, r := range recs {
			if q.CardID != "" && !strings.EqualFold(r.CardID, q.CardID) {
				continue
			}
			if !q.From.IsZero() && r.Time.Before(q.From) {
				continue
			}
			if !q.To.IsZero() && !r.Time.Before(q.To) {
				continue
			}
			out = append(out, r)
		}
		return nil
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[len(out)-q.Limit:]
	}
	return out, err
}

func records(tx *bolt.Tx) ([]Record, error) {
	b := tx.Bucket(bucketAudit)
	if b == nil {
		return nil, nil
	}
	var out []Record
	index := map[uint64]int{}
	err := b.ForEach(func(k, v []byte) error {
		var e Entry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("audit entry %d: %w", binary.BigEndian.Uint64(k), err)
		}
		switch e.Phase {
		case PhaseBegin:
			index[e.Seq] = len(out)
			out = append(out, Record{Seq: e.Seq, Time: e.Time, TokenName: e.TokenName, Role: e.Role, Operator: e.Operator,
				RequestID: e.RequestID, Reader: e.Reader, Operation: e.Operation, OpID: e.OpID, Outcome: e.Outcome})
		case PhaseEnd:
			i, ok := index[e.Begin]
			if !ok {
				return nil
			}
			r := &out[i]
			t := e.Time
			r.Completed, r.Outcome, r.CardID, r.SSNMasked, r.SW, r.Code = &t, e.Outcome, e.CardID, e.SSNMasked, e.SW, e.Code
		}
		return nil
	})
	return out, err
}

// BreakError names the first entry where the chain does not hold.
type BreakError struct {
	Seq    uint64
	Reason string
}

func (e *BreakError) Error() string {
	return fmt.Sprintf("audit chain broken at entry %d: %s", e.Seq, e.Reason)
}

// Verify walks the chain from the first entry and returns how many entries
// hold, or a *BreakError naming the first that does not.
func Verify(db *bolt.DB) (int, error) {
	n := 0
	err := db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		if b == nil {
			return nil
		}
		prev := Genesis
		var want uint64 = 1
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			if seq != want {
				return &BreakError{Seq: want, Reason: fmt.Sprintf("entry missing (next stored entry is %d)", seq)}
			}
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return &BreakError{Seq: seq, Reason: "unreadable entry"}
			}
			if e.Seq != seq {
				return &BreakError{Seq: seq, Reason: fmt.Sprintf("entry says it is %d", e.Seq)}
			}
			if e.Prev != prev {
				return &BreakError{Seq: seq, Reason: "its previous-entry hash does not match the entry before it (that entry or this one was changed)"}
			}
			if err := check(&e); err != nil {
				return &BreakError{Seq: seq, Reason: "it holds a field that looks like a full ID number"}
			}
			prev = hashOf(v)
			want++
			n++
		}
		if meta := tx.Bucket(bucketMeta); meta != nil {
			if h := meta.Get(keyHead); h != nil && string(h) != prev {
				return &BreakError{Seq: want - 1, Reason: "the last entry's hash differs from the recorded head (the last entry was changed or entries were removed from the end)"}
			}
		}
		return nil
	})
	return n, err
}

// Unfinished counts the touches whose begin entry has no end entry. Read
// from a stopped station's file (sscard audit verify), each is a touch of
// unknown outcome (OutcomeUnknown): the station stopped between the touch
// and the commit of its end. The chain is not broken by them.
func Unfinished(db *bolt.DB) (int, error) {
	n := 0
	err := db.View(func(tx *bolt.Tx) error {
		recs, err := records(tx)
		for _, r := range recs {
			if r.Completed == nil {
				n++
			}
		}
		return err
	})
	return n, err
}

// Export writes every entry as one JSON line, in chain order, exactly as
// stored (so the export can be verified on its own).
func Export(db *bolt.DB, w io.Writer) (int, error) {
	n := 0
	err := db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			if _, err := w.Write(append(bytes.Clone(v), '\n')); err != nil {
				return err
			}
			n++
			return nil
		})
	})
	return n, err
}

// VerifyLines checks an export (JSON lines as Export writes them).
func VerifyLines(r io.Reader) (int, error) {
	dec := json.NewDecoder(r)
	prev := Genesis
	n := 0
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			return n, nil
		} else if err != nil {
			return n, &BreakError{Seq: uint64(n + 1), Reason: "unreadable line"}
		}
		var e Entry
		if err := json.Unmarshal(raw, &e); err != nil || e.Seq != uint64(n+1) {
			return n, &BreakError{Seq: uint64(n + 1), Reason: "entry missing or out of order"}
		}
		if e.Prev != prev {
			return n, &BreakError{Seq: e.Seq, Reason: "its previous-entry hash does not match the entry before it"}
		}
		prev = hashOf(raw)
		n++
	}
}
