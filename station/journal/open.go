package journal

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DefaultTimeout is how long Open waits for the file lock.
const DefaultTimeout = 2 * time.Second

// DefaultRetention is how long a finished entry (done, failed, abandoned)
// is kept after its last update: 90 days, long enough for a complaint
// about a card issued last quarter, short enough that the file stays small.
const DefaultRetention = 90 * 24 * time.Hour

// Options tune OpenWith, OpenReadOnly and OpenDB.
type Options struct {
	// Timeout is how long to wait for the file lock (DefaultTimeout when
	// zero). A negative Timeout fails at once when the file is locked.
	Timeout time.Duration
	// Retention: finished entries last updated longer ago than this are
	// deleted when the journal is opened for writing. Zero means
	// DefaultRetention; a negative value keeps every entry for ever.
	// Unfinished entries are never pruned.
	Retention time.Duration
	// Now is the journal's clock (time.Now when nil).
	Now func() time.Time
}

var (
	bucketJournal = []byte("journal") // holds the three below
	bucketOps     = []byte("ops")
	bucketByCard  = []byte("by-card")
	bucketMeta    = []byte("meta")
	keyVersion    = []byte("version")
)

// formatVer is the format of the entries: 2 added step IDs, attempt
// tokens and the PIN check; a version 1 entry reads as version 2 (a step
// without an ID takes its name as ID).
const formatVer = "2"

// Store is an open journal. It is safe for concurrent use: bbolt
// serialises the writing transactions.
type Store struct {
	// Now is the journal's clock (Options.Now, or time.Now when nil).
	Now func() time.Time

	db       *bolt.DB
	path     string
	ownsDB   bool
	readOnly bool
}

// Open opens or creates the journal at path with the default options.
func Open(path string) (*Store, error) { return OpenWith(path, Options{}) }

// OpenWith opens or creates the journal at path, for writing. The parent
// directory is created with mode 0700 and the file with mode 0600 (an
// existing file with wider permissions is narrowed to 0600). A symlink at
// path is refused (ErrUnsafePath). An existing file is checked first, read
// only (every page reached, bbolt's consistency check): a damaged file is
// an error wrapping ErrDamaged, never a panic. When another process holds
// the file, OpenWith waits opt.Timeout and returns an error wrapping
// ErrLocked. Finished entries older than the retention are pruned.
func OpenWith(path string, opt Options) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty journal path", ErrInvalid)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal: create directory: %w", err)
	}
	exists, err := checkPath(path)
	if err != nil {
		return nil, err
	}
	if exists {
		if err := CheckFile(path, opt); err != nil {
			return nil, err
		}
	}
	db, err := safeOpen(path, &bolt.Options{Timeout: timeoutOf(opt), OpenFile: openNoFollow})
	if err != nil {
		return nil, openError(path, err, opt)
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
	s := &Store{Now: opt.Now, db: db, path: path, ownsDB: true}
	if err := s.init(opt, true); err != nil {
		return fail(fmt.Errorf("journal %s: %w", path, err))
	}
	return s, nil
}

// OpenReadOnly opens an existing journal for reading only: it creates
// nothing (no directory, no file: a missing file is an error wrapping
// fs.ErrNotExist), writes nothing, prunes nothing, and shares the file
// with other readers. Every write method fails on it. The file is checked
// as in OpenWith.
func OpenReadOnly(path string, opt Options) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty journal path", ErrInvalid)
	}
	exists, err := checkPath(path)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("journal %s: %w", path, fs.ErrNotExist)
	}
	if err := CheckFile(path, opt); err != nil {
		return nil, err
	}
	db, err := safeOpen(path, &bolt.Options{Timeout: timeoutOf(opt), ReadOnly: true, OpenFile: openNoFollow})
	if err != nil {
		return nil, openError(path, err, opt)
	}
	return &Store{Now: opt.Now, db: db, path: path, ownsDB: true, readOnly: true}, nil
}

// OpenDB keeps the journal in a bbolt database the caller has open and
// shares with other stores (the daemon keeps its journal, operations,
// idempotency keys and audit in one file). The journal uses only its own
// top-level bucket "journal" and creates it when missing; Close leaves db
// open. Checking the file before bolt.Open is the caller's part (CheckFile
// does it). Finished entries older than the retention are pruned unless db
// is read-only.
func OpenDB(db *bolt.DB, opt Options) (s *Store, err error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil database", ErrInvalid)
	}
	s = &Store{Now: opt.Now, db: db, path: db.Path(), readOnly: db.IsReadOnly()}
	if !s.readOnly {
		if err := s.init(opt, false); err != nil {
			return nil, fmt.Errorf("journal %s: %w", s.path, err)
		}
	}
	return s, nil
}

