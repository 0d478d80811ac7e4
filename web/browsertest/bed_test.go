package browsertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc/pcsctest"
	"ssstation/station/api"
	"ssstation/station/config"
	"ssstation/web"
)

var stationdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "browsertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stationdBin = filepath.Join(dir, "stationd")
	if out, err := exec.Command("go", "build", "-o", stationdBin, "ssstation/cmd/stationd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build stationd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// unavailable fails under CI=true and skips elsewhere, with the remedy.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("browser test bed unavailable (CI=true, so this fails rather than skips): %s", msg)
	}
	t.Skipf("browser test bed unavailable: %s (apt-get install -y chromium)", msg)
}

func findChromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	unavailable(t, "no chromium on PATH")
	return ""
}

// tab is a headless Chromium tab and what its pages wrote to the console.
type tab struct {
	ctx     context.Context
	mu      sync.Mutex
	console []string
}

// browser starts a headless Chromium with a new empty profile and returns
// a tab. The machine's network is closed: everything the browser might
// fetch on its own (updates, sync, QUIC probes) is off.
func browser(t *testing.T) *tab { return browserIn(t, "en-US") }

// browserIn is browser with the given UI language (--lang), which pages
// see as navigator.languages.
func browserIn(t *testing.T, lang string) *tab {
	t.Helper()
	exe := findChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("lang", lang),
		chromedp.Flag("accept-lang", lang),
		chromedp.WindowSize(1280, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil {
		cancelCtx()
		cancelAlloc()
		unavailable(t, "chromium does not start: %v", err)
	}
	tb := &tab{ctx: ctx}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.console = append(tb.console, m.String())
			tb.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	return tb
}

// consoleText is everything the pages wrote to the console so far.
func (tb *tab) consoleText() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return strings.Join(tb.console, "\n")
}

// do runs browser steps with a bound, failing the test with what the page
// showed when they do not finish.
func (tb *tab) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(tb.ctx, 40*time.Second)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatalf("%s: %v\npage text:\n%s\nconsole:\n%s", what, err, tb.text(t, "body"), tb.consoleText())
	}
}

// waitJS waits until the expression is true in the page.
func (tb *tab) waitJS(t *testing.T, what, expr string) {
	t.Helper()
	c, cancel := context.WithTimeout(tb.ctx, 40*time.Second)
	defer cancel()
	if _, err := chromedp.Run(c, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(35*time.Second))); err != nil {
		t.Fatalf("%s: %v\npage text:\n%s\nconsole:\n%s", what, err, tb.text(t, "body"), tb.consoleText())
	}
}

