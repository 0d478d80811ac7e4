package api

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Operation ids travel in events every subscriber sees, and a read's
// result shows the SSN in full to roles that may see it. So an operation
// is shown to the token that started it (and to admin tokens) only; the
// owners are kept in the station's file so the rule holds after a
// restart (the daemon keeps its operations there too).
var ownerBucket = []byte("api_operation_owners")

type ownerRecord struct {
	Token   string    `json:"token"`
	Created time.Time `json:"created"`
}

type ownerStore struct {
	db  *bolt.DB
	now func() time.Time

	mu        sync.Mutex
	lastSweep time.Time
	recent    map[string]string // this run's owners: no read of the file for them
}

func openOwnerStore(db *bolt.DB, now func() time.Time) (*ownerStore, error) {
	s := &ownerStore{db: db, now: now, lastSweep: now(), recent: map[string]string{}}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(ownerBucket)
		if err != nil {
			return err
		}
		return s.sweep(b)
	})
	if err != nil {
		return nil, fmt.Errorf("api: operation owners bucket: %w", err)
	}
	return s, nil
}

// sweep forgets owners older than the idempotency window (a client that
// has not looked at its operation in 24 h is not polling it any more).
func (s *ownerStore) sweep(b *bolt.Bucket) error { return sweepExpired(b, s.now()) }

// put records who started opID. It is in memory at once; the file gets
// it in a background commit unless wait is set (the answer is a 202 the
// client will poll, perhaps across a restart) — so a read answered at
// once costs no fsync here.
func (s *ownerStore) put(opID, token string, wait bool) error {
	s.mu.Lock()
	s.recent[opID] = token
	if len(s.recent) > 10000 { // the file has them; keep memory bounded
		for k := range s.recent {
			delete(s.recent, k)
			break
		}
	}
	sweep := s.now().Sub(s.lastSweep) >= sweepEvery
	if sweep {
		s.lastSweep = s.now()
	}
	s.mu.Unlock()
	v, _ := json.Marshal(ownerRecord{Token: token, Created: s.now()})
	write := func() error {
		return s.db.Batch(func(tx *bolt.Tx) error {
			b := tx.Bucket(ownerBucket)
			if sweep {
				if err := s.sweep(b); err != nil {
					return err
				}
			}
			return b.Put([]byte(opID), v)
		})
	}
	if wait {
		return write()
	}
	go func() { _ = write() }() // a lost write only hides the operation from its owner after a crash
	return nil
}

// owner returns who started opID ("" when unknown).
func (s *ownerStore) owner(opID string) string {
	s.mu.Lock()
	t, ok := s.recent[opID]
	s.mu.Unlock()
	if ok {
		return t
	}
	var r ownerRecord
	_ = s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(ownerBucket).Get([]byte(opID)); v != nil {
			_ = json.Unmarshal(v, &r)
		}
		return nil
	})
	return r.Token
}
