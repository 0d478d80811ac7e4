package cardapp_test

import (
	"os"
	"path/filepath"
	"strings"

	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
)

// keysOnlyV2 is a profile set that lacks the v1 profile.
func keysOnlyV2(set *profiles.Set) (*profiles.Set, error) {
	dir, err := os.MkdirTemp("", "profiles-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// LoadDir adds to the built-ins; an override with v1's name but
	// another ATR removes v1's ATR from the set.
	p, _ := set.Get("ss-v1-3des")
	b, err := os.ReadFile(filepath.Join("..", "firmware-profiles", p.SourceFile))
	if err != nil {
		return nil, err
	}
	s := string(b)
	s = replaceATR(s)
	if err := os.WriteFile(filepath.Join(dir, p.SourceFile), []byte(s), 0o644); err != nil {
		return nil, err
	}
	return profiles.LoadDir(dir)
}

// otherKeys are keys of another issuer: same names, other bytes.
func otherKeys() []keys.Entry {
	var out []keys.Entry
	for _, e := range keys.TestKeys() {
		k := append([]byte(nil), e.Key...)
		for i := range k {
			k[i] ^= 0x5A
		}
		out = append(out, keys.Entry{Name: e.Name, Algorithm: e.Algorithm, Key: k})
	}
	return out
}

// replaceATR gives the v1 profile an ATR no card here has.
func replaceATR(s string) string {
	return strings.Replace(s, `pattern: "3B 88 81 31 FE 45 53 53 43 31 33 44 45 53 90"`, `pattern: "3B 88 81 31 FE 45 58 58 58 58 58 58 58 58 83"`, 1)
}