// Path returns the journal file's path.
func (s *Store) Path() string { return s.path }

// Close closes the journal (and its file, unless it came from OpenDB).
// Entries not finished stay as they are (running or interrupted) and are
// found again after the next Open.
func (s *Store) Close() error {
	if !s.ownsDB {
		return nil
	}
	return s.db.Close()
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// init creates the journal's buckets (moving those of a version 1 file,
// kept at the top level, into the journal bucket when migrate is set),
// checks the format version and prunes old finished entries.
func (s *Store) init(opt Options, migrate bool) error {
	// Under guard: a damaged freelist that reading cannot reveal panics
	// in bbolt's commit (FuzzOpenFile found one).
	err := guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			if migrate && tx.Bucket(bucketJournal) == nil && tx.Bucket(bucketOps) != nil {
				if err := moveTopLevel(tx); err != nil {
					return fmt.Errorf("move version 1 buckets: %w", err)
				}
			}
			j, err := tx.CreateBucketIfNotExists(bucketJournal)
			if err != nil {
				return err
			}
			meta, err := j.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			switch v := meta.Get(keyVersion); {
			case v == nil, string(v) == "1":
				if err := meta.Put(keyVersion, []byte(formatVer)); err != nil {
					return err
				}
			case string(v) != formatVer:
				if n, err := strconv.Atoi(string(v)); err != nil || n < 1 {
					return fmt.Errorf("%w: journal format version %q", ErrDamaged, v)
				}
				return fmt.Errorf("journal format version %q, this station reads %q: a newer station wrote it", v, formatVer)
			}
			if _, err := j.CreateBucketIfNotExists(bucketOps); err != nil {
				return err
			}
			_, err = j.CreateBucketIfNotExists(bucketByCard)
			return err
		})
	})
	if errors.Is(err, berrors.ErrIncompatibleValue) {
		// A value where the journal keeps a bucket: not a journal file.
		err = fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if err != nil {
		return err
	}
	keep := opt.Retention
	if keep == 0 {
		keep = DefaultRetention
	}
	if keep > 0 {
		if _, err := s.Prune(s.now().Add(-keep)); err != nil {
			return err
		}
	}
	return nil
}

// moveTopLevel moves a version 1 file's buckets under the journal bucket.
func moveTopLevel(tx *bolt.Tx) error {
	j, err := tx.CreateBucket(bucketJournal)
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketOps, bucketByCard, bucketMeta} {
		old := tx.Bucket(name)
		if old == nil {
			continue
		}
		nb, err := j.CreateBucket(name)
		if err != nil {
			return err
		}
		if err := old.ForEach(func(k, v []byte) error { return nb.Put(k, v) }); err != nil {
			return err
		}
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
	}
	return nil
}

func timeoutOf(opt Options) time.Duration {
	switch t := opt.Timeout; {
	case t == 0:
		return DefaultTimeout
	case t < 0:
		return time.Nanosecond
	default:
		return t
	}
}

func openError(path string, err error, opt Options) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("journal %s: %w (waited %s for the file lock)", path, ErrLocked, timeoutOf(opt))
	case errors.Is(err, ErrDamaged), errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum):
		return fmt.Errorf("journal %s: %w: %w", path, ErrDamaged, err)
	case errors.Is(err, syscall.ELOOP):
		return fmt.Errorf("journal %s: %w", path, ErrUnsafePath)
	}
	return fmt.Errorf("journal %s: open: %w", path, err)
}

// checkPath refuses a symlink (or anything but a regular file) at path and
// reports whether a file is there.
func checkPath(path string) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("journal %s: %w", path, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return false, fmt.Errorf("journal %s: %w", path, ErrUnsafePath)
	case !fi.Mode().IsRegular():
		return false, fmt.Errorf("journal %s: %w: not a regular file", path, ErrUnsafePath)
	}
	return true, nil
}

// openNoFollow is bbolt's file opener with O_NOFOLLOW: a symlink put in
// place after checkPath is refused too.
func openNoFollow(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag|syscall.O_NOFOLLOW, perm)
}

// safeOpen is bolt.Open with its panics (a bad freelist page) and memory
// faults (a truncated file's pages) turned into an error wrapping
// ErrDamaged.
func safeOpen(path string, o *bolt.Options) (db *bolt.DB, err error) {
	err = guard(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, o)
		return err
	})
	return db, err
}

