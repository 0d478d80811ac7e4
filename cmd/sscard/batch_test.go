package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ssstation/cardapp"
	"ssstation/cardapp/records"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc/pcsctest"
)

// citizenID completes 17 digits with GB 11643's check character.
func citizenID(t *testing.T, first17 string) string {
	t.Helper()
	w := []int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i := 0; i < 17; i++ {
		sum += int(first17[i]-'0') * w[i]
	}
	id := first17 + string("10X98765432"[sum%11])
	if err := cardapp.CheckCitizenID(id); err != nil {
		t.Fatal(err)
	}
	return id
}

// batchHolders writes a JSON-lines file of n holders (the demo holder with
// its own ID number each) and returns the file and the ID numbers.
func batchHolders(t *testing.T, n int) (string, []string) {
	t.Helper()
	src, err := os.ReadFile("../../demo/holder-v2.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	var ssns []string
	for i := 0; i < n; i++ {
		ssn := citizenID(t, fmt.Sprintf("44030519880214%03d", 20+2*i)) // even 17th digit: gender 2
		doc["holder"].(map[string]any)["ssn"] = ssn
		line, _ := json.Marshal(doc)
		b.Write(line)
		b.WriteString("\n")
		if i == 0 {
			b.WriteString("\n") // blank lines are allowed; line numbers count them
		}
		ssns = append(ssns, ssn)
	}
	p := filepath.Join(t.TempDir(), "holders.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, ssns
}

func blankCard(t *testing.T, set *profiles.Set, last byte) *ssse.Card {
	t.Helper()
	img, err := ssse.Builtin("blank-v2")
	if err != nil {
		t.Fatal(err)
	}
	img.CardID = fmt.Sprintf("440300D156000005000000000000B0%02X", last)
	c, err := ssse.New(img, set)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cardSSN is the ID number the virtual card holds (EF06), "" when blank.
func cardSSN(t *testing.T, c *ssse.Card) string {
	t.Helper()
	file, rec, ok := c.Profile().Record(profiles.ItemSSN)
	if !ok {
		t.Fatal("no ssn record")
	}
	tlv := c.Record(file, rec.Number)
	if len(tlv) < 2 {
		return ""
	}
	s, err := records.Decode(rec.Type, tlv[2:])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// batchRun is a running `sscard personalize-batch`: its JSON results and
// its prompts, as they come.
type batchRun struct {
	cmd     *exec.Cmd
	results chan batchResult
	prompts chan string
	mu      sync.Mutex
	stderr  strings.Builder
	done    chan struct{}
}

func startBatch(t *testing.T, env []string, args ...string) *batchRun {
	t.Helper()
	br := &batchRun{cmd: exec.Command(sscardBin, args...), results: make(chan batchResult, 16), prompts: make(chan string, 64), done: make(chan struct{})}
	br.cmd.Env = env
	out, _ := br.cmd.StdoutPipe()
	errp, _ := br.cmd.StderrPipe()
	if err := br.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r batchResult
			if err := json.Unmarshal(sc.Bytes(), &r); err == nil {
				br.results <- r
			}
		}
	}()
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(errp)
		for sc.Scan() {
			br.mu.Lock()
			br.stderr.WriteString(sc.Text() + "\n")
			br.mu.Unlock()
			br.prompts <- sc.Text()
		}
	}()
	go func() { wg.Wait(); close(br.done) }()
	t.Cleanup(func() {
		if br.cmd.ProcessState == nil {
			br.cmd.Process.Kill()
			br.cmd.Wait()
		}
	})
	return br
}

func (br *batchRun) log() string {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.stderr.String()
}

func (br *batchRun) expectResult(t *testing.T) batchResult {
	t.Helper()
	select {
	case r := <-br.results:
		return r
	case <-time.After(60 * time.Second):
		t.Fatalf("no result within 60s; stderr:\n%s", br.log())
	}
	return batchResult{}
}

func (br *batchRun) expectPrompt(t *testing.T, sub string) string {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case p := <-br.prompts:
			if strings.Contains(p, sub) {
				return p
			}
		case <-timeout:
			t.Fatalf("no prompt %q within 60s; stderr:\n%s", sub, br.log())
		}
	}
}

