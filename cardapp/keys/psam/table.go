package psam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"ssstation/cardapp/keys"
	"ssstation/internal/strictjson"
)

// Entry maps one PSAM key slot, addressed by INIT FOR DESCRYPT's P1 (key
// usage code) and P2 (key index), to the logical key it holds.
type Entry struct {
	Name      keys.KeyName
	Algorithm keys.Algorithm
	Usage     byte // P1 of INIT FOR DESCRYPT
	Index     byte // P2 of INIT FOR DESCRYPT
}

// ID is the entry's (name, algorithm).
func (e Entry) ID() keys.KeyID { return keys.KeyID{Name: e.Name, Algorithm: e.Algorithm} }

func (e Entry) String() string {
	return fmt.Sprintf("%s -> usage %02X index %02X", e.ID(), e.Usage, e.Index)
}

// Table is a PSAM key table: which (usage, index) holds which (name,
// algorithm). A valid table (see [Table.Validate]) maps both ways one to one.
//
// Its JSON form, read by [ParseKeyTable] and [LoadKeyTable] and written by
// MarshalJSON, is an object with a "keys" array; usage and index are hex
// strings (two digits, an optional 0x prefix):
//
//	{
//	  "comment": "free text, ignored",
//	  "keys": [
//	    {"name": "rkssse", "algorithm": "3DES", "usage": "31", "index": "01"},
//	    {"name": "rkssse", "algorithm": "SM4",  "usage": "31", "index": "02"}
//	  ]
//	}
type Table []Entry

// Usage codes of the project-defined default table (docs/psam.md): one per
// key name. A real PSAM's issuer assigns its own; load them with
// [LoadKeyTable].
const (
	UsageInternalAuth byte = 0x30
	UsageRKSSSE       byte = 0x31
	UsageEFWrite      byte = 0x32
	UsagePINReload    byte = 0x33
	UsagePINUnblock   byte = 0x34
	UsageAppBlock     byte = 0x35
	UsageAppUnblock   byte = 0x36
	UsageCardBlock    byte = 0x37
	UsageFinalize     byte = 0x38
)

// Key indexes of the default table: the algorithm of the key under a usage code.
const (
	IndexTDES byte = 0x01
	IndexSM4  byte = 0x02
)

// KeyTable is the project-defined default key table: every
// [keys.KnownKeyNames] name on 3DES (index 01) and SM4 (index 02), with the
// usage codes above. The virtual PSAM (internal/cardsim/psam) and [New] use it
// unless told otherwise. Treat it as read-only: build a deployment's own
// table with [LoadKeyTable] or [ParseKeyTable] and pass it with
// [WithKeyTable].
var KeyTable = DefaultKeyTable()

// DefaultKeyTable returns a fresh copy of the default table ([KeyTable]'s
// initial value).
func DefaultKeyTable() Table {
	usage := map[keys.KeyName]byte{
		keys.KeyInternalAuth: UsageInternalAuth,
		keys.KeyRKSSSE:       UsageRKSSSE,
		keys.KeyEFWrite:      UsageEFWrite,
		keys.KeyPINReload:    UsagePINReload,
		keys.KeyPINUnblock:   UsagePINUnblock,
		keys.KeyAppBlock:     UsageAppBlock,
		keys.KeyAppUnblock:   UsageAppUnblock,
		keys.KeyCardBlock:    UsageCardBlock,
		keys.KeyFinalize:     UsageFinalize,
	}
	var t Table
	for _, alg := range []keys.Algorithm{keys.TDES, keys.SM4} {
		idx := IndexTDES
		if alg == keys.SM4 {
			idx = IndexSM4
		}
		for _, name := range keys.KnownKeyNames() {
			t = append(t, Entry{Name: name, Algorithm: alg, Usage: usage[name], Index: idx})
		}
	}
	return t
}

// Lookup finds (name, alg) in [KeyTable].
func Lookup(name keys.KeyName, alg keys.Algorithm) (usage, index byte, ok bool) {
	return KeyTable.Lookup(name, alg)
}

// Lookup returns the PSAM slot holding (name, alg).
func (t Table) Lookup(name keys.KeyName, alg keys.Algorithm) (usage, index byte, ok bool) {
	for _, e := range t {
		if e.Name == name && e.Algorithm == alg {
			return e.Usage, e.Index, true
		}
	}
	return 0, 0, false
}

// Key returns the logical key held in PSAM slot (usage, index).
func (t Table) Key(usage, index byte) (name keys.KeyName, alg keys.Algorithm, ok bool) {
	for _, e := range t {
		if e.Usage == usage && e.Index == index {
			return e.Name, e.Algorithm, true
		}
	}
	return "", "", false
}

// Clone returns an independent copy.
func (t Table) Clone() Table { return slices.Clone(t) }

// Validate checks that every entry names a known key ([keys.KnownKeyNames])
// on a supported algorithm, and that no (name, algorithm) and no (usage,
// index) appears twice. A table need not cover every key: a deployment
// whose PSAM lacks a key gets [keys.ErrKeyNotFound] when it is asked for.
func (t Table) Validate() error {
	if err := t.validate(); err != nil {
		return fmt.Errorf("psam: %w", err)
	}
	return nil
}

