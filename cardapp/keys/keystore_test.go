package keys

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Pinned built-in test keys (first 16 bytes of SHA-256("TEST KEY -- NOT FOR
// PRODUCTION|<alg>|<name>"), DES odd parity on 3DES) and their check values,
// computed independently with Python hashlib / cryptography. They must never
// change: demo cards are personalized with them.
var pinnedTestKeys = []struct {
	alg  Algorithm
	name KeyName
	key  string
	kcv  string
}{
	{TDES, "internal-auth", "C7263D4FD3EC7A8FB03220A1DCABE667", "D888CC"},
	{TDES, "rkssse", "EC80B38CF79EABD3EC1FFBA857137F6D", "C9CAF5"},
	{TDES, "ef-write", "BF61FB89A74062D6A2C440FEA4980DDA", "9397F2"},
	{TDES, "pin-reload", "0B0EC8ADB6F110A823B31F9191EFDF89", "EE46C0"},
	{TDES, "pin-unblock", "3879078608197968C7ADD3164691BA8A", "4D9305"},
	{TDES, "app-block", "5D1AB31A299DA2BCEA686EDC73805E85", "37A6FC"},
	{TDES, "app-unblock", "836E5473610EDABF7CBA2C708C869E0E", "A69FCE"},
	{TDES, "card-block", "F4432C9234A2918570040EC8FE585B01", "BBA9EB"},
	{TDES, "finalize", "91510ED36B2501DF08FE0DE323794FBA", "B9F324"},
	{SM4, "internal-auth", "924F278D1E4ACDF39043A9D24DEF201E", "B0B57B"},
	{SM4, "rkssse", "78CE729725338A78B950D0982F30A458", "DBCA64"},
	{SM4, "ef-write", "59463E3AC496CBEFE26F54A3A7F815B9", "A09E81"},
	{SM4, "pin-reload", "073A91E1CE4D91510B409E6BEB9F0A11", "132541"},
	{SM4, "pin-unblock", "BF36A8C91B2CA6922D7BC6AB46315612", "625525"},
	{SM4, "app-block", "58B9E9AFDA573AB232BE04494D517045", "19A4FC"},
	{SM4, "app-unblock", "15B81582517E95C0CF450DD92F49B988", "1B18A3"},
	{SM4, "card-block", "6AC4F2D5C4AB56BF6C4C987A48EAB870", "CF43BC"},
	{SM4, "finalize", "D601BA87C60B2291D8CE71BC9FB480E8", "64B515"},
}

func TestTestKeysPinned(t *testing.T) {
	all := TestKeys()
	if len(all) != 2*len(KnownKeyNames()) || len(all) != len(pinnedTestKeys) {
		t.Fatalf("TestKeys has %d entries", len(all))
	}
	for i, p := range pinnedTestKeys {
		e := all[i]
		if e.Name != p.name || e.Algorithm != p.alg {
			t.Fatalf("entry %d is %s, want %s/%s", i, e.ID(), p.name, p.alg)
		}
		eq(t, string(p.name)+"/"+string(p.alg), e.Key, h(t, p.key))
		k, err := TestKey(p.name, p.alg)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "TestKey", k, h(t, p.key))
		kcv, err := KeyCheckValue(p.alg, k)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "KCV", kcv, h(t, p.kcv))
	}
	// Fresh copies: mutating one does not change the next.
	all[0].Key[0] ^= 0xFF
	eq(t, "copy", TestKeys()[0].Key, h(t, pinnedTestKeys[0].key))
	if _, err := TestKey("no-such-key", TDES); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("TestKey(unknown) err = %v", err)
	}
}

// keyHexForms returns the upper- and lower-case hex of every test key, to
// search error and log text for.
func keyHexForms() []string {
	var out []string
	for _, e := range TestKeys() {
		out = append(out, strings.ToUpper(hex.EncodeToString(e.Key)), hex.EncodeToString(e.Key),
			// halves too: a leak of one DES key half is still a leak
			strings.ToUpper(hex.EncodeToString(e.Key[:8])), strings.ToUpper(hex.EncodeToString(e.Key[8:])))
	}
	return out
}

