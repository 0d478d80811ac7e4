package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"ssstation/station/service"
)

// The idempotency records live in the station's bbolt file so a replay
// after a restart still finds them (IETF draft "The Idempotency-Key HTTP
// Header Field": keys are scoped to the client, here the token name).
var idemBucket = []byte("api_idempotency")

type idemState string

const (
	idemInFlight idemState = "in_flight"
	idemDone     idemState = "done"
)

// idemRecord never holds a PIN: the fingerprint leaves PIN fields out and
// the stored answer is our response (which never carries one).
type idemRecord struct {
	Fingerprint string      `json:"fp"`
	State       idemState   `json:"state"`
	Run         string      `json:"run"` // which daemon run holds it in flight
	Created     time.Time   `json:"created"`
	OpID        string      `json:"op_id,omitempty"`
	Status      int         `json:"status,omitempty"`
	Header      http.Header `json:"header,omitempty"`
	Body        []byte      `json:"body,omitempty"`
}

type idemOutcome int

const (
	idemProceed  idemOutcome = iota // reserved: go ahead
	idemReplay                      // finished before: answer rec
	idemBusy                        // same key being processed now
	idemMismatch                    // same key, another request
	idemOrphaned                    // in flight when an earlier run stopped
)

type idemStore struct {
	db  *bolt.DB
	run string
	now func() time.Time

	mu        sync.Mutex
	lastSweep time.Time
}

// sweepEvery: expired keys are deleted at start and then at most hourly,
// inside a begin's transaction (lookups ignore them in between).
const sweepEvery = time.Hour

func openIdemStore(db *bolt.DB, now func() time.Time) (*idemStore, error) {
	s := &idemStore{db: db, run: newID(8), now: now, lastSweep: now()}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(idemBucket)
		if err != nil {
			return err
		}
		return s.sweep(b)
	})
	if err != nil {
		return nil, fmt.Errorf("api: idempotency bucket: %w", err)
	}
	return s, nil
}

func (s *idemStore) sweep(b *bolt.Bucket) error { return sweepExpired(b, s.now()) }

// sweepExpired deletes the records of b (JSON with a "created" time) that
// are older than IdempotencyTTL, or that no longer decode: the idempotency
// keys and the operation owners share this window.
func sweepExpired(b *bolt.Bucket, now time.Time) error {
	var old [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var r struct {
			Created time.Time `json:"created"`
		}
		if json.Unmarshal(v, &r) != nil || now.Sub(r.Created) > IdempotencyTTL {
			old = append(old, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return err
}

func (s *idemStore) sweepDue() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.now().Sub(s.lastSweep) < sweepEvery {
		return false
	}
	s.lastSweep = s.now()
	return true
}

// parseIdemKey accepts the draft's sf-string ("...") and, leniently, a
// bare token; 1..255 printable ASCII characters.
func parseIdemKey(h string) (string, bool) {
	h = strings.TrimSpace(h)
	if len(h) >= 2 && h[0] == '"' && h[len(h)-1] == '"' {
		h = h[1 : len(h)-1]
	}
	if len(h) == 0 || len(h) > 255 {
		return "", false
	}
	for i := 0; i < len(h); i++ {
		if h[i] < 0x21 || h[i] > 0x7e || h[i] == '"' || h[i] == '\\' {
			return "", false
		}
	}
	return h, true
}

// fingerprint of a card request: route, reader and every non-secret
// field. PIN fields are json:"-" in service.Request and so left out; the
// caller is left out too (the scope already names the token).
func fingerprint(pattern string, req service.Request) string {
	req.Caller = service.Caller{}
	j, _ := json.Marshal(req)
	h := sha256.New()
	h.Write([]byte(pattern))
	h.Write([]byte{0})
	h.Write(j)
	h.Write([]byte{0})
	h.Write(req.Personalize)
	return hex.EncodeToString(h.Sum(nil))
}

func scopeKey(token, key string) []byte { return []byte(token + "\x00" + key) }

// judge says what a live record for the key means for this request.
func (s *idemStore) judge(b *bolt.Bucket, scope []byte, fp string) (idemOutcome, *idemRecord) {
	v := b.Get(scope)
	if v == nil {
		return idemProceed, nil
	}
	var r idemRecord
	if err := json.Unmarshal(v, &r); err != nil || s.now().Sub(r.Created) > IdempotencyTTL {
		return idemProceed, nil
	}
	switch {
	case r.Fingerprint != fp:
		return idemMismatch, &r
	case r.State == idemDone:
		return idemReplay, &r
	case r.Run == s.run:
		return idemBusy, &r
	}
	return idemOrphaned, &r
}

// begin reserves key for this request or says why not. A known key is
// judged in a read transaction (a replay costs no commit); a new one is
// reserved in a write transaction that judges again (two requests racing
// for one key: one reserves it, the other sees it in flight).
func (s *idemStore) begin(scope []byte, fp string) (idemOutcome, *idemRecord, error) {
	var out idemOutcome
	var rec *idemRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		out, rec = s.judge(tx.Bucket(idemBucket), scope, fp)
		return nil
	})
	if err != nil || out != idemProceed {
		return out, rec, err
	}
	sweep := s.sweepDue()
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(idemBucket)
		if sweep {
			if err := s.sweep(b); err != nil {
				return err
			}
		}
		if out, rec = s.judge(b, scope, fp); out != idemProceed {
			return nil
		}
		return put(b, scope, &idemRecord{Fingerprint: fp, State: idemInFlight, Run: s.run, Created: s.now()})
	})
	return out, rec, err
}

func put(b *bolt.Bucket, k []byte, r *idemRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

func (s *idemStore) update(scope []byte, f func(*idemRecord)) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(idemBucket)
		var r idemRecord
		if v := b.Get(scope); v == nil || json.Unmarshal(v, &r) != nil {
			return fmt.Errorf("idempotency record vanished")
		}
		f(&r)
		return put(b, scope, &r)
	})
}

// setOp notes the operation the key started, so an answer can still be
// given after a crash between Submit and the response.
func (s *idemStore) setOp(scope []byte, opID string) error {
	return s.update(scope, func(r *idemRecord) { r.OpID = opID })
}

// finish stores the answer for replays.
func (s *idemStore) finish(scope []byte, status int, h http.Header, body []byte) error {
	keep := http.Header{}
	for _, k := range []string{"Content-Type", "Location", "Preference-Applied"} {
		if v := h.Get(k); v != "" {
			keep.Set(k, v)
		}
	}
	return s.update(scope, func(r *idemRecord) {
		r.State, r.Status, r.Header, r.Body = idemDone, status, keep, body
	})
}

// release forgets a key whose request never reached a card (refused by
// the station before queueing), so the client may retry with it.
func (s *idemStore) release(scope []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(idemBucket).Delete(scope) })
}
