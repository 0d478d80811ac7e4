package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ssstation/internal/cardsim/engine"
	"ssstation/internal/cardsim/ssse"
	"ssstation/internal/cardsim/vpcd"
	"ssstation/pcsc/pcsctest"
)

var sscardBin string

// TestMain builds the real binary once: these tests run it as a technician would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sscard-test-")
	if err != nil {
		panic(err)
	}
	sscardBin = filepath.Join(dir, "sscard")
	out, err := exec.Command("go", "build", "-o", sscardBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building sscard: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func runSSCard(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runSSCardStdin(t, env, "", args...)
}

func runSSCardStdin(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sscardBin, args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running sscard: %v", err)
	}
	return result{out.String(), errb.String(), code}
}

func defaultCard(t *testing.T) vpcd.Card {
	c, err := engine.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReadersWithNoReadersSaysSo(t *testing.T) {
	pcsctest.EnsurePCSCD(t)
	d := pcsctest.StartEmptyDaemon(t)
	r := runSSCard(t, d.Env(), "readers")
	if r.code != 0 || !strings.Contains(r.stdout, "No readers") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runSSCard(t, d.Env(), "readers", "--json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != `{
  "readers": []
}` {
		t.Fatalf("json: exit %d, %q", r.code, r.stdout)
	}
}

func TestReadersShowsTheCardAndATR(t *testing.T) {
	vc := pcsctest.StartCard(t, defaultCard(t))
	r := runSSCard(t, os.Environ(), "readers", "--json")
	var got struct{ Readers []readerJSON }
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %v: %s %s", r.code, err, r.stdout, r.stderr)
	}
	found := false
	for _, rd := range got.Readers {
		if rd.Reader == vc.Reader {
			found = true
			if !rd.CardPresent || rd.ATR != fmt.Sprintf("%X", vc.Slot.Card().ATR()) {
				t.Fatalf("reader %+v", rd)
			}
		}
	}
	if !found {
		t.Fatalf("reader %q not listed: %s", vc.Reader, r.stdout)
	}
}

func TestAPDUSendsAndExplains(t *testing.T) {
	vc := pcsctest.StartCard(t, defaultCard(t))
	r := runSSCard(t, os.Environ(), "apdu", "--reader", vc.Reader, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF", "00A4000002EF05", "00B2030400", "00B2090400")
	if r.code != 0 {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"< 03 04 32 2E 30 30", "SW 9000: success", "SW 6A83: record not found"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}

// Bad input is refused before anything reaches the card.
func TestAPDUBadInputRefusedBeforeSending(t *testing.T) {
	vc := pcsctest.StartCard(t, defaultCard(t))
	before := vc.Slot.Stats().APDUs
	huge := "00DC0104" + "00FFFF" + strings.Repeat("00", 65536) + "0000"
	cases := []struct {
		name  string
		args  []string
		want  string
		stdin string
	}{
		{"odd hex", []string{"apdu", "--reader", vc.Reader, "00A404000"}, "odd number of digits", ""},
		{"Lc mismatch", []string{"apdu", "--reader", vc.Reader, "00A4000003EF05"}, "Lc does not match", ""},
		{"bad second APDU", []string{"apdu", "--reader", vc.Reader, "0084000008", "00A4000003EF05"}, "APDU 2", ""},
		{"too long", []string{"apdu", "--reader", vc.Reader, "--from", "-"}, "longest extended APDU", huge + "\n"},
		{"unknown reader", []string{"apdu", "--reader", "No Such Reader", "0084000008"}, `unknown reader "No Such Reader"`, ""},
		{"no APDU", []string{"apdu", "--reader", vc.Reader}, "at least one APDU", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runSSCardStdin(t, os.Environ(), c.stdin, c.args...)
			if r.code != 2 || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d, stderr %q, want exit 2 and %q", r.code, r.stderr, c.want)
			}
		})
	}
	if after := vc.Slot.Stats().APDUs; after != before {
		t.Fatalf("%d APDUs reached the card", after-before)
	}
}

func TestATRVerb(t *testing.T) {
	r := runSSCard(t, os.Environ(), "atr", "--json", "3B 68 00 00 00 73 C8 40 12 00 90 00")
	if r.code != 0 || !strings.Contains(r.stdout, `"historical": "0073C84012009000"`) {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	r = runSSCard(t, os.Environ(), "atr", "3B 8E 80 01 80 31 80 66 B0 84 0C 01 6E 01 83 00 90 00 1C")
	if r.code == 0 || !strings.Contains(r.stderr, "TCK") {
		t.Fatalf("bad TCK accepted: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
}

// pcscd killed and restarted while `sscard watch` runs: watch reports the
// loss and comes back by itself, and sees the card again.
func TestWatchSurvivesPCSCDRestart(t *testing.T) {
	pcsctest.EnsurePCSCD(t)
	d := pcsctest.StartDaemon(t)
	slot := vpcd.NewSlot(fmt.Sprintf("127.0.0.1:%d", d.Readers[0].Port), defaultCard(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go slot.Run(ctx)

	cmd := exec.CommandContext(ctx, sscardBin, "watch", "--json", "--retry", "100ms")
	cmd.Env = d.Env()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan eventJSON, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev eventJSON
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				lines <- ev
			}
		}
		close(lines)
	}()
	expect := func(event, reader string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case ev, ok := <-lines:
				if !ok {
					t.Fatalf("watch exited while waiting for %s", event)
				}
				if ev.Event == event && (reader == "" || ev.Reader == reader) {
					return
				}
			case <-timeout:
				t.Fatalf("no %s event within 20s", event)
			}
		}
	}
	expect("card-inserted", d.Readers[0].Name)
	d.Kill()
	expect("service-lost", "")
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	expect("service-restored", "")
	expect("card-inserted", d.Readers[0].Name)
}

func ssseCard(t *testing.T, name string) *ssse.Card {
	t.Helper()
	img, err := ssse.Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssse.New(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestInfoAndPINThroughTheCLI(t *testing.T) {
	vc := pcsctest.StartCard(t, ssseCard(t, "sample-v2"))
	img, _ := ssse.Builtin("sample-v2")
	env := append(os.Environ(), "SSSTATION_CONFIG=")
	r := runSSCard(t, env, "info", "--reader", vc.Reader, "--ireadcardbas")
	want := "440300|" + img.Holder.SSN + "|S44030012|440300D1560000050102030405060708|阿卜杜热合曼·买买提艾力·吐尔逊托合提|5353433233444553|2.00|20240315|20340315|000000000000|ssstation|\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("exit %d\n%s\nwant\n%s\n%s", r.code, r.stdout, want, r.stderr)
	}
	right, wrong := img.PIN.Value, "975310"
	r = runSSCardStdin(t, env, wrong+"\n", "pin", "verify", "--reader", vc.Reader, "--pin-stdin", "-v")
	if r.code != 1 || !strings.Contains(r.stderr, "wrong PIN: 5 tries left") {
		t.Fatalf("wrong PIN: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	r2 := runSSCardStdin(t, env, right+"\n", "pin", "verify", "--reader", vc.Reader, "--pin-stdin", "-v")
	if r2.code != 0 || !strings.Contains(r2.stdout, "PIN correct.") {
		t.Fatalf("right PIN: exit %d: %s %s", r2.code, r2.stdout, r2.stderr)
	}
	for _, out := range []string{r.stdout, r.stderr, r2.stdout, r2.stderr} {
		if strings.Contains(out, right) || strings.Contains(out, wrong) || strings.Contains(strings.ReplaceAll(out, " ", ""), right) {
			t.Fatalf("a PIN appears in the output or trace:\n%s", out)
		}
	}
	if !strings.Contains(r2.stderr, "VERIFY") || !strings.Contains(r2.stderr, "redacted") {
		t.Fatalf("-v shows no redacted VERIFY:\n%s", r2.stderr)
	}
	// No terminal and no --pin-stdin: refused, and the PIN is never taken from argv.
	r = runSSCard(t, env, "pin", "verify", "--reader", vc.Reader)
	if r.code != 2 || !strings.Contains(r.stderr, "--pin-stdin") {
		t.Fatalf("no terminal: exit %d: %s", r.code, r.stderr)
	}
}

func TestProfileLintNamesFileAndLine(t *testing.T) {
	src, err := os.ReadFile("../../firmware-profiles/ss-v1-3des.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	at := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "protocol:") {
			at = i
			lines[i] = "protocol: T2"
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ss-v1-3des.yaml")
	os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644)
	r := runSSCard(t, os.Environ(), "profile", "lint", path)
	want := fmt.Sprintf("ss-v1-3des.yaml:%d: protocol", at+1)
	if r.code != 1 || !strings.Contains(r.stdout, want) {
		t.Fatalf("exit %d, want %q in:\n%s%s", r.code, want, r.stdout, r.stderr)
	}
	r = runSSCard(t, os.Environ(), "profile", "lint", "../../firmware-profiles/ss-v1-3des.yaml")
	if r.code != 0 {
		t.Fatalf("the built-in profile fails lint: %s", r.stdout)
	}
}
