package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ssstation/cardapp/secure"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc/pcsctest"
)

// writeConfig writes a station configuration and returns an environment
// whose SSSTATION_CONFIG names it.
func writeConfig(t *testing.T, body string) []string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "station.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "SSSTATION_CONFIG="+p)
}

// noConfig is the environment of a station with no configuration file:
// SSSTATION_CONFIG unset and nothing at the default path.
func noConfig(t *testing.T) []string {
	t.Helper()
	if _, err := os.Stat("/etc/ssstation/station.json"); err == nil {
		t.Skip("this machine has a station configuration at the default path")
	}
	return append(os.Environ(), "SSSTATION_CONFIG=")
}

// Issue 8 §5: without a configuration there are no keys. Reading works;
// proving a card genuine says why it cannot, instead of calling every card
// genuine with the published test keys.
func TestNoConfigMeansNoKeys(t *testing.T) {
	vc := pcsctest.StartCard(t, ssseCard(t, "sample-v2"))
	env := noConfig(t)
	r := runSSCard(t, env, "info", "--reader", vc.Reader)
	if r.code != 0 || strings.Contains(r.stderr, "TEST KEYS") {
		t.Fatalf("info without keys: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runSSCard(t, env, "verify-card", "--reader", vc.Reader)
	if r.code != 1 || !strings.Contains(r.stderr, "no key provider configured") || strings.Contains(r.stdout, "genuine (") {
		t.Fatalf("verify-card without keys: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runSSCard(t, env, "verify-card", "--reader", vc.Reader, "--json")
	if r.code != 1 || strings.Contains(r.stdout, `"genuine": true`) || strings.Contains(r.stdout, "test_keys") {
		t.Fatalf("verify-card --json without keys: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Issue 8 §5: test keys only when asked for by name, and then every
// output says so: a TEST KEYS line on standard error, "test_keys": true
// in every JSON document.
func TestTestKeysAreMarkedEverywhere(t *testing.T) {
	vc := pcsctest.StartCard(t, ssseCard(t, "sample-v2"))
	env := writeConfig(t, `{"terminal_no": "410100813475", "device_no": "D1", "keys": {"provider": "test"}}`)
	r := runSSCard(t, env, "verify-card", "--reader", vc.Reader)
	if r.code != 0 || !strings.Contains(r.stderr, "TEST KEYS") {
		t.Fatalf("verify-card with test keys: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{
		{"verify-card", "--reader", vc.Reader, "--json"},
		{"info", "--reader", vc.Reader, "--json"},
		{"pin", "retries", "--reader", vc.Reader, "--json"},
	} {
		r := runSSCard(t, env, args...)
		var doc map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 {
			t.Fatalf("%v: exit %d, %v\n%s%s", args, r.code, err, r.stdout, r.stderr)
		}
		if doc["test_keys"] != true {
			t.Fatalf("%v: no \"test_keys\": true in\n%s", args, r.stdout)
		}
		if !strings.Contains(r.stderr, "TEST KEYS") {
			t.Fatalf("%v: no TEST KEYS line on standard error", args)
		}
	}
	// Without them, no mark.
	r = runSSCard(t, writeConfig(t, `{"terminal_no": "1", "device_no": "D"}`), "info", "--reader", vc.Reader, "--json")
	if r.code != 0 || strings.Contains(r.stdout, "test_keys") || strings.Contains(r.stderr, "TEST KEYS") {
		t.Fatalf("info without test keys: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Issue 8 §5 and §11: a provider typo is named, with the likely intent,
// before any reader is touched.
func TestProviderTypoIsExplained(t *testing.T) {
	env := writeConfig(t, `{"keys": {"provider": "sofware", "file": "/nonexistent"}}`)
	r := runSSCard(t, env, "verify-card", "--reader", "0")
	if r.code != 1 || !strings.Contains(r.stderr, `"sofware" is not a key provider`) || !strings.Contains(r.stderr, `did you mean "software"?`) {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}

// Issue 8 §6: a psam_reader naming the card's own reader used to hang in
// SCardBeginTransaction, deaf to Ctrl-C. It is refused, and PSAM problems
// point at the configuration, not at --reader.
func TestPSAMInTheCardsReaderRefused(t *testing.T) {
	vc := pcsctest.StartCard(t, ssseCard(t, "sample-v2"))
	env := writeConfig(t, fmt.Sprintf(`{"keys": {"provider": "psam", "psam_reader": %q}}`, vc.Reader))
	r := runSSCard(t, env, "verify-card", "--reader", vc.Reader)
	if r.code != 1 || !strings.Contains(r.stderr, "the reader of the card itself") || !strings.Contains(r.stderr, "keys.psam_reader") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	env = writeConfig(t, `{"keys": {"provider": "psam", "psam_reader": "No Such PSAM Reader"}}`)
	r = runSSCard(t, env, "verify-card", "--reader", vc.Reader)
	if r.code != 1 || !strings.Contains(r.stderr, "keys.psam_reader") || strings.Contains(r.stderr, "--reader") {
		t.Fatalf("unknown PSAM reader: exit %d: %s", r.code, r.stderr)
	}
	env = writeConfig(t, `{"keys": {"provider": "psam"}}`)
	r = runSSCard(t, env, "verify-card", "--reader", vc.Reader)
	if r.code != 1 || !strings.Contains(r.stderr, `needs "psam_reader"`) {
		t.Fatalf("empty PSAM reader: exit %d: %s", r.code, r.stderr)
	}
}

// startSSCard starts sscard with stdin a pipe that stays open (a PIN never
// typed) and returns the command and a channel of its exit.
func startSSCard(t *testing.T, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, <-chan int) {
	t.Helper()
	cmd := exec.Command(sscardBin, args...)
	cmd.Env = env
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		done <- code
		close(exited)
	}()
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); <-exited })
	return cmd, &errb, done
}

// waitExit fails the test if sscard has not ended within a minute: that is
// a hang (the bound sscard keeps is two seconds; this one only stops a
// stuck test).
func waitExit(t *testing.T, done <-chan int, errb *bytes.Buffer) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(time.Minute):
		t.Fatalf("sscard still runs a minute after the signal\n%s", errb.String())
	}
	return 0
}

// waitReadingStdin waits until a thread of pid blocks in read(0, ...): then
// sscard has installed its signal handling (before the verb runs) and
// waits for a PIN. Linux /proc: syscall 0 is read, its first argument the fd.
func waitReadingStdin(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 3000; i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			if strings.HasPrefix(string(b), "0 0x0 ") {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("sscard never read its standard input")
}

// Issue 8 §6: Ctrl-C and SIGTERM always end sscard, even while it waits on
// something that ignores the context (here a PIN that is never typed on a
// pipe that stays open).
func TestSignalsAlwaysEndSSCard(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		cmd, errb, done := startSSCard(t, noConfig(t), "pin", "verify", "--reader", "0", "--pin-stdin")
		waitReadingStdin(t, cmd.Process.Pid)
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		if code := waitExit(t, done, errb); code != 128+int(sig) {
			t.Fatalf("%v: exit %d\n%s", sig, code, errb.String())
		}
	}
}

// Issue 8 §6: a second signal ends sscard at once, without the grace.
func TestSecondSignalQuitsAtOnce(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	var stderr bytes.Buffer
	out := make(chan int, 1)
	release := make(chan struct{})
	defer close(release)
	go func() {
		out <- supervise(sigs, time.Hour, &stderr, func(ctx context.Context) int {
			<-release // ignores ctx, like a call stuck in a driver
			return exitOK
		})
	}()
	sigs <- syscall.SIGINT
	sigs <- syscall.SIGINT
	if code := <-out; code != 130 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stderr.String(), "quitting at once") {
		t.Fatalf("stderr: %q", stderr.String())
	}
	// A body that honours the context ends on the first signal; one that
	// completed returns its own code.
	sigs2 := make(chan os.Signal, 2)
	go func() {
		out <- supervise(sigs2, time.Hour, io.Discard, func(ctx context.Context) int {
			<-ctx.Done()
			return exitFailure
		})
	}()
	sigs2 <- syscall.SIGTERM
	if code := <-out; code != 143 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
}

// Issue 8 §11: Ctrl-C on watch reports no card or reader removal: the
// monitor letting go of its PC/SC context is not an event of the readers.
func TestWatchReportsNoRemovalOnInterrupt(t *testing.T) {
	vc := pcsctest.StartCard(t, defaultCard(t))
	for i := 0; i < 3; i++ {
		cmd := exec.Command(sscardBin, "watch", "--json")
		cmd.Env = os.Environ()
		var errb bytes.Buffer
		cmd.Stderr = &errb
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		var lines []string
		seen := false
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if !seen && strings.Contains(sc.Text(), `"card-inserted"`) && strings.Contains(sc.Text(), vc.Reader) {
				seen = true
				cmd.Process.Signal(os.Interrupt)
			}
		}
		err = cmd.Wait()
		// Exit 0: watch stopped by itself; 130: it was still letting go of
		// PC/SC when the two-second bound ran out (a loaded machine). What
		// this test is about is what it printed.
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 130 {
			t.Logf("run %d: watch needed the bound to stop:\n%s", i, errb.String())
			err = nil
		}
		if !seen || err != nil {
			t.Fatalf("run %d: card seen %v, exit %v\n%s\n%s", i, seen, err, strings.Join(lines, "\n"), errb.String())
		}
		for _, l := range lines {
			if strings.Contains(l, "removed") {
				t.Fatalf("run %d: a removal reported on Ctrl-C:\n%s", i, strings.Join(lines, "\n"))
			}
		}
	}
}

// Issue 8 §10: PIN commands never come from the command line, are redacted
// in the output, the trace and --json, and the card is reset after them so
// the verification does not outlive sscard.
func TestAPDUPINCommands(t *testing.T) {
	card := ssseCard(t, "sample-v2")
	vc := pcsctest.StartCard(t, card)
	img, _ := ssse.Builtin("sample-v2")
	pin := img.PIN.Value
	data, err := secure.EncodePIN(pin)
	if err != nil {
		t.Fatal(err)
	}
	pinHex := fmt.Sprintf("%X", data)
	verify := fmt.Sprintf("00200000%02X%s", len(data), pinHex)
	spacedPIN := spaced(data)
	before := vc.Slot.Stats().APDUs
	r := runSSCard(t, os.Environ(), "apdu", "--reader", vc.Reader, verify)
	if r.code != 2 || !strings.Contains(r.stderr, "--from -") || strings.Contains(r.stderr, pinHex) {
		t.Fatalf("PIN on the command line: exit %d: %s", r.code, r.stderr)
	}
	if vc.Slot.Stats().APDUs != before {
		t.Fatal("a refused PIN APDU reached the card")
	}
	sel := "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"
	resets := vc.Slot.Stats().Resets
	for _, args := range [][]string{{"-v"}, {"--json", "-v"}} {
		r = runSSCardStdin(t, os.Environ(), sel+"\n"+verify+"  # the holder's PIN\n", append([]string{"apdu", "--reader", vc.Reader, "--from", "-"}, args...)...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d: %s %s", args, r.code, r.stdout, r.stderr)
		}
		for _, out := range []string{r.stdout, r.stderr} {
			if strings.Contains(out, pinHex) || strings.Contains(out, spacedPIN) {
				t.Fatalf("%v: the PIN is in the output:\n%s", args, out)
			}
		}
		if !strings.Contains(r.stdout, "redacted") {
			t.Fatalf("%v: no redaction shown:\n%s", args, r.stdout)
		}
	}
	if vc.Slot.Stats().Resets == resets {
		t.Fatal("the card was not reset after the PIN command")
	}
	// The verification did not survive: a fresh connection finds it not verified.
	r = runSSCard(t, noConfig(t), "pin", "retries", "--reader", vc.Reader, "--json")
	if r.code != 0 || strings.Contains(r.stdout, `"verified": true`) {
		t.Fatalf("after apdu VERIFY: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
}

// Issue 8 §10 and §11: what sscard apdu cannot send as typed is refused
// before anything is sent, with a message that says why.
func TestAPDUInputRefusals(t *testing.T) {
	vc := pcsctest.StartCard(t, defaultCard(t))
	before := vc.Slot.Stats().APDUs
	ext := "00DC0104" + "000100" + strings.Repeat("AB", 256)
	var many strings.Builder
	for i := 0; i <= maxAPDULines; i++ {
		many.WriteString("00A4040000\n")
	}
	cases := []struct {
		name, stdin, want string
		args              []string
	}{
		{"extended on a short link", "", "does not split or chain", []string{ext}},
		{"extended form of a short APDU", "", "extended length fields but fits a short APDU", []string{"00A40000000002EF05"}},
		{"too many lines", many.String(), "more than 4096 APDUs", []string{"--from", "-"}},
		{"empty input", "", "standard input ended before any APDU", []string{"--from", "-"}},
		{"comments only", "# nothing\n\n", "ended before any APDU", []string{"--from", "-"}},
		{"BOM", "\uFEFF00A4040000\n", "byte order mark", []string{"--from", "-"}},
		{"flag after APDUs", "", "give flags first", []string{"00A4040000", "-v"}},
		{"not hex", "", "character 3 is not a hex digit", []string{"00G4040000"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runSSCardStdin(t, os.Environ(), c.stdin, append([]string{"apdu", "--reader", vc.Reader}, c.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d, stderr %q, want exit 2 and %q", r.code, r.stderr, c.want)
			}
		})
	}
	if after := vc.Slot.Stats().APDUs; after != before {
		t.Fatalf("%d APDUs reached the card", after-before)
	}
	// 0x before each byte is read as hex, not refused.
	r := runSSCard(t, os.Environ(), "apdu", "--reader", vc.Reader, "0x00 0xA4 0x04 0x00 0x00")
	if r.code != 0 || !strings.Contains(r.stdout, "> 00 A4 04 00 00") {
		t.Fatalf("0x prefixes: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
}

// Issue 8 §11: -h is a request, not a mistake: exit 0 for every verb.
func TestHelpExitsZero(t *testing.T) {
	cmds := [][]string{{"-h"}, {"--help"}}
	for name := range verbs {
		cmds = append(cmds, []string{name, "-h"}, []string{name, "--help"})
	}
	cmds = append(cmds, []string{"pin", "verify", "-h"}, []string{"profile", "show", "-h"})
	for _, args := range cmds {
		r := runSSCard(t, noConfig(t), args...)
		if r.code != 0 || r.stdout == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
}

func TestTermSafe(t *testing.T) {
	cases := map[string]string{
		"阿卜杜热合曼·买买提艾力": "阿卜杜热合曼·买买提艾力",
		"A\x1b[2JB":    `A\x1b[2JB`,
		"A\nB\tC\x7f":  `A\x0aB\x09C\x7f`,
		"A\u202eB":     `A\u202eB`,
		"A\u0085B":     `A\x85B`,
		"A\xffB":       `A\xffB`,
		"":             "",
	}
	for in, want := range cases {
		if got := termSafe(in); got != want {
			t.Errorf("termSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// The JSON mark: first field of an object; an array is wrapped.
func TestTestKeysJSONMark(t *testing.T) {
	defer testKeysInUse.Store(false)
	noteTestKeys()
	var b bytes.Buffer
	writeJSON(&b, map[string]int{"a": 1})
	if !strings.HasPrefix(b.String(), "{\n  \"test_keys\": true,\n  \"a\": 1") {
		t.Fatalf("%s", b.String())
	}
	b.Reset()
	writeJSON(&b, []int{1, 2})
	var doc struct {
		TestKeys bool  `json:"test_keys"`
		Items    []int `json:"items"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil || !doc.TestKeys || len(doc.Items) != 2 {
		t.Fatalf("%s %v", b.String(), err)
	}
	b.Reset()
	writeJSON(&b, struct{}{})
	if strings.TrimSpace(b.String()) != "{\n  \"test_keys\": true\n}" {
		t.Fatalf("%s", b.String())
	}
}

// endless repeats a line for ever, like `yes LINE`.
type endless struct {
	line []byte
	off  int
}

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = e.line[e.off]
		e.off = (e.off + 1) % len(e.line)
	}
	return len(p), nil
}

// Issue 8 §10: --from - on a pipe that never ends stops with a clear
// error, in bounded memory, before anything is sent.
func TestAPDULinesFromAnEndlessPipe(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"00A4040000\n", "more than 4096 APDUs"},
		{"00", "longer than"},
		{"# a comment that never ends\n", "longer than 4194304 bytes"},
	} {
		env := &cli{stdin: &endless{line: []byte(c.line)}, stdout: io.Discard, stderr: io.Discard}
		_, err := readAPDULines(env, "-")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%q for ever: %v, want %q", c.line, err, c.want)
		}
	}
}

// Issue 8 §9: a '|' in a holder's name would split the card's
// iReadCardBas string into one field more; an escape sequence would reach
// every terminal that prints the card. personalize refuses both before it
// writes anything, naming the field and not the value.
func TestPersonalizeRefusesSeparatorInTextFields(t *testing.T) {
	vc := pcsctest.StartCard(t, ssseCard(t, "blank-v2"))
	env := writeConfig(t, fmt.Sprintf(`{"terminal_no": "410100813475", "device_no": "D1", "data_dir": %q, "keys": {"provider": "test"}}`, t.TempDir()))
	src, err := os.ReadFile("../../demo/holder-v2.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"欧阳娜娜|吐尔逊", "欧阳娜娜\\u001b[2J吐尔逊"} {
		holder := filepath.Join(t.TempDir(), "holder.json")
		body := strings.Replace(string(src), "欧阳娜娜·买买提艾力·吐尔逊", bad, 1)
		if err := os.WriteFile(holder, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runSSCard(t, env, "personalize", "--reader", vc.Reader, "--holder", holder)
		if r.code == 0 || !strings.Contains(r.stderr+r.stdout, "holder.name") || strings.Contains(r.stderr+r.stdout, "欧阳") {
			t.Fatalf("name %q: exit %d\n%s%s", bad, r.code, r.stdout, r.stderr)
		}
	}
	r := runSSCard(t, env, "info", "--reader", vc.Reader)
	if r.code != 0 || !strings.Contains(r.stdout, "Blank card") {
		t.Fatalf("the card was written: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A duplicate key in the holder file is refused before the card is touched.
	holder := filepath.Join(t.TempDir(), "holder.json")
	os.WriteFile(holder, []byte(strings.Replace(string(src), `"gender": "2",`, `"gender": "2", "gender": "1",`, 1)), 0o600)
	r = runSSCard(t, env, "personalize", "--reader", vc.Reader, "--holder", holder)
	if r.code != 2 || !strings.Contains(r.stderr, `"gender" appears twice`) {
		t.Fatalf("duplicate key: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
