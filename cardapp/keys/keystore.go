package keys

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Entry is one master key handed to [NewSoftwareKeystore] or returned by
// [TestKeys]. Its String, Format (every fmt verb, including %x and %#v),
// MarshalJSON and LogValue forms never show Key.
type Entry struct {
	Name      KeyName
	Algorithm Algorithm
	Key       []byte
}

// ID returns the entry's (name, algorithm).
func (e Entry) ID() KeyID { return KeyID{Name: e.Name, Algorithm: e.Algorithm} }

// String describes the entry without its key bytes.
func (e Entry) String() string {
	return fmt.Sprintf("keys.Entry{%s, %d-byte key [redacted]}", e.ID(), len(e.Key))
}

// Format prints [Entry.String] for every verb, so %x, %v, %+v and %#v cannot
// leak the key.
func (e Entry) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, e.String()) }

// MarshalJSON writes the entry with the key redacted.
func (e Entry) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name      KeyName   `json:"name"`
		Algorithm Algorithm `json:"algorithm"`
		Key       string    `json:"key"`
	}{e.Name, e.Algorithm, "[redacted]"})
}

// LogValue gives log/slog the redacted form.
func (e Entry) LogValue() slog.Value { return slog.StringValue(e.String()) }

// ---------------------------------------------------------------------------
// Test keys

// testKeyLabel is the ASCII pattern every built-in test key is derived from.
const testKeyLabel = "TEST KEY -- NOT FOR PRODUCTION"

// testKeyBytes derives the built-in test master key for (name, alg):
// the first 16 bytes of SHA-256("TEST KEY -- NOT FOR PRODUCTION|<alg>|<name>"),
// with DES odd parity set on 3DES keys (so cards that check parity accept
// them). The values are pinned in keys_test.go; they must never change, or
// demo cards personalized with them stop working.
func testKeyBytes(name KeyName, alg Algorithm) []byte {
	sum := sha256.Sum256([]byte(testKeyLabel + "|" + string(alg) + "|" + string(name)))
	key := append([]byte(nil), sum[:KeySize]...)
	if alg == TDES {
		setOddParity(key)
	}
	return key
}

// setOddParity sets the low bit of each byte so the byte has odd parity.
func setOddParity(key []byte) {
	for i, b := range key {
		b &^= 1
		ones := 0
		for x := b; x != 0; x &= x - 1 {
			ones++
		}
		if ones%2 == 0 {
			b |= 1
		}
		key[i] = b
	}
}

// TestKeys returns fresh copies of the built-in TEST master keys: one per
// [KnownKeyNames] name on each algorithm (3DES and SM4), in a fixed order.
// They are public (derived from "TEST KEY -- NOT FOR PRODUCTION") and exist
// for the virtual card, demos and tests only.
func TestKeys() []Entry {
	var out []Entry
	for _, alg := range []Algorithm{TDES, SM4} {
		for _, name := range KnownKeyNames() {
			out = append(out, Entry{Name: name, Algorithm: alg, Key: testKeyBytes(name, alg)})
		}
	}
	return out
}

// TestKey returns a fresh copy of the built-in test master key for (name,
// alg), or a [*KeyNotFoundError] for a name outside [KnownKeyNames].
func TestKey(name KeyName, alg Algorithm) ([]byte, error) {
	if err := checkAlg(alg); err != nil {
		return nil, err
	}
	if !slices.Contains(KnownKeyNames(), name) {
		return nil, &KeyNotFoundError{Key: name, Algorithm: alg}
	}
	return testKeyBytes(name, alg), nil
}

// isTestKey reports whether key equals the built-in test key for id.
func isTestKey(id KeyID, key []byte) bool {
	if !slices.Contains(KnownKeyNames(), id.Name) || !id.Algorithm.Valid() {
		return false
	}
	t := testKeyBytes(id.Name, id.Algorithm)
	defer clear(t)
	return subtle.ConstantTimeCompare(t, key) == 1
}

