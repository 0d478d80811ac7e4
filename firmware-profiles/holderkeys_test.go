package profiles_test

import (
	"testing"

	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
)

// The holder key names of the built-in profiles are key names the key
// holder (cardapp/keys) knows.
func TestHolderKeysKnownToKeystore(t *testing.T) {
	known := map[string]bool{}
	for _, k := range keys.KnownKeyNames() {
		known[string(k)] = true
	}
	s, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s.List() {
		for _, h := range p.Crypto.HolderKeys {
			if !known[h.Name] {
				t.Errorf("%s: holder key %q is not a cardapp/keys KeyName", p.Name, h.Name)
			}
		}
	}
}