func assertNoKeyHex(t *testing.T, what, text string) {
	t.Helper()
	upper := strings.ToUpper(text)
	for _, k := range keyHexForms() {
		if strings.Contains(upper, strings.ToUpper(k)) {
			t.Errorf("%s contains key hex %s: %q", what, k, text)
		}
	}
}

func TestTestKeystoreProvider(t *testing.T) {
	ctx := context.Background()
	ks := NewTestKeystore()
	defer ks.Close()

	if !ks.IsTestKeys() || !strings.Contains(ks.String(), "TEST KEYS") {
		t.Errorf("String() = %q", ks.String())
	}
	if got := len(ks.KeyIDs()); got != 18 {
		t.Errorf("%d keys", got)
	}
	if !ks.Has(KeyRKSSSE, SM4) || ks.Has("nope", SM4) {
		t.Error("Has")
	}

	path := [][]byte{h(t, "1122334455667788"), h(t, "A1A2A3A4A5A6A7A8")}
	challenge := h(t, "0102030405060708")
	for _, p := range pinnedTestKeys {
		req := Request{Key: p.name, Algorithm: p.alg, Path: path}
		card, err := DiversifyPath(p.alg, h(t, p.key), path)
		if err != nil {
			t.Fatal(err)
		}
		block := make([]byte, p.alg.BlockSize())
		copy(block, challenge)
		got, err := ks.Encrypt(ctx, req, block)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := EncryptECB(p.alg, card, block)
		eq(t, "Encrypt "+req.String(), got, want)

		iv := challenge[:4]
		mac, err := ks.MAC(ctx, req, iv, []byte("04D6820006 data"))
		if err != nil {
			t.Fatal(err)
		}
		wantMAC, _ := ComputeMAC(p.alg, card, iv, []byte("04D6820006 data"))
		eq(t, "MAC "+req.String(), mac, wantMAC)
		if len(mac) != 4 {
			t.Errorf("MAC is %d bytes", len(mac))
		}

		crypt, err := ExternalAuthCryptogram(ctx, ks, req, challenge)
		if err != nil {
			t.Fatal(err)
		}
		wantCrypt, _ := EncryptECB(p.alg, card, ExternalAuthData(challenge))
		eq(t, "external auth "+req.String(), crypt, wantCrypt)
		if len(crypt) != ExternalAuthDataSize {
			t.Errorf("cryptogram is %d bytes", len(crypt))
		}
	}

	// Master key itself with an empty path.
	got, err := ks.Encrypt(ctx, Request{Key: KeyRKSSSE, Algorithm: TDES}, make([]byte, 8))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "no path", got[:3], h(t, "C9CAF5"))

	// Missing key: typed, wraps the name, no key bytes.
	_, err = ks.Encrypt(ctx, Request{Key: "no-such-key", Algorithm: TDES}, make([]byte, 8))
	var nf *KeyNotFoundError
	if !errors.Is(err, ErrKeyNotFound) || !errors.As(err, &nf) || nf.Key != "no-such-key" || !strings.Contains(err.Error(), "no-such-key") {
		t.Errorf("missing key err = %v", err)
	}
	_, err = ks.MAC(ctx, Request{Key: "no-such-key", Algorithm: SM4}, nil, nil)
	if !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("missing key MAC err = %v", err)
	}

	// Bad requests, and their error text.
	for _, req := range []Request{
		{Key: KeyRKSSSE, Algorithm: "AES"},
		{Key: "", Algorithm: TDES},
		{Key: KeyRKSSSE, Algorithm: TDES, Path: [][]byte{make([]byte, 7)}},
	} {
		_, err := ks.Encrypt(ctx, req, make([]byte, 8))
		if err == nil {
			t.Errorf("%v accepted", req)
			continue
		}
		assertNoKeyHex(t, "request error", err.Error())
	}
	_, err = ks.Encrypt(ctx, Request{Key: KeyRKSSSE, Algorithm: TDES}, make([]byte, 5))
	if !errors.Is(err, ErrDataLength) {
		t.Errorf("5-byte data: %v", err)
	}
	assertNoKeyHex(t, "data error", err.Error())

	// Cancelled context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ks.Encrypt(cctx, Request{Key: KeyRKSSSE, Algorithm: TDES}, make([]byte, 8)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
}

