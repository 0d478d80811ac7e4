package psam

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"ssstation/cardapp/keys"
	hostpsam "ssstation/cardapp/keys/psam"
	"ssstation/pcsc/apdu"
)

// KeysTest is the "keys" value that loads every keys.TestKeys() entry.
const KeysTest = "test"

// DefaultSerial is the serial number of the built-in PSAM.
const DefaultSerial = "000000000001"

// Image describes a virtual PSAM, as read from JSON (docs/psam.md):
//
//	{"serial": "000000000001", "keys": "test"}
//	{"serial": "000000000002",
//	 "keys": [{"name": "rkssse", "algorithm": "3DES", "key": "<32 hex digits>"}],
//	 "key_table": {"keys": [{"name": "rkssse", "algorithm": "3DES", "usage": "31", "index": "01"}]}}
//
// Like engine.Image it is a description only: New builds a fresh,
// independent card from it each time.
type Image struct {
	Comment string `json:"comment,omitempty"`
	// Serial is the 6-byte serial number as 12 decimal (BCD) digits;
	// empty means DefaultSerial.
	Serial string `json:"serial,omitempty"`
	// Keys is "test" (every keys.TestKeys() entry) or a list of master keys.
	Keys Keys `json:"keys"`
	// KeyTable overrides the slot of each key (default: the host package's
	// psam.KeyTable); the host must use the same table.
	KeyTable hostpsam.Table `json:"key_table,omitempty"`
}

// Keys is the image's "keys": the test keys, or an explicit list.
type Keys struct {
	Test bool
	List []Key
}

// Key is one master key of an image. The key is in hex; the simulator
// holds such keys in plain memory, so images carry test keys only.
type Key struct {
	Name      keys.KeyName `json:"name"`
	Algorithm string       `json:"algorithm"`
	Key       string       `json:"key"`
}

// String never shows the key.
func (k Key) String() string { return fmt.Sprintf("%s/%s [key redacted]", k.Name, k.Algorithm) }

// MarshalJSON writes "test" or the list.
func (k Keys) MarshalJSON() ([]byte, error) {
	if k.Test {
		return json.Marshal(KeysTest)
	}
	if k.List == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(k.List)
}

// UnmarshalJSON reads "test" or a list of {name, algorithm, key}.
func (k *Keys) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s != KeysTest {
			return fmt.Errorf("keys: %q, want %q or a list of keys", s, KeysTest)
		}
		*k = Keys{Test: true}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var list []Key
	if err := dec.Decode(&list); err != nil {
		return errors.New(`keys: want "test" or a list of {"name", "algorithm", "key"} objects`)
	}
	*k = Keys{List: list}
	return nil
}

// BuiltinImage is the test PSAM: serial DefaultSerial, every test key,
// the default key table.
func BuiltinImage() *Image {
	return &Image{Serial: DefaultSerial, Keys: Keys{Test: true}}
}

// BuiltinImageJSON is BuiltinImage as indented JSON, for --print-image style output.
func BuiltinImageJSON() []byte {
	b, _ := json.MarshalIndent(BuiltinImage(), "", "  ")
	return append(b, '\n')
}

// ParseImage decodes an image; unknown fields are errors. The keys are
// checked by New.
func ParseImage(data []byte) (*Image, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var img Image
	if err := dec.Decode(&img); err != nil {
		return nil, fmt.Errorf("psam image: %w", err)
	}
	if dec.More() {
		return nil, errors.New("psam image: data after the JSON object")
	}
	return &img, nil
}

// LoadImage reads and decodes an image file.
func LoadImage(path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("psam image: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("psam image %s: %w", path, err)
	}
	img, err := ParseImage(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// slotKey is a master key in a PSAM slot.
type slotKey struct {
	id  keys.KeyID
	key []byte
}

type built struct {
	serial [hostpsam.SerialSize]byte
	table  hostpsam.Table
	slots  map[[2]byte]slotKey
}

func (img *Image) build() (*built, error) {
	b := &built{slots: map[[2]byte]slotKey{}}
	serial := strings.TrimSpace(img.Serial)
	if serial == "" {
		serial = DefaultSerial
	}
	if len(serial) != 2*hostpsam.SerialSize || strings.Trim(serial, "0123456789") != "" {
		return nil, fmt.Errorf("psam image: serial %q: want %d decimal digits", img.Serial, 2*hostpsam.SerialSize)
	}
	sn, err := apdu.ParseHex(serial) // decimal digits are their own BCD
	if err != nil {
		return nil, fmt.Errorf("psam image: serial: %w", err)
	}
	copy(b.serial[:], sn)

	b.table = hostpsam.KeyTable.Clone()
	if img.KeyTable != nil {
		if err := img.KeyTable.Validate(); err != nil {
			return nil, fmt.Errorf("psam image: key_table: %w", err)
		}
		b.table = img.KeyTable.Clone()
	}

	put := func(id keys.KeyID, key []byte) error {
		u, i, ok := b.table.Lookup(id.Name, id.Algorithm)
		if !ok {
			return fmt.Errorf("psam image: key %s has no slot in the key table", id)
		}
		if _, dup := b.slots[[2]byte{u, i}]; dup {
			return fmt.Errorf("psam image: key %s given twice", id)
		}
		b.slots[[2]byte{u, i}] = slotKey{id: id, key: key}
		return nil
	}
	switch {
	case img.Keys.Test && len(img.Keys.List) > 0:
		return nil, errors.New(`psam image: keys: "test" or a list, not both`)
	case img.Keys.Test:
		for _, e := range keys.TestKeys() {
			if _, _, ok := b.table.Lookup(e.Name, e.Algorithm); !ok {
				continue // a custom table may leave keys out
			}
			if err := put(e.ID(), e.Key); err != nil {
				return nil, err
			}
		}
	case len(img.Keys.List) == 0:
		return nil, errors.New(`psam image: keys: required ("test" or a list of keys)`)
	default:
		for n, k := range img.Keys.List {
			alg, err := keys.ParseAlgorithm(k.Algorithm)
			if err != nil {
				return nil, fmt.Errorf("psam image: keys[%d] (%s): %w", n, k.Name, err)
			}
			key, err := apdu.ParseHex(k.Key)
			if err != nil || len(key) != keys.KeySize {
				clear(key)
				// the error does not quote the key
				return nil, fmt.Errorf("psam image: keys[%d] (%s/%s): key: want %d hex digits", n, k.Name, alg, 2*keys.KeySize)
			}
			if err := put(keys.KeyID{Name: k.Name, Algorithm: alg}, key); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}