// text is the rendered text of the first element matching sel ("" if none).
func (tb *tab) text(t *testing.T, sel string) string {
	t.Helper()
	c, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	s, _ := chromedp.Run(c, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {innerText: ""}).innerText`, sel)))
	return s
}

// screenshot saves the whole page as a PNG test artifact.
func (tb *tab) screenshot(t *testing.T, name string) string {
	t.Helper()
	c, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return saveArtifact(t, name, png)
}

// station is one stationd process on this process's pcscd.
type station struct {
	t      testing.TB
	base   string // http://127.0.0.1:PORT
	port   int
	tokens map[string]string // token name -> token
	cmd    *exec.Cmd
	exited chan struct{}
	logMu  sync.Mutex
	log    bytes.Buffer
}

// tokenSpec is one token of the station's configuration.
type tokenSpec struct {
	name, role string
	origins    []string // "SELF" stands for the station's own origin
}

// freePort picks a loopback port for a server this test starts next: the
// station's own origin must be in the console token's allow-list before
// the station starts.
func freePort(t testing.TB, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startStation(t testing.TB, specs ...tokenSpec) *station {
	t.Helper()
	d := pcsctest.EnsurePCSCD(t)
	dir := t.TempDir()
	port := freePort(t, "127.0.0.1")
	s := &station{t: t, port: port, base: fmt.Sprintf("http://127.0.0.1:%d", port), tokens: map[string]string{}}
	cfg := config.Default()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.TerminalNo, cfg.DeviceNo = "410100813475", "browsertest"
	cfg.Keys.Provider = config.ProviderTest
	cfg.Daemon.Listen = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.Daemon.LogFormat = "json"
	for _, sp := range specs {
		var origins []string
		for _, o := range sp.origins {
			if o == "SELF" {
				o = s.base
			}
			origins = append(origins, o)
		}
		tok, rec, err := api.NewToken(sp.name, sp.role, origins)
		if err != nil {
			t.Fatal(err)
		}
		s.tokens[sp.name] = tok
		cfg.Daemon.Tokens = append(cfg.Daemon.Tokens, config.TokenConfig{Name: rec.Name, Role: string(rec.Role), Hash: rec.Hash, Origins: rec.Origins})
	}
	raw, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(dir, "station.json")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(stationdBin, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), d.Env()...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	ready := make(chan struct{}, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logMu.Lock()
			s.log.WriteString(line + "\n")
			s.logMu.Unlock()
			if strings.Contains(line, `"event":"ready"`) {
				select {
				case ready <- struct{}{}:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(40 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("stationd log:\n%s", s.logs())
		}
	})
	select {
	case <-ready:
	case <-s.exited:
		t.Fatalf("stationd exited before it was ready:\n%s", s.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("stationd not ready after 30 s:\n%s", s.logs())
	}
	return s
}

// waitCardPresent waits until stationd shows a card in the named reader
// (and so has published its card.inserted event).
func (s *station) waitCardPresent(t testing.TB, tokenName, reader string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", s.base+"/v1/readers", nil)
		req.Header.Set("Authorization", "Bearer "+s.tokens[tokenName])
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			var rs struct {
				Readers []struct {
					Name        string `json:"name"`
					CardPresent bool   `json:"card_present"`
				} `json:"readers"`
			}
			err = json.NewDecoder(res.Body).Decode(&rs)
			res.Body.Close()
			for _, r := range rs.Readers {
				if err == nil && r.Name == reader && r.CardPresent {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("stationd never showed a card in %q", reader)
}

func (s *station) logs() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// noSecretsInLog fails when a PIN or a full ID number of the test shows
// up in stationd's log.
func (s *station) noSecretsInLog(t testing.TB, secrets ...string) {
	t.Helper()
	logs := s.logs()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(logs, sec) {
			t.Errorf("stationd's log holds a secret (%s…)", sec[:2])
		}
	}
}

// pageServer serves the embedded web files on another loopback origin,
// as a counter application's own web server would.
func pageServer(t testing.TB, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		unavailable(t, "cannot listen on %s: %v", host, err)
	}
	srv := &http.Server{Handler: web.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// newCard makes a built-in cardsim card (delivered cards arrive active
// with their initial PIN, as station/issuance's tests load them).
func newCard(t testing.TB, image string) *ssse.Card {
	t.Helper()
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	b, err := ssse.BuiltinJSON(image)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(image, "delivered-") {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		m["state"] = string(ssse.StateActive)
		b, _ = json.Marshal(m)
	}
	img, err := ssse.ParseImage(b)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := ssse.New(img, set)
	if err != nil {
		t.Fatal(err)
	}
	return sim
}

// saveArtifact writes a test artifact (go test -artifacts keeps it under
// -outputdir) and logs where it is.
func saveArtifact(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("artifact: %s", p)
	return p
}

// eval evaluates a JavaScript expression that yields a string.
func (tb *tab) eval(t *testing.T, expr string) string {
	t.Helper()
	c, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(c, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// evalAsync evaluates an expression that yields a promise of a string.
func (tb *tab) evalAsync(t *testing.T, expr string) string {
	t.Helper()
	c, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(c, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate: %v\nconsole:\n%s", err, tb.consoleText())
	}
	return s
}

// nonLoopbackIPv4 is an address of this machine outside 127/8, for a page
// in a less private address space than the station.
func nonLoopbackIPv4(t testing.TB) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	t.Skip("this machine has no non-loopback IPv4 address to serve a page from")
	return ""
}

// waitConsole waits until the browser's console shows text (the browser
// reports refusals there, asynchronously).
func (tb *tab) waitConsole(t *testing.T, text string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(tb.consoleText(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("the browser console never showed %q:\n%s", text, tb.consoleText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