func TestCloseZeroes(t *testing.T) {
	ks := NewTestKeystore()
	var held [][]byte
	ks.mu.RLock()
	for _, k := range ks.keys {
		held = append(held, k)
	}
	ks.mu.RUnlock()
	if err := ks.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ks.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	for _, k := range held {
		for _, b := range k {
			if b != 0 {
				t.Fatal("key not zeroed by Close")
			}
		}
	}
	if _, err := ks.Encrypt(context.Background(), Request{Key: KeyRKSSSE, Algorithm: TDES}, make([]byte, 8)); !errors.Is(err, ErrClosed) {
		t.Errorf("Encrypt after Close: %v", err)
	}
	if ks.Has(KeyRKSSSE, TDES) {
		t.Error("Has after Close")
	}
	if !strings.Contains(ks.String(), "closed") {
		t.Errorf("String after Close = %q", ks.String())
	}
}

func TestConcurrentUse(t *testing.T) {
	ks := NewTestKeystore()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				f := []byte{byte(i), byte(j), 0, 0, 0, 0, 0, 0}
				if _, err := ks.MAC(context.Background(), Request{Key: KeyEFWrite, Algorithm: SM4, Path: [][]byte{f}}, nil, f); err != nil && !errors.Is(err, ErrClosed) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	ks.Close()
}

func TestNoKeyBytesInPrintedForms(t *testing.T) {
	ks := NewTestKeystore()
	defer ks.Close()
	e := TestKeys()[1]
	var logBuf strings.Builder
	logger := slog.New(slog.NewJSONHandler(&logBuf, nil))
	logger.Info("x", "ks", ks, "entry", e)
	logText := slog.New(slog.NewTextHandler(&logBuf, nil))
	logText.Info("x", "ks", ks, "entry", e)
	j1, _ := json.Marshal(ks)
	j2, _ := json.Marshal(e)
	j3, _ := json.Marshal([]Entry{e})
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q"} {
		assertNoKeyHex(t, "keystore "+verb, fmt.Sprintf(verb, ks))
		assertNoKeyHex(t, "entry "+verb, fmt.Sprintf(verb, e))
		assertNoKeyHex(t, "entry slice "+verb, fmt.Sprintf(verb, []Entry{e}))
		assertNoKeyHex(t, "redacted "+verb, fmt.Sprintf(verb, ks.Redacted()))
	}
	assertNoKeyHex(t, "logs", logBuf.String())
	assertNoKeyHex(t, "json", string(j1)+string(j2)+string(j3))
	if !strings.Contains(ks.Redacted(), "TEST KEYS") || !strings.Contains(fmt.Sprint(ks), "TEST KEYS") {
		t.Errorf("Redacted() = %q", ks.Redacted())
	}
}

// ---------------------------------------------------------------------------
// Key files

func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
	return p
}

const secretHex = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"

func TestLoadKeystoreFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("mode bits are not meaningful on Windows")
	}
	content := `{"comment": "station 7", "keys": {
		"rkssse": {"algorithm": "3DES", "key": "` + secretHex + `"},
		"ef-write": [{"algorithm": "3DES", "key": "` + secretHex + `"}, {"algorithm": "SM4", "key": "0f1e2d3c 4b5a6978 8796a5b4 c3d2e1f0"}]
	}}`

	p := writeFile(t, "keys.json", content, 0o600)
	ks, err := LoadSoftwareKeystore(p)
	if err != nil {
		t.Fatal(err)
	}
	if ks.IsTestKeys() || strings.Contains(ks.String(), "TEST") {
		t.Errorf("production file reported as test keys: %v", ks)
	}
	if len(ks.KeyIDs()) != 3 || !ks.Has(KeyEFWrite, SM4) || !ks.Has(KeyRKSSSE, TDES) || ks.Has(KeyRKSSSE, SM4) {
		t.Errorf("keys = %v", ks.KeyIDs())
	}
	got, err := ks.Encrypt(context.Background(), Request{Key: KeyEFWrite, Algorithm: SM4}, make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := EncryptECB(SM4, h(t, secretHex), make([]byte, 16))
	eq(t, "loaded key", got, want)
	_, err = ks.MAC(context.Background(), Request{Key: KeyRKSSSE, Algorithm: SM4}, nil, nil)
	if !errors.Is(err, ErrKeyNotFound) || !strings.Contains(err.Error(), "rkssse") {
		t.Errorf("missing key err = %v", err)
	}
	assertSecretAbsent(t, "missing key error", err.Error())
	assertSecretAbsent(t, "String", fmt.Sprintf("%v %+v %#v %x", ks, ks, ks, ks))
	ks.Close()

	// Group/other access refused, naming path and mode, never contents.
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o601, 0o610} {
		p := writeFile(t, "keys.json", content, mode)
		_, err := LoadSoftwareKeystore(p)
		if err == nil {
			t.Errorf("mode %04o accepted", mode)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, p) || !strings.Contains(msg, fmt.Sprintf("%04o", mode)) {
			t.Errorf("mode %04o error does not name path and mode: %q", mode, msg)
		}
		assertSecretAbsent(t, "mode error", msg)
	}
	// 0400 is fine too.
	if ks, err := LoadSoftwareKeystore(writeFile(t, "ro.json", content, 0o400)); err != nil {
		t.Errorf("mode 0400: %v", err)
	} else {
		ks.Close()
	}

	// Not a regular file: a directory, a symlink to a good file.
	if _, err := LoadSoftwareKeystore(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	link := filepath.Join(t.TempDir(), "link.json")
	if err := os.Symlink(p, link); err == nil {
		if _, err := LoadSoftwareKeystore(link); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("symlink: %v", err)
		}
	}
	if _, err := LoadSoftwareKeystore(filepath.Join(t.TempDir(), "absent.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent file: %v", err)
	}
}

func assertSecretAbsent(t *testing.T, what, text string) {
	t.Helper()
	u := strings.ToUpper(strings.ReplaceAll(text, " ", ""))
	for _, s := range []string{secretHex, secretHex[:16], secretHex[16:], "0F1E2D3C", "C3D2E1F0"} {
		if strings.Contains(u, s) {
			t.Errorf("%s contains key material %s: %q", what, s, text)
		}
	}
}