// KeyCheckValue returns the conventional key check value: the leftmost 3
// bytes of the ECB encryption of one all-zero block. It reveals nothing
// useful about the key and is what key ceremonies print for comparison.
func KeyCheckValue(alg Algorithm, key []byte) ([]byte, error) {
	c, err := EncryptECB(alg, key, make([]byte, alg.BlockSize()))
	if err != nil {
		return nil, err
	}
	return c[:3], nil
}

// ---------------------------------------------------------------------------
// SoftwareKeystore

// SoftwareKeystore is a [Provider] holding master keys in process memory,
// keyed by (name, algorithm). It is safe for concurrent use. Close zeroes the
// keys (best effort: Go may have copied bytes elsewhere, e.g. while reading
// the file).
type SoftwareKeystore struct {
	mu     sync.RWMutex
	keys   map[KeyID][]byte
	test   bool
	source string
	closed bool
}

var _ Provider = (*SoftwareKeystore)(nil)

// NewSoftwareKeystore returns a keystore over copies of entries. source is a
// label for String and errors (e.g. a file path). Each key must be 16 bytes
// on a known algorithm, and each (name, algorithm) may appear once. The
// keystore counts as test keys when any entry equals a built-in test key.
func NewSoftwareKeystore(source string, entries ...Entry) (*SoftwareKeystore, error) {
	ks := &SoftwareKeystore{keys: make(map[KeyID][]byte, len(entries)), source: source}
	for _, e := range entries {
		if err := ks.add(e.ID(), e.Key); err != nil {
			ks.Close()
			return nil, err
		}
	}
	return ks, nil
}

func (ks *SoftwareKeystore) add(id KeyID, key []byte) error {
	if id.Name == "" {
		return errors.New("keys: entry with an empty key name")
	}
	if err := checkKey(id.Algorithm, key); err != nil {
		return fmt.Errorf("keys: key %s: %w", id, err)
	}
	if _, dup := ks.keys[id]; dup {
		return fmt.Errorf("keys: key %s given twice", id)
	}
	ks.keys[id] = append([]byte(nil), key...)
	if isTestKey(id, key) {
		ks.test = true
	}
	return nil
}

// NewTestKeystore returns a keystore over [TestKeys]. Its String says TEST KEYS.
func NewTestKeystore() *SoftwareKeystore {
	entries := TestKeys()
	ks, err := NewSoftwareKeystore("built-in test keys", entries...)
	for _, e := range entries {
		clear(e.Key)
	}
	if err != nil {
		panic("keys: built-in test keys rejected: " + err.Error()) // cannot happen
	}
	ks.test = true
	return ks
}

// IsTestKeys reports whether the keystore holds test keys: the built-in set,
// a file marked "test_keys": true, or any key equal to a built-in test key.
// A production station should refuse to personalize real cards when true.
func (ks *SoftwareKeystore) IsTestKeys() bool { return ks.test }

// Source returns the label given at construction (the file path for
// [LoadSoftwareKeystore]).
func (ks *SoftwareKeystore) Source() string { return ks.source }

// Has reports whether the keystore holds a master key for (name, alg), so a
// caller can report "no RKSSSE key" before touching the card.
func (ks *SoftwareKeystore) Has(name KeyName, alg Algorithm) bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	_, ok := ks.keys[KeyID{name, alg}]
	return ok && !ks.closed
}

// KeyIDs lists the (name, algorithm) pairs held, sorted.
func (ks *SoftwareKeystore) KeyIDs() []KeyID {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	ids := make([]KeyID, 0, len(ks.keys))
	for id := range ks.keys {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b KeyID) int { return strings.Compare(a.String(), b.String()) })
	return ids
}

