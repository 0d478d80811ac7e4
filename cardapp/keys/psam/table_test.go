package psam_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ssstation/cardapp/keys"
	"ssstation/cardapp/keys/psam"
)

func TestDefaultKeyTable(t *testing.T) {
	if err := psam.KeyTable.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(psam.KeyTable) != 2*len(keys.KnownKeyNames()) {
		t.Fatalf("%d entries", len(psam.KeyTable))
	}
	usageOf := map[keys.KeyName]byte{}
	for _, name := range keys.KnownKeyNames() {
		u3, i3, ok3 := psam.Lookup(name, keys.TDES)
		u4, i4, ok4 := psam.Lookup(name, keys.SM4)
		if !ok3 || !ok4 || u3 != u4 || i3 != psam.IndexTDES || i4 != psam.IndexSM4 {
			t.Fatalf("%s: 3DES %02X/%02X %v, SM4 %02X/%02X %v", name, u3, i3, ok3, u4, i4, ok4)
		}
		for other, u := range usageOf {
			if u == u3 {
				t.Fatalf("%s and %s share usage %02X", name, other, u)
			}
		}
		usageOf[name] = u3
		n, a, ok := psam.KeyTable.Key(u3, i4)
		if !ok || n != name || a != keys.SM4 {
			t.Fatalf("reverse lookup of %02X/%02X: %s %s %v", u3, i4, n, a, ok)
		}
	}
	// The documented codes.
	for name, want := range map[keys.KeyName]byte{
		keys.KeyInternalAuth: 0x30, keys.KeyRKSSSE: 0x31, keys.KeyEFWrite: 0x32,
		keys.KeyPINReload: 0x33, keys.KeyPINUnblock: 0x34, keys.KeyAppBlock: 0x35,
		keys.KeyAppUnblock: 0x36, keys.KeyCardBlock: 0x37, keys.KeyFinalize: 0x38,
	} {
		if usageOf[name] != want {
			t.Errorf("%s: usage %02X, want %02X", name, usageOf[name], want)
		}
	}
	if _, _, ok := psam.Lookup("master", keys.TDES); ok {
		t.Fatal("unknown name found")
	}
	if _, _, ok := psam.KeyTable.Key(0x30, 0x03); ok {
		t.Fatal("unknown slot found")
	}
}

func TestKeyTableJSON(t *testing.T) {
	b, err := json.Marshal(psam.KeyTable)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `{"name":"rkssse","algorithm":"3DES","usage":"31","index":"01"}`) {
		t.Fatalf("JSON form: %s", b)
	}
	back, err := psam.ParseKeyTable(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(psam.KeyTable) {
		t.Fatalf("round trip: %d entries", len(back))
	}
	for i := range back {
		if back[i] != psam.KeyTable[i] {
			t.Fatalf("round trip entry %d: %v != %v", i, back[i], psam.KeyTable[i])
		}
	}

	p := filepath.Join(t.TempDir(), "psam-keys.json")
	os.WriteFile(p, []byte(`{
		"comment": "site PSAM",
		"keys": [
			{"name": "rkssse", "algorithm": "tdes", "usage": "0x0A", "index": "1"},
			{"name": "ef-write", "algorithm": "SM4", "usage": "0b", "index": "02"}
		]}`), 0o644)
	tab, err := psam.LoadKeyTable(p)
	if err != nil {
		t.Fatal(err)
	}
	if u, i, ok := tab.Lookup(keys.KeyRKSSSE, keys.TDES); !ok || u != 0x0A || i != 0x01 {
		t.Fatalf("loaded: %v", tab)
	}
	if _, _, ok := tab.Lookup(keys.KeyRKSSSE, keys.SM4); ok {
		t.Fatal("a key the file does not map was found")
	}
	if _, err := psam.LoadKeyTable(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestKeyTableErrors(t *testing.T) {
	for name, js := range map[string]string{
		"empty":           `{"keys": []}`,
		"not an object":   `[{"name": "rkssse"}]`,
		"unknown field":   `{"keys": [{"name": "rkssse", "algorithm": "3DES", "usage": "31", "index": "01", "key": "00"}]}`,
		"unknown name":    `{"keys": [{"name": "master", "algorithm": "3DES", "usage": "31", "index": "01"}]}`,
		"bad algorithm":   `{"keys": [{"name": "rkssse", "algorithm": "AES", "usage": "31", "index": "01"}]}`,
		"number usage":    `{"keys": [{"name": "rkssse", "algorithm": "3DES", "usage": 49, "index": "01"}]}`,
		"two-byte usage":  `{"keys": [{"name": "rkssse", "algorithm": "3DES", "usage": "0131", "index": "01"}]}`,
		"non-hex index":   `{"keys": [{"name": "rkssse", "algorithm": "3DES", "usage": "31", "index": "g1"}]}`,
		"missing index":   `{"keys": [{"name": "rkssse", "algorithm": "3DES", "usage": "31"}]}`,
		"duplicate key":   `{"keys": [{"name": "rkssse", "algorithm": "3DES", "usage": "31", "index": "01"}, {"name": "rkssse", "algorithm": "3DES", "usage": "32", "index": "01"}]}`,
		"duplicate slot":  `{"keys": [{"name": "rkssse", "algorithm": "3DES", "usage": "31", "index": "01"}, {"name": "ef-write", "algorithm": "SM4", "usage": "31", "index": "01"}]}`,
		"usage twice":     `{"keys": [{"name": "rkssse", "algorithm": "3DES", "usage": "31", "usage": "32", "index": "01"}]}`,
		"trailing object": `{"keys": [{"name": "rkssse", "algorithm": "3DES", "usage": "31", "index": "01"}]} {"keys": []}`,
	} {
		if _, err := psam.ParseKeyTable([]byte(js)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.HasPrefix(err.Error(), "psam: ") {
			t.Errorf("%s: error %q lacks the package prefix", name, err)
		}
	}
	bad := psam.Table{{Name: keys.KeyRKSSSE, Algorithm: keys.TDES, Usage: 1, Index: 1}, {Name: keys.KeyEFWrite, Algorithm: keys.TDES, Usage: 1, Index: 1}}
	if err := bad.Validate(); err == nil {
		t.Fatal("duplicate slot validated")
	}
}