func (t Table) validate() error {
	if len(t) == 0 {
		return errors.New("key table is empty")
	}
	ids := map[keys.KeyID]int{}
	slots := map[[2]byte]int{}
	for i, e := range t {
		if !slices.Contains(keys.KnownKeyNames(), e.Name) {
			return fmt.Errorf("key table entry %d: unknown key name %q (known: %s)", i+1, e.Name, knownNames())
		}
		if !e.Algorithm.Valid() {
			return fmt.Errorf("key table entry %d (%s): %w %q", i+1, e.Name, keys.ErrUnknownAlgorithm, string(e.Algorithm))
		}
		if j, dup := ids[e.ID()]; dup {
			return fmt.Errorf("key table entries %d and %d both map %s", j, i+1, e.ID())
		}
		ids[e.ID()] = i + 1
		slot := [2]byte{e.Usage, e.Index}
		if j, dup := slots[slot]; dup {
			return fmt.Errorf("key table entries %d and %d both use usage %02X index %02X", j, i+1, e.Usage, e.Index)
		}
		slots[slot] = i + 1
	}
	return nil
}

func knownNames() string {
	var s []string
	for _, n := range keys.KnownKeyNames() {
		s = append(s, string(n))
	}
	return strings.Join(s, ", ")
}

// hexByte is a byte written in JSON as a two-digit hex string.
type hexByte byte

func (h hexByte) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf(`"%02X"`, byte(h))), nil
}

func (h *hexByte) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a hex string such as "31"`)
	}
	t := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X")
	if len(t) == 0 || len(t) > 2 {
		return fmt.Errorf("%q is not one byte in hex", s)
	}
	v, err := strconv.ParseUint(t, 16, 8)
	if err != nil {
		return fmt.Errorf("%q is not one byte in hex", s)
	}
	*h = hexByte(v)
	return nil
}

type fileEntry struct {
	Name      keys.KeyName `json:"name"`
	Algorithm string       `json:"algorithm"`
	Usage     *hexByte     `json:"usage"`
	Index     *hexByte     `json:"index"`
}

type tableFile struct {
	Comment string      `json:"comment,omitempty"`
	Keys    []fileEntry `json:"keys"`
}

// MarshalJSON writes the table in the form [ParseKeyTable] reads.
func (t Table) MarshalJSON() ([]byte, error) {
	f := tableFile{Keys: make([]fileEntry, 0, len(t))}
	for _, e := range t {
		u, i := hexByte(e.Usage), hexByte(e.Index)
		f.Keys = append(f.Keys, fileEntry{Name: e.Name, Algorithm: string(e.Algorithm), Usage: &u, Index: &i})
	}
	return json.Marshal(f)
}

// UnmarshalJSON reads the documented form (unknown fields are errors) and
// validates the result.
func (t *Table) UnmarshalJSON(b []byte) error {
	out, err := parseTable(b)
	if err != nil {
		return fmt.Errorf("psam: %w", err)
	}
	*t = out
	return nil
}

func parseTable(b []byte) (Table, error) {
	// Strict: one document, no key twice (a second "usage" would silently
	// win), no unknown field.
	var f tableFile
	if err := strictjson.Decode(b, &f); err != nil {
		return nil, fmt.Errorf("key table: %w", err)
	}
	out := make(Table, 0, len(f.Keys))
	for i, fe := range f.Keys {
		alg, err := keys.ParseAlgorithm(fe.Algorithm)
		if err != nil {
			return nil, fmt.Errorf("key table entry %d (%s): %w", i+1, fe.Name, err)
		}
		if fe.Usage == nil || fe.Index == nil {
			return nil, fmt.Errorf("key table entry %d (%s): usage and index are required", i+1, fe.Name)
		}
		out = append(out, Entry{Name: fe.Name, Algorithm: alg, Usage: byte(*fe.Usage), Index: byte(*fe.Index)})
	}
	if err := out.validate(); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseKeyTable decodes and validates a key table in its JSON form (see [Table]).
func ParseKeyTable(data []byte) (Table, error) {
	t, err := parseTable(data)
	if err != nil {
		return nil, fmt.Errorf("psam: %w", err)
	}
	return t, nil
}

// maxTableFile bounds what LoadKeyTable reads.
const maxTableFile = 1 << 20

// LoadKeyTable reads a key table file (JSON, see [Table]). The table holds
// no secrets: it only says where the PSAM keeps which key.
func LoadKeyTable(path string) (Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("psam: key table: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTableFile+1))
	if err != nil {
		return nil, fmt.Errorf("psam: key table %s: %w", path, err)
	}
	if len(b) > maxTableFile {
		return nil, fmt.Errorf("psam: key table %s is larger than %d bytes", path, maxTableFile)
	}
	t, err := parseTable(b)
	if err != nil {
		return nil, fmt.Errorf("psam: %s: %w", path, err)
	}
	return t, nil
}
