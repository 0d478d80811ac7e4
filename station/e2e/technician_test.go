package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ssstation/pcsc/pcsctest"
	"ssstation/station/config"
)

// The technician's routes through the binary: the diagnosis (each reader
// queued on its worker) and the read-side conformance kit, every answer
// validated against the OpenAPI document; a PIN pad request refused on a
// vpcd reader (which has none) without an APDU; refused origins and Host
// headers shown to the technician; a station on the test keys marks its
// answers, its read results and its log.
func TestTechnicianRoutes(t *testing.T) {
	s := newStation(t)
	vc, sim := card(t, "sample-v3")
	id := s.readerID(vc.Reader, true)

	// test keys: said at start, on every answer, in health and in reads
	if !strings.Contains(s.logs(), "TEST KEYS") {
		t.Fatal("no TEST KEYS line in the log at start")
	}
	r := s.do("GET", "/v1/health", "", nil, nil)
	var h struct {
		TestKeys bool `json:"test_keys"`
	}
	r.decode(t, &h)
	if !h.TestKeys || r.header.Get("X-Station-Test-Keys") != "true" {
		t.Fatalf("health on test keys: %s %v", r.body, r.header)
	}
	op := opOf(t, s.post("/v1/card/read", "counter", "", map[string]any{}))
	var rr struct {
		TestKeys bool `json:"test_keys"`
	}
	json.Unmarshal(op.Result, &rr)
	if !rr.TestKeys {
		t.Fatalf("read result without test_keys: %s", op.Result)
	}

	// the PIN pad: vpcd has none, and says so before any APDU
	r = s.do("GET", "/v1/readers/"+id, "technician", nil, nil)
	var rd struct {
		PINPad bool `json:"pinpad"`
	}
	r.decode(t, &rd)
	if rd.PINPad {
		t.Fatal("a vpcd reader reported with a PIN pad")
	}
	before := sim.APDUCount()
	r = s.post("/v1/card/pin/verify", "bank", newKey(t, "pad"), map[string]any{"reader_id": id, "pin_entry": "pinpad"})
	problemOf(t, r, 422, "PINPAD_NOT_AVAILABLE")
	if n := sim.APDUCount() - before; n != 0 {
		t.Fatalf("a PIN pad request on a reader without one sent %d APDUs", n)
	}

	// the diagnosis
	r = s.do("GET", "/v1/diagnostics?latency=3", "technician", nil, nil)
	if r.status != 200 {
		t.Fatalf("diagnostics: %d %s", r.status, r.body)
	}
	var rep struct {
		OK       bool     `json:"ok"`
		Problems []string `json:"problems"`
		Readers  []struct {
			Name string `json:"name"`
			Card *struct {
				Identification struct {
					Profile string `json:"profile"`
				} `json:"identification"`
				Latency struct {
					N, OK int
				} `json:"latency"`
			} `json:"card"`
		} `json:"readers"`
		Keys struct {
			TestKeys bool `json:"test_keys"`
		} `json:"keys"`
		Store struct {
			AuditOK *bool `json:"audit_chain_ok"`
		} `json:"store"`
	}
	r.decode(t, &rep)
	seen := false
	for _, rd := range rep.Readers {
		if rd.Name == vc.Reader && rd.Card != nil && rd.Card.Latency.N == 3 && rd.Card.Latency.OK == 3 && rd.Card.Identification.Profile == sim.Profile().Name {
			seen = true
		}
	}
	if !seen || !rep.OK || !rep.Keys.TestKeys || rep.Store.AuditOK == nil || !*rep.Store.AuditOK {
		t.Fatalf("diagnosis: %s", r.body)
	}
	s.do("GET", "/v1/diagnostics", "counter", nil, nil) // validated: a 403 problem

	// conformance, read side only
	r = s.post("/v1/readers/"+id+"/conform", "technician", "", map[string]any{})
	op = opOf(t, r)
	var cr struct {
		OK      bool   `json:"ok"`
		Profile string `json:"profile"`
		Summary struct{ Pass, Fail int }
	}
	json.Unmarshal(op.Result, &cr)
	if !cr.OK || cr.Summary.Pass == 0 || cr.Profile != sim.Profile().Name {
		t.Fatalf("conformance: %s", op.Result)
	}
	problemOf(t, s.post("/v1/readers/"+id+"/conform", "technician", "", map[string]any{"destructive": true}), 400, "INVALID_REQUEST")

	// refusals: a foreign origin, a foreign Host
	problemOf(t, s.do("POST", "/v1/card/read", "counter", map[string]any{}, map[string]string{"Origin": "https://not-listed.example"}), 403, "ORIGIN_NOT_ALLOWED")
	req, _ := http.NewRequest("GET", s.base+"/v1/readers", nil)
	req.Host = "rebound.example.com" + s.base[strings.LastIndex(s.base, ":"):]
	req.Header.Set("Authorization", "Bearer "+s.tokens["technician"])
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 403 {
		t.Fatalf("foreign Host: %d", res.StatusCode)
	}
	r = s.do("GET", "/v1/refusals", "technician", nil, nil)
	var refs struct {
		Refusals []struct {
			Origin, Host, Route, Code string
		} `json:"refusals"`
	}
	r.decode(t, &refs)
	var origin, host bool
	for _, f := range refs.Refusals {
		origin = origin || (f.Origin == "https://not-listed.example" && f.Route == "/v1/card/read" && f.Code == "ORIGIN_NOT_ALLOWED")
		host = host || (strings.HasPrefix(f.Host, "rebound.example.com:") && f.Code == "HOST_NOT_ALLOWED")
	}
	if !origin || !host || strings.Contains(string(r.body), s.tokens["counter"]) || strings.Contains(string(r.body), s.tokens["technician"]) {
		t.Fatalf("refusals: %s", r.body)
	}
}

// A PSAM reader that is also mapped as a card reader stops stationd at
// start, with a message that names the reader and the fix.
func TestPSAMReaderAsCardReaderRefusedAtStart(t *testing.T) {
	d := pcsctest.EnsurePCSCD(t)
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.TerminalNo, cfg.DeviceNo = "410100813475", "e2e"
	cfg.Keys.Provider = config.ProviderPSAM
	cfg.Keys.PSAMReader = d.Readers[1].Name
	cfg.Daemon.Listen = "127.0.0.1:0"
	cfg.Daemon.LogFormat = "json"
	cfg.Daemon.Readers = []config.ReaderConfig{{Name: d.Readers[1].Name, ID: "desk-1", Role: "card"}}
	raw, _ := json.MarshalIndent(cfg, "", "  ")
	path := filepath.Join(dir, "station.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, stationd, "serve", "--config", path)
	cmd.Env = d.Env()
	out, err := cmd.CombinedOutput()
	allLogsMu.Lock()
	allLogs.Write(out)
	allLogsMu.Unlock()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("stationd started (or hung) with the PSAM's reader mapped as a card reader: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PSAM") || !strings.Contains(string(out), "desk-1") {
		t.Fatalf("the refusal does not say why:\n%s", out)
	}
}
