// Package e2e starts the stationd BINARY on the test bed (a private pcscd,
// vpcd, cardsim cards) and drives it over HTTP as counter and bank
// software would, validating every response against the service's own
// OpenAPI document.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc/pcsctest"
	"ssstation/station/api"
	"ssstation/station/config"
)

var (
	binDir   string
	stationd string
	sscard   string

	// allLogs is every line every stationd of the suite wrote: TestMain
	// greps it for PINs and full ID numbers once the tests are done.
	allLogs   bytes.Buffer
	allLogsMu sync.Mutex
)

// secrets are the PINs and ID numbers the suite uses: none may appear in
// any log line.
var secrets = []string{
	"864209", "123456", "582064", "135790", "246801", "111111", "975310", // PINs
	"110105198512310029", "44030519900101123X", // sample-v3, delivered-v2 holders
	personalizeSSN,
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stationd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	stationd, sscard = filepath.Join(dir, "stationd"), filepath.Join(dir, "sscard")
	for _, b := range [][2]string{{stationd, "ssstation/cmd/stationd"}, {sscard, "ssstation/cmd/sscard"}} {
		out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", b[1], err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	if code == 0 {
		allLogsMu.Lock()
		logs := allLogs.String()
		allLogsMu.Unlock()
		if leaks := findSecrets(logs); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: the stationd logs of the suite hold secrets:\n%s\n", strings.Join(leaks, "\n"))
			code = 1
		} else if !strings.Contains(logs, `"event":"ready"`) {
			fmt.Fprintln(os.Stderr, "FAIL: the log check saw no stationd log at all")
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// clockFields are log fields the clock fills: a six-digit PIN turns up in
// a nanosecond timestamp by chance, so they are left out of the search.
var clockFields = []string{"time", "duration", "startup", "grace"}

func findSecrets(logs string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		text := line
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			for _, f := range clockFields {
				delete(m, f)
			}
			b, _ := json.Marshal(m)
			text = string(b)
		}
		packed := strings.ReplaceAll(text, " ", "")
		for _, s := range secrets {
			if strings.Contains(text, s) || strings.Contains(packed, s) {
				out = append(out, fmt.Sprintf("%q holds %s…", line, s[:2]))
			}
		}
	}
	return out
}

// station is one stationd process over a data directory that outlives it
// (restarts reuse it).
type station struct {
	t       testing.TB
	dir     string
	cfg     string
	store   string
	tokens  map[string]string // role -> token
	cmd     *exec.Cmd
	base    string
	client  *http.Client
	exited  chan struct{}
	logMu   sync.Mutex
	log     bytes.Buffer
	doc     *openapi3.T
	router  routers.Router
	pcscEnv []string
}

// newStation writes a configuration with a token per role and starts
// stationd on it.
func newStation(t testing.TB) *station {
	t.Helper()
	return newStationOn(t, pcsctest.EnsurePCSCD(t))
}

// newStationOn runs stationd on the given pcscd.
func newStationOn(t testing.TB, d *pcsctest.Daemon) *station {
	t.Helper()
	dir := t.TempDir()
	s := &station{t: t, dir: dir, cfg: filepath.Join(dir, "station.json"), store: filepath.Join(dir, "data", "station.db"),
		tokens: map[string]string{}, client: &http.Client{Timeout: 90 * time.Second}, pcscEnv: d.Env()}
	cfg := config.Default()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.TerminalNo, cfg.DeviceNo = "410100813475", "e2e"
	cfg.Keys.Provider = config.ProviderTest
	cfg.Daemon.Listen = "127.0.0.1:0"
	cfg.Daemon.LogFormat = "json"
	for _, role := range []string{"counter", "bank", "technician", "admin"} {
		tok, rec, err := api.NewToken(role+"-desk", role, []string{"https://counter.example.cn"})
		if err != nil {
			t.Fatal(err)
		}
		s.tokens[role] = tok
		cfg.Daemon.Tokens = append(cfg.Daemon.Tokens, config.TokenConfig{Name: rec.Name, Role: string(rec.Role), Hash: rec.Hash, Origins: rec.Origins})
	}
	raw, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(s.cfg, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("stationd log:\n%s", s.logs())
		}
	})
	return s
}

