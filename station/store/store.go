// Package store opens the station's one bbolt file. The journal, the
// daemon's operations, the API's idempotency records and the audit trail
// all live in it, each in buckets of its own; this package owns only the
// file itself: its mode (0600), its lock, and its schema version.
//
// A file written by a newer station (a higher schema version) is refused
// with a clear message rather than half-read: an older binary must never
// rewrite records whose meaning it does not know.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout this station reads and writes.
const SchemaVersion = 1

// FileName is the store's file name inside the data directory.
const FileName = "station.db"

var (
	bucketStore = []byte("store")
	keySchema   = []byte("schema_version")
	keyCreated  = []byte("created")
)

// ErrNewerSchema is returned when the file was written by a newer station.
var ErrNewerSchema = errors.New("the store was written by a newer station version")

// ErrLocked is returned when another process holds the file.
var ErrLocked = errors.New("the store is in use by another process")

// Options tune Open.
type Options struct {
	// ReadOnly opens the file without taking the write lock (sscard audit):
	// it never creates or changes anything.
	ReadOnly bool
	// Timeout is how long to wait for the file lock (5 s when zero).
	Timeout time.Duration
}

// Store is the open file.
type Store struct {
	db      *bolt.DB
	path    string
	version int
}

// Open opens (or, unless read-only, creates) the store at path. The parent
// directory is created with mode 0700, the file with 0600; an existing file
// with wider permissions is narrowed to 0600.
func Open(path string, opt Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: empty path")
	}
	timeout := opt.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	if opt.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("store %s: %w", path, err)
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: opt.ReadOnly})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("store %s: %w (waited %s for the file lock)", path, ErrLocked, timeout)
		}
		return nil, fmt.Errorf("store %s: open: %w", path, err)
	}
	s := &Store{db: db, path: path}
	if err := s.init(opt.ReadOnly); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init(readOnly bool) error {
	if !readOnly {
		if fi, err := os.Stat(s.path); err != nil {
			return err
		} else if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(s.path, 0o600); err != nil {
				return fmt.Errorf("narrow permissions to 0600: %w", err)
			}
		}
	}
	check := func(b *bolt.Bucket) (bool, error) {
		if b == nil || b.Get(keySchema) == nil {
			return false, nil
		}
		v, err := strconv.Atoi(string(b.Get(keySchema)))
		if err != nil {
			return true, fmt.Errorf("unreadable schema version %q", b.Get(keySchema))
		}
		s.version = v
		if v > SchemaVersion {
			return true, fmt.Errorf("%w: its schema version is %d, this station reads up to %d; run the newer station or restore a backup",
				ErrNewerSchema, v, SchemaVersion)
		}
		return true, nil
	}
	if readOnly {
		return s.db.View(func(tx *bolt.Tx) error {
			found, err := check(tx.Bucket(bucketStore))
			if err == nil && !found {
				s.version = 0
			}
			return err
		})
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketStore)
		if err != nil {
			return err
		}
		found, err := check(b)
		if err != nil {
			return err
		}
		if !found || s.version < SchemaVersion {
			// Version 1 is the first layout: nothing to migrate yet.
			s.version = SchemaVersion
			if err := b.Put(keySchema, []byte(strconv.Itoa(SchemaVersion))); err != nil {
				return err
			}
			if b.Get(keyCreated) == nil {
				return b.Put(keyCreated, []byte(time.Now().UTC().Format(time.RFC3339)))
			}
		}
		return nil
	})
}

// DB is the open bbolt file, for the packages that keep buckets in it
// (journal, audit, the API's idempotency records, operations).
func (s *Store) DB() *bolt.DB { return s.db }

// Path is the file's path.
func (s *Store) Path() string { return s.path }

// Version is the file's schema version (0: a read-only file never
// initialised by a station).
func (s *Store) Version() int { return s.version }

// Writable reports whether a write transaction can be committed now (the
// readiness check).
func (s *Store) Writable() error {
	if s.db.IsReadOnly() {
		return errors.New("store opened read-only")
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStore)
		if b == nil {
			return errors.New("store bucket missing")
		}
		return b.Put([]byte("last_check"), []byte(time.Now().UTC().Format(time.RFC3339)))
	})
}

// SetSchemaVersionForTest writes v as the file's schema version (tests of
// the "newer file" refusal).
func SetSchemaVersionForTest(path string, v int) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketStore)
		if err != nil {
			return err
		}
		return b.Put(keySchema, []byte(strconv.Itoa(v)))
	})
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }
