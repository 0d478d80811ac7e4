package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc/pcsctest"
	"ssstation/station/journal"
)

// journalEnv is a configuration whose data directory is dir.
func journalEnv(t *testing.T, dir string) []string {
	t.Helper()
	return writeConfig(t, fmt.Sprintf(`{"terminal_no": "410100813475", "device_no": "D1", "data_dir": %q, "keys": {"provider": "test"}}`, dir))
}

// Listing a journal that does not exist says so and creates nothing: no
// data directory, no file.
func TestJournalListingCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	r := runSSCard(t, journalEnv(t, dir), "journal")
	if r.code != 0 || !strings.Contains(r.stdout, "No journal") {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the listing created the data directory: %v", err)
	}
}

// A damaged journal file: a clear error and exit code 3, never a panic;
// the file is left as it was.
func TestJournalDamagedExitCode(t *testing.T) {
	for name, content := range map[string][]byte{
		"garbage":   []byte(strings.Repeat("this is not a journal\n", 500)),
		"truncated": nil,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "journal.db")
			if content == nil {
				j, err := journal.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				j.Close()
				b, _ := os.ReadFile(path)
				content = b[:len(b)/2]
			}
			os.WriteFile(path, content, 0o600)
			env := journalEnv(t, dir)
			for _, args := range [][]string{{"journal"}, {"journal", "abandon", "op1"}} {
				r := runSSCard(t, env, args...)
				if r.code != exitJournalDamaged || !strings.Contains(r.stderr, "damaged") ||
					strings.Contains(r.stderr, "goroutine") || strings.Contains(r.stderr, "panic") {
					t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
				}
			}
			if b, _ := os.ReadFile(path); string(b) != string(content) {
				t.Fatal("the damaged file was changed")
			}
		})
	}
}

// A symlinked journal path is refused.
func TestJournalSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(t.TempDir(), "elsewhere.db")
	j, err := journal.Open(real)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	os.Symlink(real, filepath.Join(dir, "journal.db"))
	r := runSSCard(t, journalEnv(t, dir), "journal")
	if r.code == 0 || !strings.Contains(r.stderr, "symlink") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}

// `journal abandon OP` closes an unfinished entry whose card is gone.
func TestJournalAbandon(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Open(filepath.Join(dir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := j.Begin(journal.Entry{OpID: "op1", Kind: journal.KindPersonalize, CardID: "440300D1560000050102030405060708",
		PayloadDigest: strings.Repeat("ab", 32)})
	if err != nil {
		t.Fatal(err)
	}
	j.Interrupt(e.Attempt(), errors.New("card removed"))
	j.Close()
	env := journalEnv(t, dir)
	r := runSSCard(t, env, "journal", "abandon", "op1", "--note", "card destroyed at the counter")
	if r.code != 0 || !strings.Contains(r.stdout, "abandoned") {
		t.Fatalf("abandon: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	r = runSSCard(t, env, "journal")
	if r.code != 0 || !strings.Contains(r.stdout, "abandoned") || !strings.Contains(r.stdout, "440300D1560000050102030405060708") {
		t.Fatalf("list: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if r := runSSCard(t, env, "journal", "abandon", "op1"); r.code == 0 {
		t.Fatalf("abandon twice: exit 0: %s", r.stdout)
	}
	if r := runSSCard(t, env, "journal", "abandon"); r.code != exitUsage {
		t.Fatalf("abandon without OP: exit %d", r.code)
	}
}

// Activation through the CLI and pcscd: a delivered card holding the
// initial PIN gets the holder's; again, "PIN already set" from the journal
// without a try; the journal and the listing hold no PIN.
func TestActivateThroughTheCLI(t *testing.T) {
	img, err := ssse.Builtin("delivered-v3")
	if err != nil {
		t.Fatal(err)
	}
	img.State = ssse.StateActive // delivered as public cards are: not transport-locked (A-ACTIVATION)
	card, err := ssse.New(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	vc := pcsctest.StartCard(t, card)
	dir := t.TempDir()
	env := journalEnv(t, dir)
	const pin = "582064"
	r := runSSCardStdin(t, env, pin+"\n"+pin+"\n", "activate", "--reader", vc.Reader, "--pin-stdin")
	if r.code != 0 || !strings.Contains(r.stdout, "holder PIN set") || card.PIN() != pin {
		t.Fatalf("activate: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	tries := card.Tries()
	r2 := runSSCardStdin(t, env, "739105\n739105\n", "activate", "--reader", vc.Reader, "--pin-stdin")
	if r2.code != 0 || !strings.Contains(r2.stdout, "PIN already set") || card.Tries() != tries || card.PIN() != pin {
		t.Fatalf("again: exit %d: %s %s (tries %d -> %d)", r2.code, r2.stdout, r2.stderr, tries, card.Tries())
	}
	r3 := runSSCard(t, env, "journal", "--json")
	jb, _ := os.ReadFile(filepath.Join(dir, "journal.db"))
	for _, out := range []string{r.stdout, r.stderr, r2.stdout, r2.stderr, r3.stdout, string(jb)} {
		if strings.Contains(out, pin) || strings.Contains(out, "739105") {
			t.Fatal("a PIN appears in the output or the journal")
		}
	}
	if !strings.Contains(r3.stdout, `"pin:change-initial"`) {
		t.Fatalf("journal listing: %s", r3.stdout)
	}
}
