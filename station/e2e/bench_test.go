package e2e

import (
	"context"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
)

// reinsert pulls the card and puts it back, so the daemon's cache is gone
// and the card is freshly powered.
func reinsert(b *testing.B, s *station, vc interface {
	WaitPresence(bool, time.Duration) error
}, remove, insert func(), name string) {
	remove()
	s.readerID(name, false)
	insert()
	s.readerID(name, true)
}

// BenchmarkReadInfo: POST /v1/card/read (uncached: the card is pulled and
// put back before each) against the same APDU sequence sent raw through
// pcsc (connect, one transaction, the commands, disconnect). Reports
// http/raw (target ≤ 1.20), and the APDUs of a cached re-read (target 0).
func BenchmarkReadInfo(b *testing.B) {
	s := newStation(b)
	vc, sim := card(b, "sample-v2") // reads without authentication: replayable
	s.readerID(vc.Reader, true)

	// The sequence: what cardapp sends for a read, captured in this process.
	set, _ := profiles.Builtin()
	pc, err := pcsc.Establish()
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Release()
	var seq [][]byte
	capture := func(ev pcsc.TraceEvent) {
		if ev.Name == "GET RESPONSE" {
			return
		}
		cmd := ev.RawCommand
		if cmd == nil {
			// A sensitive READ RECORD: its trace hides the answer, but the
			// command has no data, so its header and Le are all there is.
			cmd = replayable(b, ev)
		}
		seq = append(seq, cmd)
	}
	c, err := pc.Connect(context.Background(), vc.Reader, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard, Tracer: capture})
	if err != nil {
		b.Fatal(err)
	}
	err = c.Transaction(context.Background(), func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, c, set, cardapp.Options{Keys: keys.NewTestKeystore()})
		if err != nil {
			return err
		}
		_, err = app.ReadBasicInfo(ctx)
		return err
	})
	c.Close()
	if err != nil {
		b.Fatal(err)
	}
	cmds := make([]apdu.Command, len(seq))
	for i, raw := range seq {
		if cmds[i], err = apdu.ParseCommand(raw); err != nil {
			b.Fatal(err)
		}
	}
	raw := func() {
		c, err := pc.Connect(context.Background(), vc.Reader, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		err = c.Transaction(context.Background(), func(ctx context.Context) error {
			for _, cmd := range cmds {
				r, err := c.Transmit(ctx, cmd)
				if err != nil {
					return err
				}
				if r.SW != apdu.SWOK {
					return r.SW
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	httpRead := func() {
		op := opOf(b, s.post("/v1/card/read", "counter", "", map[string]any{}))
		if strings.Contains(string(op.Result), `"cached":true`) {
			b.Fatal("the benchmarked read came from the cache")
		}
	}

	var httpTime, rawTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		reinsert(b, s, vc, vc.Slot.Remove, vc.Slot.Insert, vc.Reader)
		b.StartTimer()
		// Alternate which goes first after the insertion.
		for k := 0; k < 2; k++ {
			t0 := time.Now()
			if (i+k)%2 == 0 {
				httpRead()
				httpTime += time.Since(t0)
			} else {
				raw()
				rawTime += time.Since(t0)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(httpTime.Microseconds())/float64(b.N)/1000, "http-ms/read")
	b.ReportMetric(float64(rawTime.Microseconds())/float64(b.N)/1000, "raw-ms/read")
	b.ReportMetric(float64(httpTime)/float64(rawTime), "http/raw")
	b.ReportMetric(float64(len(cmds)), "apdus/read")

	// A cached re-read: 0 APDUs at the card.
	opOf(b, s.post("/v1/card/read", "counter", "", map[string]any{}))
	before := sim.APDUCount()
	const rereads = 5
	for i := 0; i < rereads; i++ {
		opOf(b, s.post("/v1/card/read", "counter", "", map[string]any{}))
	}
	b.ReportMetric(float64(sim.APDUCount()-before)/rereads, "apdus/cached-read")
}

// replayable rebuilds a sensitive command from its redacted trace: a READ
// RECORD (no data: header and Le are all of it) or an INTERNAL
// AUTHENTICATE (its data is a random challenge: zeros do the same work on
// the card). Anything else carries a secret and is not replayed.
func replayable(b *testing.B, ev pcsc.TraceEvent) []byte {
	head, le, _ := strings.Cut(ev.Command, " Le=")
	head, redacted, hasData := strings.Cut(head, " [")
	h, err := hex.DecodeString(strings.ReplaceAll(head, " ", ""))
	if err != nil || len(h) < 4 {
		b.Fatalf("cannot rebuild %s from %q", ev.Name, ev.Command)
	}
	cmd := apdu.Command{CLA: h[0], INS: h[1], P1: h[2], P2: h[3]}
	if hasData {
		if cmd.INS != 0x88 {
			b.Fatalf("the read holds a command with secret data (%s): not replayable", ev.Name)
		}
		n, _ := strconv.Atoi(strings.Fields(redacted)[0])
		cmd.Data = make([]byte, n)
	}
	if le != "" {
		cmd.Ne, _ = strconv.Atoi(le)
	}
	raw, err := cmd.Bytes()
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkDaemonRSS: stationd's resident memory with two readers, each
// holding a card that was read.
func BenchmarkDaemonRSS(b *testing.B) {
	s := newStation(b)
	vc1, _ := card(b, "sample-v2")
	vc2, _ := card(b, "sample-v1")
	id1, id2 := s.readerID(vc1.Reader, true), s.readerID(vc2.Reader, true)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		opOf(b, s.post("/v1/card/read", "counter", "", map[string]any{"reader_id": id1}))
		opOf(b, s.post("/v1/card/read", "counter", "", map[string]any{"reader_id": id2}))
	}
	b.StopTimer()
	b.ReportMetric(rssMiB(b, s.cmd.Process.Pid), "rss-MiB")
}

func rssMiB(b *testing.B, pid int) float64 {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkTimeToReady: from exec to the "ready" log line (store open,
// readers listed, HTTP listening), with a card in a reader.
func BenchmarkTimeToReady(b *testing.B) {
	s := newStation(b)
	vc, _ := card(b, "sample-v2")
	s.readerID(vc.Reader, true)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s.stop()
		b.StartTimer()
		t0 := time.Now()
		s.start()
		total += time.Since(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms-to-ready")
}