// guard runs fn on its own goroutine with memory faults turned into
// panics, and a panic into an error wrapping ErrDamaged.
func guard(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true)
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("%w: %v", ErrDamaged, p)
			}
		}()
		done <- fn()
	}()
	return <-done
}

// touched keeps touch's results alive, so the reads are not optimized away.
var touched atomic.Uint32

// touch reads every byte of b.
func touch(b []byte) (sum byte) {
	for _, c := range b {
		sum += c
	}
	return sum
}

// CheckFile checks a journal (or any bbolt) file without changing it: it
// opens it read only, checks the page structure over the file's bytes
// (checkStructure: no cycle, no page out of bounds, a sound freelist),
// then reaches every key of every bucket through bbolt with every key and
// value checked against the file, all on a goroutine where a panic or a
// memory fault becomes an error wrapping ErrDamaged. A missing file is not an
// error. A file held by a writer waits opt.Timeout (ErrLocked).
func CheckFile(path string, opt Options) error {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var db *bolt.DB
	err := guard(func() error {
		var err error
		// Read only, bbolt reads the meta pages and nothing else until a
		// transaction walks the tree; the freelist it does not read at
		// all. checkStructure checks every page, the freelist included,
		// before anything here lets bbolt follow a page id (a freelist
		// loaded first, as PreLoadFreelist did, could allocate without
		// bound before any check).
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeoutOf(opt), ReadOnly: true, OpenFile: openNoFollow})
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		return db.View(func(tx *bolt.Tx) error {
			ps := db.Info().PageSize
			if err := checkStructure(path, boltView{pageSize: ps, txid: uint64(tx.ID()),
				pgid: uint64(tx.Size()) / uint64(ps), root: uint64(tx.Cursor().Bucket().Root())}); err != nil {
				return err
			}
			// The mapped bytes that hold data: the pages the meta page
			// claims, and no further than the file really goes.
			base, size := db.Info().Data, min(tx.Size(), fi.Size())
			in := func(b []byte) bool {
				if len(b) == 0 {
					return true
				}
				p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
				return p >= base && p-base <= uintptr(size) && uintptr(len(b)) <= uintptr(size)-(p-base)
			}
			// Not tx.Check: it walks the pages on a goroutine of its own,
			// where bbolt's page assertions panic out of reach of any
			// recover (FuzzOpenFile found such a file). walk reaches the
			// same pages through cursors, here, under guard.
			return walk(tx.Cursor(), func(name []byte) *bolt.Bucket { return tx.Bucket(name) }, in, 0)
		})
	})
	if db != nil {
		db.Close()
	}
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return openError(path, err, opt)
		}
		if !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrUnsafePath) && !errors.Is(err, fs.ErrPermission) {
			err = fmt.Errorf("%w: %w", ErrDamaged, err)
		}
		return openError(path, err, opt)
	}
	return nil
}

// walk reaches every key of every bucket below a cursor, and checks that
// every key and value lies inside the file: a leaf element whose size
// field points past the file passes tx.Check, and reading it later faults
// or reads foreign memory, depending on what happens to be mapped there
// (FuzzOpenFile found such files). in is that bounds check.
func walk(c *bolt.Cursor, bucket func([]byte) *bolt.Bucket, in func([]byte) bool, depth int) error {
	if depth > 8 {
		return fmt.Errorf("%w: buckets nested too deep", ErrDamaged)
	}
	var prev []byte
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if !in(k) || !in(v) {
			return fmt.Errorf("%w: a key or value points outside the file", ErrDamaged)
		}
		// Keys out of order: a listing finds entries a lookup cannot.
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("%w: keys out of order", ErrDamaged)
		}
		prev = k
		touched.Add(uint32(touch(k)) + uint32(touch(v)))
		if v != nil {
			continue
		}
		b := bucket(k)
		if b == nil {
			continue
		}
		inB := in
		if b.Root() == 0 {
			// An inline bucket: bbolt reads it from a copy of its value,
			// not from the mapping. bbolt inlines only buckets smaller than
			// a quarter page, and pages are at most 64 KiB: a key or value
			// beyond that is a damaged size field.
			inB = func(x []byte) bool { return len(x) <= 64<<10 }
		}
		if err := walk(b.Cursor(), func(name []byte) *bolt.Bucket { return b.Bucket(name) }, inB, depth+1); err != nil {
			return err
		}
	}
	return nil
}
