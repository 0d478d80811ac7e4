//go:build !windows

package keys

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A key file in a directory group or others can write could be swapped for
// someone else's keys: refused, naming the directory.
func TestKeyFileInWritableDirectoryRefused(t *testing.T) {
	content := `{"keys": {"rkssse": {"algorithm": "3DES", "key": "` + secretHex + `"}}}`
	for _, mode := range []os.FileMode{0o777, 0o770, 0o757, 0o1777} {
		dir := t.TempDir()
		p := filepath.Join(dir, "keys.json")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadSoftwareKeystore(p)
		if err == nil || !strings.Contains(err.Error(), "directory "+dir) {
			t.Errorf("directory mode %v: err = %v", mode, err)
		}
		os.Chmod(dir, 0o700)
	}
}

// A key file owned by another account is refused (it needs root to set up:
// only root can give a file away).
func TestKeyFileOwnedByAnotherUserRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	content := `{"keys": {"rkssse": {"algorithm": "3DES", "key": "` + secretHex + `"}}}`
	dir := t.TempDir()
	p := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSoftwareKeystore(p); err == nil || !strings.Contains(err.Error(), "uid 4242") {
		t.Fatalf("file owned by uid 4242: err = %v", err)
	}
	os.Chown(p, 0, 0)
	if err := os.Chown(dir, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSoftwareKeystore(p); err == nil || !strings.Contains(err.Error(), "uid 4242") {
		t.Fatalf("directory owned by uid 4242: err = %v", err)
	}
	os.Chown(dir, 0, 0)
	ks, err := LoadSoftwareKeystore(p)
	if err != nil {
		t.Fatalf("root's own file refused: %v", err)
	}
	ks.Close()
}

func TestNoProvider(t *testing.T) {
	if !errors.Is(Ready(nil), ErrNoProvider) || !errors.Is(Ready(None), ErrNoProvider) {
		t.Fatal("nil or None provider reported ready")
	}
	if err := Ready(NewTestKeystore()); err != nil {
		t.Fatal(err)
	}
	if _, err := None.Encrypt(context.Background(), Request{}, nil); !errors.Is(err, ErrNoProvider) {
		t.Fatal(err)
	}
	if _, err := None.MAC(context.Background(), Request{}, nil, nil); !errors.Is(err, ErrNoProvider) {
		t.Fatal(err)
	}
}
