package pcsctest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLockRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "ssstation-vpcd-1.lock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if l, ok, err := tryLock(link); err == nil || ok || l != nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("tryLock on a symlink: %v %v %v, want refused", l, ok, err)
	}
	// A dangling symlink must not create its target either.
	dangling := filepath.Join(dir, "ssstation-vpcd-2.lock")
	if err := os.Symlink(filepath.Join(dir, "created"), dangling); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tryLock(dangling); err == nil {
		t.Fatal("tryLock on a dangling symlink succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "created")); !os.IsNotExist(err) {
		t.Fatalf("the symlink's target was created: %v", err)
	}
}

func TestLockIsExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssstation-vpcd-3.lock")
	l, ok, err := tryLock(path)
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok, err := tryLock(path); err != nil || ok {
		t.Fatalf("second lock while held: %v %v, want not taken", ok, err)
	}
	l.unlock()
	l2, ok, err := tryLock(path)
	if err != nil || !ok {
		t.Fatalf("lock after unlock: %v %v", ok, err)
	}
	l2.unlock()
}
