package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	t.Setenv("SSSTATION_CONFIG", "")
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("an explicit missing file was accepted")
	}
	p := filepath.Join(dir, "station.json")
	os.WriteFile(p, []byte(`{"terminal_no": "410100813475", "device_no": "D1", "keys": {"provider": "psam", "psam_reader": "R 00 01"}}`), 0o644)
	c, err := Load(p)
	if err != nil || c.TerminalNo != "410100813475" || c.Keys.Provider != "psam" || c.DataDir != Default().DataDir {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := c.SoftwareKeys(); err == nil {
		t.Fatal("a PSAM configuration handed out software keys")
	}
	os.WriteFile(p, []byte(`{"terminal": "x"}`), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "terminal") {
		t.Fatalf("unknown field: %v", err)
	}
	t.Setenv("SSSTATION_CONFIG", filepath.Join(dir, "other.json"))
	if _, err := Load(""); err == nil {
		t.Fatal("SSSTATION_CONFIG naming a missing file was accepted")
	}
	c = Default()
	k, err := c.SoftwareKeys()
	if err != nil || !strings.Contains(k.(interface{ String() string }).String(), "TEST") {
		t.Fatalf("default keys: %v %v", k, err)
	}
	set, err := c.Profiles()
	if err != nil || len(set.List()) != 3 {
		t.Fatalf("profiles: %v", err)
	}
}
