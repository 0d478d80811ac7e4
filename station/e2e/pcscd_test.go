package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/ssse"
	"ssstation/internal/cardsim/vpcd"
	"ssstation/pcsc/pcsctest"
)

// When pcscd goes away, card routes answer 503 PCSC_UNAVAILABLE with
// Retry-After and /v1/ready says not ready; when it comes back, stationd
// recovers by itself (no restart) and reads the card again.
func TestPCSCDownAndBack(t *testing.T) {
	d := pcsctest.StartDaemon(t) // a private pcscd this test may kill
	set, _ := profiles.Builtin()
	img, _ := ssse.Builtin("sample-v3")
	sim, err := ssse.New(img, set)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	slot := vpcd.NewSlot(fmt.Sprintf("127.0.0.1:%d", d.Readers[0].Port), sim)
	done := make(chan struct{})
	go func() { defer close(done); slot.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	s := newStationOn(t, d)
	s.readerID(d.Readers[0].Name, true)
	opOf(t, s.post("/v1/card/read", "counter", "", map[string]any{}))

	d.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := s.post("/v1/card/pin/tries", "bank", "", map[string]any{})
		if r.status == http.StatusServiceUnavailable {
			problemOf(t, r, http.StatusServiceUnavailable, "PCSC_UNAVAILABLE")
			if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 {
				t.Fatalf("PCSC_UNAVAILABLE without Retry-After: %v", r.header)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 503 after pcscd died: %d %s", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := s.do("GET", "/v1/ready", "", nil, nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("ready while pcscd is down: %d", r.status)
	}

	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	s.readerID(d.Readers[0].Name, true)
	opOf(t, s.post("/v1/card/pin/tries", "bank", "", map[string]any{}))
	if r := s.do("GET", "/v1/ready", "", nil, nil); r.status != http.StatusOK {
		t.Fatalf("not ready after pcscd came back: %d %s", r.status, r.body)
	}
}