// withKey runs fn with the master key of req diversified along req.Path; the
// derived key is zeroed afterwards.
func (ks *SoftwareKeystore) withKey(ctx context.Context, req Request, fn func(key []byte) error) error {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if err := req.Validate(); err != nil {
		return err
	}
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	if ks.closed {
		return ErrClosed
	}
	master, ok := ks.keys[req.ID()]
	if !ok {
		return &KeyNotFoundError{Key: req.Key, Algorithm: req.Algorithm}
	}
	key, err := DiversifyPath(req.Algorithm, master, req.Path)
	if err != nil {
		return fmt.Errorf("keys: %s: %w", req.ID(), err)
	}
	defer clear(key)
	if err := fn(key); err != nil {
		return fmt.Errorf("keys: %s: %w", req.ID(), err)
	}
	return nil
}

// Encrypt implements [Provider].
func (ks *SoftwareKeystore) Encrypt(ctx context.Context, req Request, data []byte) ([]byte, error) {
	var out []byte
	err := ks.withKey(ctx, req, func(key []byte) (err error) {
		out, err = EncryptECB(req.Algorithm, key, data)
		return err
	})
	return out, err
}

// MAC implements [Provider]; see [ComputeMAC].
func (ks *SoftwareKeystore) MAC(ctx context.Context, req Request, iv, data []byte) ([]byte, error) {
	var out []byte
	err := ks.withKey(ctx, req, func(key []byte) (err error) {
		out, err = ComputeMAC(req.Algorithm, key, iv, data)
		return err
	})
	return out, err
}

// Close zeroes and drops the keys. Later calls return [ErrClosed]. Close is
// idempotent and always returns nil.
func (ks *SoftwareKeystore) Close() error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for id, k := range ks.keys {
		clear(k)
		delete(ks.keys, id)
	}
	ks.closed = true
	return nil
}

// String describes the keystore without key bytes, e.g.
// "SoftwareKeystore{TEST KEYS, 18 keys, source=built-in test keys}".
func (ks *SoftwareKeystore) String() string {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	var b strings.Builder
	b.WriteString("SoftwareKeystore{")
	if ks.test {
		b.WriteString("TEST KEYS, ")
	}
	if ks.closed {
		b.WriteString("closed, ")
	}
	fmt.Fprintf(&b, "%d keys, source=%s}", len(ks.keys), ks.source)
	return b.String()
}

// Redacted is the same as String: a description that never holds key bytes.
func (ks *SoftwareKeystore) Redacted() string { return ks.String() }

// Format prints [SoftwareKeystore.String] for every fmt verb.
func (ks *SoftwareKeystore) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, ks.String()) }

// MarshalJSON writes the redacted description, so loggers that marshal
// values (zerolog, slog's JSON handler) cannot dump keys.
func (ks *SoftwareKeystore) MarshalJSON() ([]byte, error) { return json.Marshal(ks.String()) }

// LogValue gives log/slog the redacted form.
func (ks *SoftwareKeystore) LogValue() slog.Value { return slog.StringValue(ks.String()) }

// ---------------------------------------------------------------------------
// Key file

// maxKeyFileSize bounds what LoadSoftwareKeystore reads.
const maxKeyFileSize = 1 << 20

// keyFile is the JSON layout:
//
//	{
//	  "test_keys": true,
//	  "comment": "...",
//	  "keys": {
//	    "rkssse": {"algorithm": "3DES", "key": "<32 hex digits>", "kcv": "<6 hex digits, optional>"},
//	    "ef-write": [
//	      {"algorithm": "3DES", "key": "..."},
//	      {"algorithm": "SM4", "key": "..."}
//	    ]
//	  }
//	}
//
// A name maps to one entry object or to an array of them (one per algorithm).
type keyFile struct {
	TestKeys bool                   `json:"test_keys"`
	Comment  string                 `json:"comment,omitempty"`
	Keys     map[string]fileKeyList `json:"keys"`
}

type fileKey struct {
	Algorithm string `json:"algorithm"`
	Key       hexKey `json:"key"`
	KCV       string `json:"kcv,omitempty"`
}

type fileKeyList []fileKey

