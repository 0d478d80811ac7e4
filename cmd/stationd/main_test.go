package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ssstation/station/api"
	"ssstation/station/config"
	"ssstation/station/store"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "station.json")
	if err := os.WriteFile(path, []byte(body), 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

// token add prints the token once, keeps only its hash in the file, keeps
// every other setting and the file's mode, and the file still loads.
func TestTokenAdd(t *testing.T) {
	path := writeConfig(t, `{"terminal_no":"410100813475","device_no":"D1","keys":{"provider":"test"},"data_dir":"/tmp/x"}`)
	var out bytes.Buffer
	if code := run([]string{"token", "add", "--config", path, "--name", "desk-1", "--role", "counter", "--origin", "https://Counter.example.cn"}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("token add: exit %d", code)
	}
	tok := strings.TrimSpace(out.String())
	raw, _ := os.ReadFile(path)
	if tok == "" || strings.Contains(string(raw), tok) {
		t.Fatalf("the token is missing or stored in clear")
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("the rewritten file does not load: %v", err)
	}
	if cfg.TerminalNo != "410100813475" || cfg.Keys.Provider != "test" || len(cfg.Daemon.Tokens) != 1 {
		t.Fatalf("settings lost: %+v", cfg)
	}
	rec := cfg.Daemon.Tokens[0]
	if rec.Hash != api.HashToken(tok) || rec.Role != "counter" || rec.Origins[0] != "https://counter.example.cn" {
		t.Fatalf("record: %+v", rec)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode changed to %v", fi.Mode().Perm())
	}
	// The same name twice, an unknown role: usage errors, file unchanged.
	for _, args := range [][]string{
		{"token", "add", "--config", path, "--name", "desk-1", "--role", "bank"},
		{"token", "add", "--config", path, "--name", "desk-2", "--role", "root"},
	} {
		if code := run(args, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
			t.Fatalf("%v: exit %d, want 2", args, code)
		}
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, raw) {
		t.Fatal("a refused token add changed the file")
	}
}

// Flags win over the environment, which wins over the file.
func TestSettingsPrecedence(t *testing.T) {
	path := writeConfig(t, `{"terminal_no":"1","device_no":"d","data_dir":"/srv/data","daemon":{"listen":"127.0.0.1:1111","queue_size":2,"shutdown_grace":"5s","log_format":"console"}}`)
	s, err := loadSettings([]string{"--config", path}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if s.listen != "127.0.0.1:1111" || s.queue != 2 || s.grace != 5*time.Second || s.store != "/srv/data/station.db" || s.logFormat != "console" {
		t.Fatalf("file: %+v", s)
	}
	t.Setenv("STATIOND_LISTEN", "127.0.0.1:2222")
	t.Setenv("STATIOND_QUEUE_SIZE", "3")
	t.Setenv("STATIOND_DATA_DIR", "/env/data")
	s, err = loadSettings([]string{"--config", path}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if s.listen != "127.0.0.1:2222" || s.queue != 3 || s.store != "/env/data/station.db" {
		t.Fatalf("environment: %+v", s)
	}
	s, err = loadSettings([]string{"--config", path, "--listen", "127.0.0.1:3333", "--queue-size", "7", "--store", "/flag/s.db", "--log-format", "json"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if s.listen != "127.0.0.1:3333" || s.queue != 7 || s.store != "/flag/s.db" || s.logFormat != "json" {
		t.Fatalf("flags: %+v", s)
	}
	t.Setenv("STATIOND_QUEUE_SIZE", "zero")
	if _, err := loadSettings([]string{"--config", path}, &bytes.Buffer{}); err == nil {
		t.Fatal("a bad STATIOND_QUEUE_SIZE was accepted")
	}
}

// A store written by a newer station is refused with a clear message.
func TestNewerStoreRefused(t *testing.T) {
	dir := t.TempDir()
	storePath := filepath.Join(dir, "station.db")
	path := writeConfig(t, `{"terminal_no":"1","device_no":"d","data_dir":"`+dir+`","daemon":{"listen":"127.0.0.1:0"}}`)
	if err := store.SetSchemaVersionForTest(storePath, 99); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := run([]string{"serve", "--config", path}, &bytes.Buffer{}, &stderr); code != 1 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "newer station") {
		t.Fatalf("message: %s", stderr.String())
	}
}