// start runs stationd and waits for its "ready" log line.
func (s *station) start() {
	s.t.Helper()
	cmd := exec.Command(stationd, "serve", "--config", s.cfg)
	cmd.Env = append(s.pcscEnv, "STATIOND_SHUTDOWN_GRACE=20s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logMu.Lock()
			s.log.WriteString(line + "\n")
			s.logMu.Unlock()
			allLogsMu.Lock()
			allLogs.WriteString(line + "\n")
			allLogsMu.Unlock()
			var ev struct {
				Event  string `json:"event"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "ready" {
				select {
				case ready <- ev.Listen:
				default:
				}
			}
		}
		cmd.Wait()
		close(s.exited)
	}()
	select {
	case addr := <-ready:
		s.base = "http://" + addr
	case <-s.exited:
		s.t.Fatalf("stationd exited before it was ready:\n%s", s.logs())
	case <-time.After(30 * time.Second):
		s.t.Fatalf("stationd not ready after 30 s:\n%s", s.logs())
	}
	if s.doc == nil {
		s.loadOpenAPI()
	}
}

func (s *station) logs() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// stop sends SIGTERM and waits for the process to end.
func (s *station) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(40 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Errorf("stationd did not stop on SIGTERM within 40 s")
	}
	s.cmd = nil
}

// kill is kill -9.
func (s *station) kill() {
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

func (s *station) loadOpenAPI() {
	s.t.Helper()
	r := s.do("GET", "/v1/openapi.json", "", nil, nil)
	if r.status != 200 {
		s.t.Fatalf("GET /v1/openapi.json: %d %s", r.status, r.body)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(r.body)
	if err != nil {
		s.t.Fatalf("the OpenAPI document does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		s.t.Fatalf("the OpenAPI document is invalid: %v", err)
	}
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		s.t.Fatal(err)
	}
	s.doc, s.router = doc, router
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r *resp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response %d is not JSON: %v: %s", r.status, err, r.body)
	}
}

// problem is the problem+json body.
type problem struct {
	Code       string `json:"code"`
	LegacyCode int    `json:"legacy_code"`
	SW         string `json:"sw"`
	TriesLeft  *int   `json:"tries_left"`
	Retryable  bool   `json:"retryable"`
}

// operation is the operation resource.
type operation struct {
	ID       string  `json:"id"`
	Kind     string  `json:"kind"`
	State    string  `json:"state"`
	Progress float64 `json:"progress"`
	Steps    []struct{ Name, State string }
	Result   json.RawMessage `json:"result"`
}

// do sends one request as role ("" = no token) and validates the answer
// against the OpenAPI document.
func (s *station) do(method, path, role string, body any, hdr map[string]string) *resp {
	s.t.Helper()
	var rd io.Reader
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+s.tokens[role])
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := &resp{status: res.StatusCode, header: res.Header, body: b}
	if s.router != nil {
		s.validate(req, raw, r)
	}
	return r
}

func (s *station) validate(req *http.Request, body []byte, r *resp) {
	s.t.Helper()
	vreq := req.Clone(context.Background())
	if body != nil {
		vreq.Body = io.NopCloser(bytes.NewReader(body))
	}
	route, params, err := s.router.FindRoute(vreq)
	if err != nil {
		s.t.Fatalf("%s %s is not in the OpenAPI document: %v", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.status, Header: r.header,
		Body: io.NopCloser(bytes.NewReader(r.body)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		s.t.Fatalf("%s %s answered %d outside the OpenAPI document: %v\n%s", req.Method, req.URL.Path, r.status, err, r.body)
	}
}

// post sends a card operation and waits for it (Prefer: wait).
func (s *station) post(path, role, key string, body any) *resp {
	s.t.Helper()
	h := map[string]string{"Prefer": "wait=30"}
	if key != "" {
		h["Idempotency-Key"] = key
	}
	return s.do("POST", path, role, body, h)
}

// card puts a built-in cardsim image into a free virtual reader.
func card(t testing.TB, image string) (*pcsctest.VirtualCard, *ssse.Card) {
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
		// The profiles' cards are delivered active and holding the initial
		// PIN, not transport-locked (as station/issuance's tests load them).
		var m map[string]any
		json.Unmarshal(b, &m)
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
	return pcsctest.StartCard(t, sim), sim
}

// readerID waits until stationd shows a card (or none) in the named reader
// and returns the reader's id.
func (s *station) readerID(name string, present bool) string {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		r := s.do("GET", "/v1/readers", "technician", nil, nil)
		var rs struct {
			Readers []struct {
				ID          string `json:"id"`
				Name        string `json:"name"`
				CardPresent bool   `json:"card_present"`
			} `json:"readers"`
		}
		r.decode(s.t, &rs)
		for _, rd := range rs.Readers {
			if rd.Name == name && rd.CardPresent == present {
				return rd.ID
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("reader %q never showed card_present=%v", name, present)
	return ""
}

func newKey(t testing.TB, tag string) string {
	return fmt.Sprintf("%s-%s-%d", t.Name(), tag, time.Now().UnixNano())
}

// The log check finds a secret in a message and ignores clock fields.
func TestFindSecrets(t *testing.T) {
	logs := `{"level":"info","time":"2026-11-30T04:19:15.514246801Z","message":"ok"}
{"level":"info","message":"pin 246801 typed"}
not json 110105198512310029`
	if got := findSecrets(logs); len(got) != 2 {
		t.Fatalf("findSecrets: %q", got)
	}
}