func (l *fileKeyList) UnmarshalJSON(b []byte) error {
	// Look at the first non-space byte only (no string copy of the input).
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	if i < len(b) && b[i] == '[' {
		var many []fileKey
		if err := json.Unmarshal(b, &many); err != nil {
			return err
		}
		*l = many
		return nil
	}
	var one fileKey
	if err := json.Unmarshal(b, &one); err != nil {
		return err
	}
	*l = fileKeyList{one}
	return nil
}

// hexKey decodes a JSON string of hex digits straight into bytes (no Go
// string holding the key is created) and its errors never quote the input.
type hexKey []byte

// safeError is an error whose text is known not to contain file contents.
type safeError string

func (e safeError) Error() string { return string(e) }

func (h *hexKey) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return safeError("a key must be a JSON string of hex digits")
	}
	s := b[1 : len(b)-1]
	out := make([]byte, 0, len(s)/2)
	var hi byte
	half := false
	for _, c := range s {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		case c == ' ':
			continue
		default:
			clear(out)
			return safeError("a key holds a character that is not a hex digit")
		}
		if half {
			out = append(out, hi<<4|v)
		} else {
			hi = v
		}
		half = !half
	}
	if half {
		clear(out)
		return safeError("a key has an odd number of hex digits")
	}
	*h = out
	return nil
}

func (h hexKey) MarshalJSON() ([]byte, error) {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, 2*len(h)+2)
	out = append(out, '"')
	for _, c := range h {
		out = append(out, digits[c>>4], digits[c&0x0f])
	}
	return append(out, '"'), nil
}

