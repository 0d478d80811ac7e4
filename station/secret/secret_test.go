package secret

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The secret is created once, 0600, and read back the same.
func TestLoadCreatesOnceAndKeeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != size {
		t.Fatalf("secret file: %v %v", fi, err)
	}
	k2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k1.MAC("d", []byte("x")) != k2.MAC("d", []byte("x")) {
		t.Fatal("a second load gives another secret")
	}
	if k1.MAC("d", []byte("x")) == k1.MAC("e", []byte("x")) {
		t.Fatal("domains do not separate")
	}
	if !k1.Equal("d", []byte("x"), k2.MAC("d", []byte("x"))) || k1.Equal("d", []byte("y"), k2.MAC("d", []byte("x"))) {
		t.Fatal("Equal")
	}
	if s := strings.ToLower(k1.String()); !strings.Contains(s, "secret") {
		t.Fatal(s)
	}
}

// A symlink, a readable file or a short file is refused.
func TestLoadRefusesUnsafeFiles(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	os.WriteFile(target, make([]byte, size), 0o600)
	link := filepath.Join(dir, "link")
	os.Mkdir(link, 0o700)
	os.Symlink(target, filepath.Join(link, FileName))
	if _, err := Load(link); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("symlink: %v", err)
	}
	wide := filepath.Join(dir, "wide")
	os.Mkdir(wide, 0o700)
	os.WriteFile(filepath.Join(wide, FileName), make([]byte, size), 0o644)
	os.Chmod(filepath.Join(wide, FileName), 0o644)
	if _, err := Load(wide); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("mode 0644: %v", err)
	}
	short := filepath.Join(dir, "short")
	os.Mkdir(short, 0o700)
	os.WriteFile(filepath.Join(short, FileName), make([]byte, 5), 0o600)
	if _, err := Load(short); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("short: %v", err)
	}
	if _, err := Load(""); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("empty dir: %v", err)
	}
}
