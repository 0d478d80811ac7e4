package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ssstation/internal/cardsim/replay"
	"ssstation/internal/transcript"
	"ssstation/pcsc/pcsctest"
)

// sscard record on a card (the real-v1-t0 virtual card, T=0, an ATR no
// profile knows), then the saved transcript played back by a replay card
// in the other reader: sscard info reads it with no unmatched command, and
// the file holds none of the holder's data.
func TestRecordThenReplayThroughTheCLI(t *testing.T) {
	card := ssseCard(t, "real-v1-t0")
	img := card.Image()
	vc := pcsctest.StartCard(t, card)
	env := append(os.Environ(), "SSSTATION_CONFIG=")
	out := filepath.Join(t.TempDir(), "real-v1-t0.json")
	r := runSSCard(t, env, "record", "--reader", vc.Reader, "--out", out, "full")
	if r.code != 0 || !strings.Contains(r.stdout, "exchanges recorded to "+out) {
		t.Fatalf("record: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("transcript mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(out)
	packed := strings.ReplaceAll(string(b), " ", "")
	for _, secret := range []string{img.Holder.SSN, img.CardNumber, transcript.Hex([]byte(img.Holder.SSN)), transcript.Hex([]byte(img.CardNumber)), "CD F5 CE E5", "0A 1B 2C 3D"} {
		if strings.Contains(string(b), secret) || strings.Contains(packed, strings.ReplaceAll(secret, " ", "")) {
			t.Errorf("the transcript holds %q", secret)
		}
	}
	for _, s := range []string{r.stdout, r.stderr} {
		if strings.Contains(s, img.Holder.SSN) || strings.Contains(s, img.Holder.Name) {
			t.Fatalf("personal data printed:\n%s", s)
		}
	}

	rc, err := replay.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	rvc := pcsctest.StartCard(t, rc)
	r = runSSCard(t, env, "info", "--reader", rvc.Reader, "--full")
	if r.code != 0 || !strings.Contains(r.stdout, "1.00") {
		t.Fatalf("info on the replay: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, img.Holder.Name) {
		t.Fatalf("the replay shows the recorded holder's name:\n%s", r.stdout)
	}
	if n := rc.Unmatched(); n != 0 {
		t.Fatalf("%d commands unmatched: %v", n, rc.Stats().Headers)
	}
}