// jsonProblem describes a JSON decoding error without quoting file contents.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var safe safeError
	switch {
	case errors.As(err, &safe):
		return string(safe)
	case errors.As(err, &syn):
		return fmt.Sprintf("JSON syntax error at byte offset %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("wrong JSON type for field %q (want %s)", typ.Field, typ.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	return "malformed JSON"
}

// LoadSoftwareKeystore reads a key file (layout on keyFile above: "test_keys",
// "comment", "keys" by [KeyName]). It refuses a file that is not a regular
// file (symbolic links included) or whose permissions let group or others at
// it (Unix: mode & 0o077 != 0, fix with chmod 600; a file or directory
// owned by anyone but this user or root, or a directory group or others
// may write, where the file could be swapped; Windows: an ACL entry
// granting Everyone, Users, Authenticated Users, Guests, Anonymous,
// Interactive, Network or Domain Users access). Keys must be 16 bytes; an
// optional "kcv" is checked against [KeyCheckValue]. Errors name the path
// and the mode but never the file's contents.
func LoadSoftwareKeystore(path string) (*SoftwareKeystore, error) {
	lfi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("keys: key file: %w", err)
	}
	if !lfi.Mode().IsRegular() {
		return nil, fmt.Errorf("keys: refusing key file %s: not a regular file (mode %v)", path, lfi.Mode())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys: key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || !os.SameFile(lfi, fi) {
		return nil, fmt.Errorf("keys: refusing key file %s: it changed while being opened (mode %v)", path, fi.Mode())
	}
	if err := checkKeyFileAccess(path, f, fi); err != nil {
		return nil, err
	}
	if fi.Size() > maxKeyFileSize {
		return nil, fmt.Errorf("keys: refusing key file %s: %d bytes, larger than %d", path, fi.Size(), maxKeyFileSize)
	}
	buf := make([]byte, 0, fi.Size()+1)
	buf, err = readAllLimited(f, buf, maxKeyFileSize)
	defer clear(buf)
	if err != nil {
		return nil, fmt.Errorf("keys: key file %s: %w", path, err)
	}
	var kf keyFile
	if err := json.Unmarshal(buf, &kf); err != nil {
		clearKeyFile(&kf)
		return nil, fmt.Errorf("keys: key file %s: %s", path, jsonProblem(err))
	}
	defer clearKeyFile(&kf)
	return keystoreFromFile(path, &kf)
}

func readAllLimited(r io.Reader, buf []byte, limit int) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			// Grow by hand so the old backing array can be zeroed.
			nb := make([]byte, len(buf), 2*cap(buf)+512)
			copy(nb, buf)
			clear(buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return buf, fmt.Errorf("larger than %d bytes", limit)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func clearKeyFile(kf *keyFile) {
	for _, l := range kf.Keys {
		for _, k := range l {
			clear(k.Key)
		}
	}
}

func keystoreFromFile(path string, kf *keyFile) (*SoftwareKeystore, error) {
	if len(kf.Keys) == 0 {
		return nil, fmt.Errorf("keys: key file %s: no \"keys\"", path)
	}
	ks := &SoftwareKeystore{keys: make(map[KeyID][]byte), source: path, test: kf.TestKeys}
	names := make([]string, 0, len(kf.Keys))
	for n := range kf.Keys {
		names = append(names, n)
	}
	slices.Sort(names)
	fail := func(format string, args ...any) (*SoftwareKeystore, error) {
		ks.Close()
		return nil, fmt.Errorf("keys: key file %s: "+format, append([]any{path}, args...)...)
	}
	for _, n := range names {
		if len(kf.Keys[n]) == 0 {
			return fail("key %q has no entries", n)
		}
		for _, fk := range kf.Keys[n] {
			alg, err := ParseAlgorithm(fk.Algorithm)
			if err != nil {
				return fail("key %q: %v", n, err)
			}
			id := KeyID{Name: KeyName(n), Algorithm: alg}
			if len(fk.Key) != KeySize {
				return fail("key %s is %d bytes, want %d", id, len(fk.Key), KeySize)
			}
			if fk.KCV != "" {
				want, err := hex.DecodeString(strings.ReplaceAll(fk.KCV, " ", ""))
				if err != nil || len(want) == 0 || len(want) > alg.BlockSize() {
					return fail("key %s: \"kcv\" is not 1..%d bytes of hex", id, alg.BlockSize())
				}
				full, err := EncryptECB(alg, fk.Key, make([]byte, alg.BlockSize()))
				if err != nil {
					return fail("key %s: %v", id, err)
				}
				if subtle.ConstantTimeCompare(full[:len(want)], want) != 1 {
					return fail("key %s does not match its \"kcv\" (mistyped key or check value)", id)
				}
			}
			if err := ks.add(id, fk.Key); err != nil {
				return fail("%v", err)
			}
		}
	}
	return ks, nil
}

// WriteTestKeystoreFile writes [TestKeys] as a key file marked
// "test_keys": true, with key check values, readable by
// [LoadSoftwareKeystore]. The file is created with mode 0600 (in a temporary
// file in the same directory, then renamed over path), so an existing file
// with looser permissions is replaced rather than reused.
func WriteTestKeystoreFile(path string) error {
	kf := keyFile{
		TestKeys: true,
		Comment:  "TEST KEYS -- NOT FOR PRODUCTION. Public values derived from the string \"" + testKeyLabel + "\"; for the virtual card and demos only.",
		Keys:     map[string]fileKeyList{},
	}
	for _, e := range TestKeys() {
		kcv, err := KeyCheckValue(e.Algorithm, e.Key)
		if err != nil {
			return err
		}
		kf.Keys[string(e.Name)] = append(kf.Keys[string(e.Name)], fileKey{
			Algorithm: string(e.Algorithm),
			Key:       hexKey(e.Key),
			KCV:       strings.ToUpper(hex.EncodeToString(kcv)),
		})
	}
	data, err := json.MarshalIndent(&kf, "", "  ")
	clearKeyFile(&kf)
	if err != nil {
		return fmt.Errorf("keys: encoding test key file: %w", err)
	}
	defer clear(data)
	data = append(data, '\n')

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".keystore-*.tmp") // created 0600
	if err != nil {
		return fmt.Errorf("keys: writing test key file: %w", err)
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("keys: writing test key file %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("keys: writing test key file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("keys: writing test key file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keys: writing test key file %s: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("keys: writing test key file %s: %w", path, err)
	}
	ok = true
	return nil
}
