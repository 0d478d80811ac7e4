package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	"ssstation/internal/cardsim/ssse"
	"ssstation/station/audit"
	"ssstation/station/bundle"
	"ssstation/station/store"
)

// The support bundle, through the real binary and pcscd with a
// personalized virtual card in the reader, on a station whose files hold
// every kind of secret: an API token's hash in the configuration, a test
// key file, an audit trail of the card (known SSN), and a log with a PIN,
// the SSN, a bearer token and the raw token. The archive has every
// expected member, and no member holds any of those secrets.
func TestBundleHoldsNoSecret(t *testing.T) {
	vc := sampleCard(t, "sample-v2")
	img, err := ssse.Builtin("sample-v2")
	if err != nil {
		t.Fatal(err)
	}
	ssn := img.Holder.SSN
	const (
		token    = "sst_Q2xhc3NpZmllZC1ub3QtYS1yZWFsLXRva2VuLWF0LWFsbA"
		pin      = "482916"
		otherSSN = "110105194912310025" // a second holder, in the log only
	)
	sum := sha256.Sum256([]byte(token))
	tokenHash := hex.EncodeToString(sum[:])

	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	keyFile := filepath.Join(dir, "test-keys.json")
	if err := keys.WriteTestKeystoreFile(keyFile); err != nil {
		t.Fatal(err)
	}
	keyHex := keyValues(t, keyFile)

	// The audit trail: two touches of the card, as stationd records them.
	st, err := store.Open(filepath.Join(dataDir, "station.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	al, err := audit.Open(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	cardID := fmt.Sprintf("%X", vc.Slot.Card().(*ssse.Card).CardID())
	for _, op := range []string{"read", "pin-verify"} {
		seq, err := al.Begin(audit.Begin{TokenName: "counter1", Role: "counter", Reader: vc.Reader, Operation: op, OpID: "op-" + op})
		if err != nil {
			t.Fatal(err)
		}
		if err := al.Complete(seq, audit.End{Outcome: audit.OutcomeDone, CardID: cardID, SSNMasked: cardapp.MaskedSSN(ssn), SW: "9000"}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	logFile := filepath.Join(dir, "stationd.log")
	logLines := []string{
		`{"level":"info","service":"stationd","time":"2026-11-30T04:00:00Z","message":"reader attached","reader":"Station Test PCD"}`,
		`{"level":"debug","service":"stationd","pin":"` + pin + `","message":"pin verify"}`,
		`{"level":"warn","service":"stationd","ssn":"` + ssn + `","message":"holder ` + otherSSN + ` read"}`,
		`{"level":"debug","message":"request","header":"Authorization: Bearer ` + token + `"}`,
		`caller sent token=` + token + ` new_pin=` + pin + ` and then ` + token,
		`{"level":"info","message":"key loaded","key":"` + keyHex[0] + `"}`,
		`retrying the call with Bearer ` + token + ` from the page`,
	}
	if err := os.WriteFile(logFile, []byte(strings.Join(logLines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	env := writeConfig(t, fmt.Sprintf(`{"terminal_no": "410100813475", "device_no": "D1", "data_dir": %q,
		"keys": {"provider": "test", "file": %q},
		"daemon": {"tokens": [{"name": "counter1", "role": "counter", "sha256": %q, "origins": ["https://counter.example"]}]}}`,
		dataDir, keyFile, tokenHash))
	out := filepath.Join(dir, "bundle.tar.gz")
	r := runSSCard(t, env, "bundle", "--out", out, "--log", logFile, "--journald", "none", "--reader", vc.Reader, "--latency", "2", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bundle file: %v %v", err, fi)
	}
	raw, _ := os.ReadFile(out)
	members, err := bundle.Members(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}

	for _, want := range []string{"MANIFEST.json", "versions.json", "config.json", "readers.json", "profiles/index.json",
		"profiles/ss-v2-3des-t0.json", "logs/1-stationd.log", "audit.json", "diag.json"} {
		if _, ok := members[want]; !ok {
			t.Errorf("no member %s", want)
		}
	}
	secrets := map[string]string{"token": token, "token hash": tokenHash, "PIN": pin, "card SSN": ssn, "logged SSN": otherSSN,
		"token body": strings.TrimPrefix(token, "sst_")}
	for i, k := range keyHex {
		secrets[fmt.Sprintf("key %d", i)] = k
	}
	for name, body := range members {
		flat := strings.ToUpper(strings.NewReplacer(" ", "", "\n", "").Replace(string(body)))
		for what, s := range secrets {
			if strings.Contains(string(body), s) || strings.Contains(flat, strings.ToUpper(s)) {
				t.Errorf("member %s holds the %s", name, what)
			}
		}
	}

	// What is there is what a technician needs.
	has := func(member string, subs ...string) {
		t.Helper()
		for _, s := range subs {
			if !strings.Contains(string(members[member]), s) {
				t.Errorf("%s lacks %q:\n%s", member, s, members[member])
			}
		}
	}
	has("config.json", keyFile, `"counter1"`, `"(removed)"`, "https://counter.example", `"test_keys": true`)
	has("audit.json", `"state": "ok"`, `"entries": 4`)
	has("logs/1-stationd.log", "reader attached", `"pin":"[removed]"`, "Authorization: [removed]", "Bearer [removed] from the page", cardapp.MaskedSSN(ssn), cardapp.MaskedSSN(otherSSN))
	has("diag.json", vc.Reader, "ss-v2-3des-t0")
	has("readers.json", vc.Reader, "pin_pad")
	has("versions.json", "github.com/ebfe/scard", `"go": "go1.`)
	has("profiles/index.json", `"built-in"`, "ss-v3-sm4")
	if strings.Count(string(members["logs/1-stationd.log"]), "\n") != len(logLines) {
		t.Errorf("log lines dropped:\n%s", members["logs/1-stationd.log"])
	}
	var res struct {
		File    string
		Members []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.File != out || len(res.Members) != len(members) {
		t.Fatalf("--json: %v %s", err, r.stdout)
	}
	// Never overwritten.
	if r := runSSCard(t, env, "bundle", "--out", out, "--journald", "none", "--reader", vc.Reader); r.code == 0 {
		t.Fatalf("an existing bundle was overwritten")
	}
}

// keyValues returns the hex key values of a key file.
func keyValues(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range doc.Keys {
		var one struct{ Key string }
		var many []struct{ Key string }
		if json.Unmarshal(v, &many) == nil {
			for _, k := range many {
				out = append(out, k.Key)
			}
		} else if json.Unmarshal(v, &one) == nil {
			out = append(out, one.Key)
		}
	}
	if len(out) < 5 {
		t.Fatalf("only %d keys in the test key file", len(out))
	}
	return out
}
