package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc/pcsctest"
)

func sampleCard(t *testing.T, image string) *pcsctest.VirtualCard {
	t.Helper()
	pcsctest.EnsurePCSCD(t)
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	img, err := ssse.Builtin(image)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := ssse.New(img, set)
	if err != nil {
		t.Fatal(err)
	}
	return pcsctest.StartCard(t, sim)
}

// diagEnv is a station with the test keys and a data directory of its own.
func diagEnv(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	body := fmt.Sprintf(`{"terminal_no": "410100813475", "device_no": "D1", "keys": {"provider": "test"}, "data_dir": %q}`, filepath.Join(dir, "data"))
	p := filepath.Join(dir, "station.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "SSSTATION_CONFIG="+p)
}

// `sscard diag` on each shipped profile's virtual card: the right profile,
// the PIN tries (where the profile can tell them), the latency test with
// the count asked, exit 0; as JSON and as a table. A progress bar never
// reaches a pipe.
func TestDiagVerbOnEachSampleCard(t *testing.T) {
	for _, c := range []struct{ image, profile, tries string }{
		{"sample-v1", "ss-v1-3des", ""},
		{"sample-v2", "ss-v2-3des-t0", "6 tries left"},
		{"sample-v3", "ss-v3-sm4", "3 tries left"},
	} {
		t.Run(c.image, func(t *testing.T) {
			vc := sampleCard(t, c.image)
			env := diagEnv(t)
			r := runSSCard(t, env, "diag", "--reader", vc.Reader, "--latency", "5", "--json")
			if r.code != 0 {
				t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			var rep struct {
				OK      bool `json:"ok"`
				Readers []struct {
					Card struct {
						Identification struct{ Profile string } `json:"identification"`
						PIN            *struct {
							TriesLeft int `json:"tries_left"`
						} `json:"pin"`
						Latency struct {
							N, OK    int
							MedianMS float64 `json:"median_ms"`
						} `json:"latency"`
					} `json:"card"`
				} `json:"readers"`
				TestKeys bool `json:"test_keys"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
				t.Fatalf("%v\n%s", err, r.stdout)
			}
			if !rep.OK || len(rep.Readers) != 1 || !rep.TestKeys {
				t.Fatalf("%s", r.stdout)
			}
			card := rep.Readers[0].Card
			if card.Identification.Profile != c.profile || card.Latency.N != 5 || card.Latency.OK != 5 || card.Latency.MedianMS <= 0 {
				t.Fatalf("%+v", card)
			}
			if (c.tries == "") != (card.PIN == nil) {
				t.Fatalf("PIN %+v", card.PIN)
			}
			r = runSSCard(t, env, "diag", "--reader", vc.Reader, "--latency", "3")
			if r.code != 0 || !strings.Contains(r.stdout, c.profile) || !strings.Contains(r.stdout, "3 GET CHALLENGE") || !strings.Contains(r.stdout, "all good") {
				t.Fatalf("table: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if c.tries != "" && !strings.Contains(r.stdout, c.tries) {
				t.Fatalf("table lacks %q:\n%s", c.tries, r.stdout)
			}
			if testing.Verbose() {
				t.Logf("\n%s", r.stdout)
			}
			if strings.Contains(r.stderr, "latency") {
				t.Fatalf("a progress bar on a pipe: %q", r.stderr)
			}
		})
	}
}

// A problem found exits 4, not 1: a card that is no social security card.
func TestDiagVerbProblemExitCode(t *testing.T) {
	pcsctest.EnsurePCSCD(t)
	vc := pcsctest.StartCard(t, defaultCard(t))
	r := runSSCard(t, diagEnv(t), "diag", "--reader", vc.Reader, "--latency", "2")
	if r.code != exitProblemFound || !strings.Contains(r.stdout, "PROBLEM") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// `sscard conform` passes on a sample card (exit 0, JSON with one verdict
// per command), and with another card OS's profile it exits 4 and names
// the command that disagrees.
func TestConformVerb(t *testing.T) {
	vc := sampleCard(t, "sample-v2")
	env := diagEnv(t)
	r := runSSCard(t, env, "conform", "--reader", vc.Reader, "--profile", "ss-v2-3des-t0", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var rep struct {
		OK     bool
		Checks []struct {
			Name, Command, Expected, Got, Verdict string
		}
		Summary struct{ Pass, Fail, Skip int }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Summary.Fail != 0 || len(rep.Checks) < 10 {
		t.Fatalf("%s", r.stdout)
	}
	r = runSSCard(t, env, "conform", "--reader", vc.Reader, "--profile", "ss-v3-sm4", "--wire")
	if r.code != exitProblemFound || !strings.Contains(r.stdout, "NOT CONFORMING: SELECT SSSE") || !strings.Contains(r.stdout, "wire") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := runSSCard(t, env, "conform", "--reader", vc.Reader); r.code != exitUsage {
		t.Fatalf("no --profile: exit %d", r.code)
	}
}

// A vpcd reader has no PIN pad: `pinpad status` says so, and `pinpad
// verify` is refused before any PIN entry.
func TestPINPadVerbOnVPCD(t *testing.T) {
	vc := sampleCard(t, "sample-v1")
	env := diagEnv(t)
	r := runSSCard(t, env, "pinpad", "status", "--reader", vc.Reader)
	if r.code != 0 || !strings.Contains(r.stdout, "no PIN pad") {
		t.Fatalf("status: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runSSCard(t, env, "pinpad", "verify", "--reader", vc.Reader)
	if r.code != exitFailure || !strings.Contains(r.stderr, "no PIN pad") {
		t.Fatalf("verify: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// On a terminal (a pseudo-terminal from util-linux's script), the latency
// test shows a progress bar; with --json on the same terminal, nothing but
// the JSON is printed.
func TestDiagProgressOnATerminal(t *testing.T) {
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Skip("util-linux script is not installed: no pseudo-terminal to test on")
	}
	vc := sampleCard(t, "sample-v3")
	env := diagEnv(t)
	onTTY := func(args ...string) string {
		t.Helper()
		line := sscardBin
		for _, a := range args {
			line += " '" + a + "'"
		}
		cmd := exec.Command(scriptBin, "-qefc", line, "/dev/null")
		cmd.Env = env
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	out := onTTY("diag", "--reader", vc.Reader, "--latency", "300")
	if !strings.Contains(out, "latency "+vc.Reader) || !strings.Contains(out, "300 GET CHALLENGE") {
		t.Fatalf("no progress bar on a terminal:\n%q", out)
	}
	out = onTTY("diag", "--reader", vc.Reader, "--latency", "300", "--json")
	if strings.Contains(out, "latency "+vc.Reader) || !strings.Contains(out, `"median_ms"`) {
		t.Fatalf("progress with --json:\n%q", out)
	}
}
