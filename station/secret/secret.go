// Package secret holds the station secret: 32 random bytes in a 0600 file
// in the data directory, created on first use. The journal keys its
// digests with it (HMAC-SHA256), so that a journal file read on its own
// tells nothing about the low-entropy data behind a digest: a holder's
// request, or a six-digit PIN waiting for a resumed activation.
//
// The secret is never written to the journal, a log or an error text. A
// symlink in its place is refused, and so is a file others can read.
package secret

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// FileName is the secret's file name in the data directory.
const FileName = "station.secret"

// size is the secret's length in bytes.
const size = 32

// ErrUnsafe: the secret file is a symlink, not a regular file, readable by
// others, or of the wrong size.
var ErrUnsafe = errors.New("station secret file is unsafe")

// Key is the loaded station secret.
type Key struct{ k []byte }

// String never shows the secret.
func (k *Key) String() string { return "station secret" }

// GoString never shows the secret.
func (k *Key) GoString() string { return "station secret" }

// MAC is the hex HMAC-SHA256 of data under the secret, separated by
// domain so that one kind of digest can never stand for another.
func (k *Key) MAC(domain string, data []byte) string {
	m := hmac.New(sha256.New, k.k)
	m.Write([]byte(domain))
	m.Write([]byte{0})
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil))
}

// Equal reports whether mac is the MAC of data, in constant time.
func (k *Key) Equal(domain string, data []byte, mac string) bool {
	return hmac.Equal([]byte(k.MAC(domain, data)), []byte(mac))
}

// Load reads the secret in dir, creating it (and dir, mode 0700) on first
// use. A symlink at the secret's path is refused (O_NOFOLLOW), and so is a
// file with group or other permissions or of the wrong size.
func Load(dir string) (*Key, error) {
	if dir == "" {
		return nil, fmt.Errorf("station secret: %w: no data directory", ErrUnsafe)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("station secret: %w", err)
	}
	path := filepath.Join(dir, FileName)
	k, err := read(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := create(path); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("station secret %s: create: %w", path, err)
		}
		k, err = read(path)
	}
	if err != nil {
		return nil, fmt.Errorf("station secret %s: %w", path, err)
	}
	return k, nil
}

func read(path string) (*Key, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%w: it is a symlink", ErrUnsafe)
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%w: not a regular file", ErrUnsafe)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("%w: mode %04o, want 0600", ErrUnsafe, fi.Mode().Perm())
	case fi.Size() != size:
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrUnsafe, fi.Size(), size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return &Key{k: b}, nil
}

// create writes a new secret into a temporary file, fsyncs it and links it
// into place: link fails when the name exists, so two processes starting
// at once keep the same secret, and nobody reads a half-written one.
func create(path string) error {
	var r [8]byte
	rand.Read(r[:]) // never fails (crypto/rand, Go 1.24+)
	tmp := fmt.Sprintf("%s.%x.tmp", path, r)
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &fs.PathError{Op: "create", Path: tmp, Err: err}
	}
	defer os.Remove(tmp)
	f := os.NewFile(uintptr(fd), tmp)
	b := make([]byte, size)
	rand.Read(b)
	_, err = f.Write(b)
	clear(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := unix.Link(tmp, path); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fs.ErrExist
		}
		return &fs.PathError{Op: "link", Path: path, Err: err}
	}
	return nil
}

// ForTest returns a key made from b, for tests of code that takes a Key.
func ForTest(b []byte) *Key { return &Key{k: append([]byte(nil), b...)} }
