package bundle

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ssstation/station/config"
)

func TestLineRedacts(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"pin":"123456","message":"ok"}`, `{"pin":"[removed]","message":"ok"}`},
		{`{"new_pin": "654321"}`, `{"new_pin": "[removed]"}`},
		{`PIN=123456 tries_left=3`, `PIN=[removed] tries_left=3`},
		{`{"token_name":"counter1","token":"sst_abcdefghijkl"}`, `{"token_name":"counter1","token":"[removed]"}`},
		{`sent Bearer abc.def-ghi now`, `sent Bearer [removed] now`},
		{`free text sst_abcdefghijklmnop end`, `free text sst_[removed] end`},
		{`holder 44030519900101123X read`, `holder 4403************3X read`},
		{`holder 440305199001011234,440305199001015678`, `holder 4403************34,4403************78`},
		{`old id 440305900101123 ok`, `old id 4403*********23 ok`},
		{`key 00112233445566778899AABBCCDDEEFF used`, `key [removed] used`},
		{`{"keys": {"provider": "test"}}`, `{"keys": {"provider": "test"}}`},
		// Not an ID number: a longer run of digits, a shorter one.
		{`ts 1764475200123456789 n 12345`, `ts 1764475200123456789 n 12345`},
	} {
		if got := Line(c.in); got != c.want {
			t.Errorf("Line(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

// A log larger than what is read keeps only whole lines from its end.
func TestTailFileBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.log")
	var b strings.Builder
	for b.Len() < maxLogBytes+100000 {
		b.WriteString("a line of a long log that goes on and on\n")
	}
	b.WriteString("the last line\n")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	lines, err := tailFile(p, 3)
	if err != nil || len(lines) != 3 || lines[2] != "the last line" || lines[0] != "a line of a long log that goes on and on" {
		t.Fatalf("%v %q", err, lines)
	}
}

// Without pcscd, a store or a log, the bundle is still written, and its
// manifest says what is missing.
func TestWriteNotesWhatIsMissing(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	var buf bytes.Buffer
	err := Write(context.Background(), &buf, Options{Tool: "test", Version: "v0", Config: cfg, StorePath: cfg.StorePath(),
		DiagError: errors.New("no diagnostics in this test"), LogNote: "stationd logs to standard error",
		PCSCDVersion: func(context.Context) (string, error) { return "", errors.New("no pcscd here") },
		Now:          func() time.Time { return time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Members(&buf)
	if err != nil {
		t.Fatal(err)
	}
	man := string(m["MANIFEST.json"])
	for _, want := range []string{"no pcscd here", "no diagnostics in this test", "stationd logs to standard error", "audit: absent"} {
		if !strings.Contains(man, want) {
			t.Errorf("manifest lacks %q:\n%s", want, man)
		}
	}
	if !strings.Contains(string(m["audit.json"]), `"state": "absent"`) || !strings.Contains(string(m["diag.json"]), "no diagnostics") {
		t.Errorf("audit %s diag %s", m["audit.json"], m["diag.json"])
	}
}

// The override directory's profiles are in the bundle as written (an ID
// number in a comment masked), each marked with the file it came from.
func TestWriteIncludesOverrideProfiles(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("../../firmware-profiles/ss-v3-sm4.yaml")
	if err != nil {
		t.Fatal(err)
	}
	body := "# checked on the card of 44030519900101123X\n" + string(src)
	if err := os.WriteFile(filepath.Join(dir, "ss-v3-sm4.yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.ProfilesDir = dir
	set, err := cfg.Profiles()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, Options{Tool: "test", Config: cfg, Profiles: set,
		PCSCDVersion: func(context.Context) (string, error) { return "pcsc-lite version 1.9.9.", nil }}); err != nil {
		t.Fatal(err)
	}
	m, err := Members(&buf)
	if err != nil {
		t.Fatal(err)
	}
	ov := string(m["profiles/overrides/ss-v3-sm4.yaml"])
	if !strings.Contains(ov, "4403************3X") || strings.Contains(ov, "44030519900101123X") || !strings.Contains(ov, "name: ss-v3-sm4") {
		t.Fatalf("override member:\n%.300s", ov)
	}
	idx := string(m["profiles/index.json"])
	if !strings.Contains(idx, filepath.Join(dir, "ss-v3-sm4.yaml")) || !strings.Contains(idx, `"built-in"`) {
		t.Fatalf("index:\n%s", idx)
	}
	if !strings.Contains(string(m["versions.json"]), `"pcscd": "pcsc-lite version 1.9.9."`) {
		t.Fatalf("versions:\n%s", m["versions.json"])
	}
}