func TestLoadKeystoreFileBadContents(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("mode bits are not meaningful on Windows")
	}
	for _, c := range []struct {
		name, content, wantErr string
	}{
		{"short key", `{"keys": {"rkssse": {"algorithm": "3DES", "key": "0F1E2D3C4B5A6978"}}}`, "8 bytes, want 16"},
		{"long key", `{"keys": {"rkssse": {"algorithm": "3DES", "key": "` + secretHex + `0F1E2D3C4B5A6978"}}}`, "24 bytes, want 16"},
		{"bad hex", `{"keys": {"rkssse": {"algorithm": "SM4", "key": "0F1E2D3C4B5A69788796A5B4C3D2E1FG"}}}`, "not a hex digit"},
		{"odd hex", `{"keys": {"rkssse": {"algorithm": "SM4", "key": "` + secretHex + `0"}}}`, "odd number"},
		{"key as number", `{"keys": {"rkssse": {"algorithm": "SM4", "key": 1234567890123456}}}`, "JSON string of hex"},
		{"bad algorithm", `{"keys": {"rkssse": {"algorithm": "AES", "key": "` + secretHex + `"}}}`, "unknown algorithm"},
		{"duplicate", `{"keys": {"rkssse": [{"algorithm": "SM4", "key": "` + secretHex + `"}, {"algorithm": "sm4", "key": "` + secretHex + `"}]}}`, "twice"},
		{"kcv mismatch", `{"keys": {"rkssse": {"algorithm": "SM4", "key": "` + secretHex + `", "kcv": "000000"}}}`, "does not match"},
		{"no keys", `{"test_keys": true}`, `no "keys"`},
		{"syntax", `{"keys": {"rkssse": {"algorithm": "SM4", "key": "` + secretHex + `"}`, "syntax error"},
		{"syntax2", `{"keys": {"rkssse": {"algorithm": "SM4", "key": "` + secretHex + `" x}}}`, "syntax error"},
		{"wrong type", `{"keys": {"rkssse": {"algorithm": 3, "key": "` + secretHex + `"}}}`, "wrong JSON type"},
	} {
		p := writeFile(t, "k.json", c.content, 0o600)
		ks, err := LoadSoftwareKeystore(p)
		if err == nil {
			ks.Close()
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %q, want it to mention %q and the path", c.name, err, c.wantErr)
		}
		assertSecretAbsent(t, c.name, err.Error())
		assertNoKeyHex(t, c.name, err.Error())
	}

	// A matching kcv is accepted.
	kcv, _ := KeyCheckValue(SM4, h(t, secretHex))
	p := writeFile(t, "k.json", `{"keys": {"rkssse": {"algorithm": "SM4", "key": "`+secretHex+`", "kcv": "`+hex.EncodeToString(kcv)+`"}}}`, 0o600)
	ks, err := LoadSoftwareKeystore(p)
	if err != nil {
		t.Fatalf("matching kcv: %v", err)
	}
	ks.Close()

	// A file not marked test_keys but holding a built-in test key is still
	// reported as TEST KEYS.
	tk, _ := TestKey(KeyFinalize, TDES)
	p = writeFile(t, "k.json", `{"keys": {"finalize": {"algorithm": "3DES", "key": "`+hex.EncodeToString(tk)+`"}}}`, 0o600)
	ks, err = LoadSoftwareKeystore(p)
	if err != nil {
		t.Fatal(err)
	}
	if !ks.IsTestKeys() || !strings.Contains(ks.String(), "TEST KEYS") {
		t.Errorf("test key not detected: %v", ks)
	}
	ks.Close()
}

func TestWriteTestKeystoreFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "test-keys.json")
	// An existing world-readable file is replaced, not reused with its mode.
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteTestKeystoreFile(p); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".keystore-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	raw, _ := os.ReadFile(p)
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["test_keys"] != true || !strings.Contains(fmt.Sprint(doc["comment"]), "NOT FOR PRODUCTION") {
		t.Errorf("file not marked as test keys: %v %v", doc["test_keys"], doc["comment"])
	}
	if runtime.GOOS == "windows" {
		return
	}
	ks, err := LoadSoftwareKeystore(p)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	if !ks.IsTestKeys() || !strings.Contains(ks.String(), "TEST KEYS") || len(ks.KeyIDs()) != 18 {
		t.Errorf("reloaded: %v", ks)
	}
	// Same cryptograms as the built-in keystore.
	mem := NewTestKeystore()
	defer mem.Close()
	for _, id := range mem.KeyIDs() {
		req := Request{Key: id.Name, Algorithm: id.Algorithm, Path: [][]byte{h(t, "0011223344556677")}}
		a, err1 := ks.MAC(context.Background(), req, h(t, "01020304"), []byte("data"))
		b, err2 := mem.MAC(context.Background(), req, h(t, "01020304"), []byte("data"))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		eq(t, "reloaded "+id.String(), a, b)
	}
}