// swapCard pulls the card in the virtual reader and inserts c, as a hand would.
func swapCard(t *testing.T, vc *pcsctest.VirtualCard, c *ssse.Card) {
	t.Helper()
	vc.Slot.Remove()
	if err := vc.WaitPresence(false, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	vc.Slot.SetCard(c)
	vc.Slot.Insert()
}

// Issue 10 §7: a 3-line batch through pcscd. The batch asks for each card;
// the test bed swaps cards between lines. A card that is not blank is
// refused (and left as it was) and the batch asks again; a card pulled in
// the middle of line 2 is asked back and its personalization resumed. The
// run is interrupted (SIGINT) while it waits for line 3's card; the same
// command run again does line 3 only. Each card holds its own holder, and
// is locked.
func TestPersonalizeBatchAsksResumesAndSkipsDone(t *testing.T) {
	pcsctest.EnsurePCSCD(t)
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	cards := []*ssse.Card{blankCard(t, set, 1), blankCard(t, set, 2), blankCard(t, set, 3)}
	vc := pcsctest.StartCard(t, cards[0])
	file, ssns := batchHolders(t, 3)
	dataDir := t.TempDir()
	env := journalEnv(t, dataDir)
	args := []string{"personalize-batch", "--reader", vc.Reader, "--holders", file, "--lock", "--json"}

	run := startBatch(t, env, args...)
	r := run.expectResult(t)
	if r.Line != 1 || r.Status != "done" || !r.Locked || r.CardID != fmt.Sprintf("%X", cards[0].CardID()) {
		t.Fatalf("line 1: %+v\n%s", r, run.log())
	}
	perLine := cards[0].APDUCount()

	// A personalized card is refused, untouched.
	other := ssseCard(t, "sample-v2")
	otherSSN := cardSSN(t, other)
	swapCard(t, vc, other)
	run.expectPrompt(t, "is not blank")

	// Line 2's card is pulled near its end, then put back: resumed.
	swapCard(t, vc, cards[1])
	vc.Slot.RemoveAfter(perLine - 3)
	run.expectPrompt(t, "back to resume")
	vc.Slot.Insert()
	r = run.expectResult(t)
	if r.Line != 3 || r.Status != "done" || !r.Resumed || r.CardID != fmt.Sprintf("%X", cards[1].CardID()) {
		// holders line 2 is blank: the second holder is on line 3 of the file
		t.Fatalf("second holder: %+v\n%s", r, run.log())
	}

	// Interrupted while it waits for the third card.
	run.expectPrompt(t, "line 4: remove the card")
	if err := run.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	r = run.expectResult(t)
	<-run.done
	err = run.cmd.Wait()
	if r.Line != 4 || r.Status != "interrupted" {
		t.Fatalf("interrupted: %+v", r)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit after SIGINT: %v\n%s", err, run.log())
	}

	// Run again with the third card in: only the third holder is done.
	swapCard(t, vc, cards[2])
	if err := vc.WaitPresence(true, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	again := runSSCard(t, env, args...)
	lines := strings.Split(strings.TrimSpace(again.stdout), "\n")
	if again.code != 0 || len(lines) != 1 {
		t.Fatalf("re-run: exit %d\n%s\n%s", again.code, again.stdout, again.stderr)
	}
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil || r.Line != 4 || r.Status != "done" || r.Resumed || r.CardID != fmt.Sprintf("%X", cards[2].CardID()) {
		t.Fatalf("re-run: %v %+v", err, r)
	}
	if !strings.Contains(again.stderr, "2 of 3 lines done in an earlier run") {
		t.Fatalf("re-run stderr:\n%s", again.stderr)
	}

	for i, c := range cards {
		if got := cardSSN(t, c); got != ssns[i] || c.State() != ssse.StateFinalized {
			t.Errorf("card %d: holder %s, state %s; want %s, finalized", i+1, cardapp.MaskedSSN(got), c.State(), cardapp.MaskedSSN(ssns[i]))
		}
	}
	if got := cardSSN(t, other); got != otherSSN || other.State() != ssse.StateActive {
		t.Errorf("the refused card was changed: %s %s", cardapp.MaskedSSN(got), other.State())
	}
	// Nothing of the holders in what the batch printed or kept.
	progress, _ := filepath.Glob(filepath.Join(dataDir, "batch", "*.json"))
	if len(progress) != 1 {
		t.Fatalf("progress files: %v", progress)
	}
	kept, _ := os.ReadFile(progress[0])
	for _, s := range ssns {
		for _, out := range []string{run.log(), again.stdout, again.stderr, string(kept)} {
			if strings.Contains(out, s) {
				t.Fatalf("an ID number in the output or the progress file:\n%s", out)
			}
		}
	}

	// A third run has nothing to do.
	r3 := runSSCard(t, env, "personalize-batch", "--reader", vc.Reader, "--holders", file, "--lock")
	if r3.code != 0 || !strings.Contains(r3.stdout, "Every line") {
		t.Fatalf("third run: exit %d\n%s\n%s", r3.code, r3.stdout, r3.stderr)
	}
}

// A bad line is refused by its number before any card is touched, without
// quoting its values.
func TestPersonalizeBatchRefusesABadLine(t *testing.T) {
	file, ssns := batchHolders(t, 2)
	b, _ := os.ReadFile(file)
	bad := strings.Replace(string(b), `"gender":"2"`, `"gender":"2","gender":"1"`, 1)
	bad = strings.Replace(bad, ssns[0], ssns[0]+`","extra":"`+ssns[0], 1)
	os.WriteFile(file, []byte(bad), 0o600)
	r := runSSCard(t, journalEnv(t, t.TempDir()), "personalize-batch", "--reader", "0", "--holders", file)
	if r.code != exitUsage || !strings.Contains(r.stderr, "line 1") || strings.Contains(r.stderr, ssns[0]) {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
}

// On a terminal the batch shows a progress bar; with --json on the same
// terminal, only the JSON results and the prompts.
func TestPersonalizeBatchProgressOnATerminal(t *testing.T) {
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Skip("util-linux script is not installed: no pseudo-terminal to test on")
	}
	pcsctest.EnsurePCSCD(t)
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	vc := pcsctest.StartCard(t, blankCard(t, set, 0x21))
	env := journalEnv(t, t.TempDir())
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
	file, _ := batchHolders(t, 1)
	out := onTTY("personalize-batch", "--reader", vc.Reader, "--holders", file)
	if !strings.Contains(out, "batch holders.jsonl") || !strings.Contains(out, "Batch complete: all 1 lines") {
		t.Fatalf("no progress bar on a terminal:\n%q", out)
	}
	if testing.Verbose() {
		t.Logf("on a terminal:\n%s", out)
	}
	swapCard(t, vc, blankCard(t, set, 0x22))
	file2, _ := batchHolders(t, 1)
	out = onTTY("personalize-batch", "--reader", vc.Reader, "--holders", file2, "--json")
	if strings.Contains(out, "batch holders.jsonl") || !strings.Contains(out, `"status":"done"`) {
		t.Fatalf("progress with --json:\n%q", out)
	}
}

// A line whose data the card's profile refuses fails before anything is
// written; the batch stops (exit 1). Fixed, the same command does it.
func TestPersonalizeBatchFailedLineCanBeFixed(t *testing.T) {
	pcsctest.EnsurePCSCD(t)
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	card := blankCard(t, set, 0x31)
	vc := pcsctest.StartCard(t, card)
	env := journalEnv(t, t.TempDir())
	file, ssns := batchHolders(t, 1)
	good, _ := os.ReadFile(file)
	os.WriteFile(file, []byte(strings.Replace(string(good), `"gender":"2"`, `"gender":"7"`, 1)), 0o600)
	args := []string{"personalize-batch", "--reader", vc.Reader, "--holders", file, "--json"}
	r := runSSCard(t, env, args...)
	if r.code != exitFailure || !strings.Contains(r.stdout, `"status":"failed"`) || !strings.Contains(r.stdout, "holder.gender") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if cardSSN(t, card) != "" || card.State() != ssse.StateBlank {
		t.Fatalf("the card was written: %s", card.State())
	}
	os.WriteFile(file, good, 0o600)
	r = runSSCard(t, env, args...)
	if r.code != 0 || !strings.Contains(r.stdout, `"status":"done"`) || cardSSN(t, card) != ssns[0] {
		t.Fatalf("fixed: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}
