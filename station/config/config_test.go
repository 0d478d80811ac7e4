package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ssstation/cardapp/keys"
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
	if _, err := c.HostKeys(); err == nil {
		t.Fatal("a PSAM configuration handed out host keys")
	}
	os.WriteFile(p, []byte(`{"terminal": "x"}`), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "terminal") {
		t.Fatalf("unknown field: %v", err)
	}
	t.Setenv("SSSTATION_CONFIG", filepath.Join(dir, "other.json"))
	if _, err := Load(""); err == nil {
		t.Fatal("SSSTATION_CONFIG naming a missing file was accepted")
	}
	set, err := Default().Profiles()
	if err != nil || len(set.List()) != 3 {
		t.Fatalf("profiles: %v", err)
	}
}

// No configuration means no key provider: never the published test keys.
func TestNoConfigMeansNoKeys(t *testing.T) {
	t.Setenv("SSSTATION_CONFIG", "")
	c := Default()
	k, err := c.HostKeys()
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(keys.Ready(k), keys.ErrNoProvider) || c.TestKeys() {
		t.Fatalf("default configuration has keys: %v", k)
	}
	p := filepath.Join(t.TempDir(), "station.json")
	os.WriteFile(p, []byte(`{"terminal_no": "1", "device_no": "D"}`), 0o644)
	if c, err = Load(p); err != nil {
		t.Fatal(err)
	}
	if k, _ := c.HostKeys(); !errors.Is(keys.Ready(k), keys.ErrNoProvider) {
		t.Fatalf("a configuration without keys has keys: %v", k)
	}
	// Test keys only when asked for by name, and then they say so.
	os.WriteFile(p, []byte(`{"terminal_no": "1", "device_no": "D", "keys": {"provider": "test"}}`), 0o644)
	if c, err = Load(p); err != nil || !c.TestKeys() {
		t.Fatal(err)
	}
	k, err = c.HostKeys()
	if err != nil || keys.Ready(k) != nil || !strings.Contains(k.(interface{ String() string }).String(), "TEST KEYS") {
		t.Fatalf("test keys: %v %v", k, err)
	}
	// A key file marked as test keys needs provider "test".
	kf := filepath.Join(t.TempDir(), "keys.json")
	if err := keys.WriteTestKeystoreFile(kf); err != nil {
		t.Fatal(err)
	}
	c = &Config{Keys: KeysConfig{Provider: ProviderSoftware, File: kf}}
	if _, err := c.HostKeys(); err == nil || !strings.Contains(err.Error(), `"provider": "test"`) {
		t.Fatalf("test key file under provider software: %v", err)
	}
	c = &Config{Keys: KeysConfig{Provider: ProviderTest, File: kf}}
	if k, err := c.HostKeys(); err != nil || keys.Ready(k) != nil {
		t.Fatalf("test key file under provider test: %v", err)
	}
}

func TestConfigRefusals(t *testing.T) {
	t.Setenv("SSSTATION_CONFIG", "")
	cases := []struct{ name, json, want string }{
		{"provider typo", `{"keys": {"provider": "sofware", "file": "k.json"}}`, `"sofware" is not a key provider: use "psam", "software", "test" or "none" (did you mean "software"?)`},
		{"provider typo psam", `{"keys": {"provider": "pasm", "psam_reader": "x"}}`, `did you mean "psam"?`},
		{"psam without reader", `{"keys": {"provider": "psam"}}`, `needs "psam_reader"`},
		{"software without file", `{"keys": {"provider": "software"}}`, `needs "file"`},
		{"reader without provider", `{"keys": {"psam_reader": "R"}}`, `no "provider"`},
		{"empty data_dir", `{"data_dir": ""}`, "data_dir is empty"},
		{"pipe in terminal_no", `{"terminal_no": "4101|0081"}`, "terminal_no contains '|'"},
		{"escape in device_no", `{"device_no": "D\u001b[31mRED"}`, "device_no contains a control character U+001B"},
		{"newline in device_no", `{"device_no": "D\n1"}`, "device_no contains a control character U+000A"},
		{"bidi override", `{"device_no": "D\u202e1"}`, "U+202E"},
		{"duplicate key", `{"device_no": "A", "device_no": "B"}`, `"device_no" appears twice`},
		{"trailing data", `{"device_no": "A"} {"device_no": "B"}`, "data after the end of the JSON document"},
		{"BOM", "\xEF\xBB\xBF{}", "byte order mark"},
		{"empty file", "", "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "station.json")
			os.WriteFile(p, []byte(c.json), 0o644)
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("err = %v, want %q and the path", err, c.want)
			}
		})
	}
}
