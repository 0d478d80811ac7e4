package pcsc_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"ssstation/internal/cardsim/engine"
	"ssstation/internal/cardsim/vpcd"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
	"ssstation/pcsc/pcsctest"
)

var ssseAID = []byte("sx1.sh.\xC9\xE7\xBB\xE1\xB1\xA3\xD5\xCF")

func newDefaultCard(t testing.TB, t0 bool) vpcd.Card {
	t.Helper()
	c, err := engine.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if t0 {
		return engine.T0(c)
	}
	return c
}

func selectSSSE(t *testing.T, card *pcsc.Card) {
	t.Helper()
	resp, err := card.Transmit(context.Background(), apdu.Command{INS: 0xA4, P1: 0x04, Data: ssseAID, Name: "SELECT SSSE"})
	if err != nil || !resp.SW.OK() {
		t.Fatalf("SELECT SSSE: %v %v", err, resp.SW)
	}
}

func TestReadRecordThroughPCSCD(t *testing.T) {
	vc := pcsctest.StartCard(t, newDefaultCard(t, false))
	_, card := vc.Connect(t, nil)
	if want := vc.Slot.Card().ATR(); !bytes.Equal(card.ATR(), want) {
		t.Fatalf("ATR through pcscd = %X, want %X", card.ATR(), want)
	}
	if card.Protocol() != pcsc.ProtocolT1 {
		t.Fatalf("protocol %s, want T=1", pcsc.ProtocolName(card.Protocol()))
	}
	err := card.Transaction(context.Background(), func(ctx context.Context) error {
		selectSSSE(t, card)
		resp, err := card.Transmit(ctx, apdu.Command{INS: 0xA4, Data: []byte{0xEF, 0x05}})
		if err != nil || !resp.SW.OK() {
			t.Fatalf("SELECT EF05: %v %v", err, resp.SW)
		}
		resp, err = card.Transmit(ctx, apdu.Command{INS: 0xB2, P1: 3, P2: 4, Ne: 256})
		if err != nil {
			return err
		}
		if !resp.SW.OK() || string(resp.Data) != "\x03\x042.00" {
			t.Fatalf("READ RECORD 3 = %X %s", resp.Data, resp.SW)
		}
		resp, err = card.Transmit(ctx, apdu.Command{INS: 0xB2, P1: 9, P2: 4, Ne: 256})
		if err != nil || resp.SW != apdu.SWRecordNotFound {
			t.Fatalf("READ RECORD 9 = %v %s, want 6A83", err, resp.SW)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The T=0 card answers 61xx to a case-4 SELECT (sent as case 3) and 6Cxx to a READ RECORD
// with the wrong Le: the loop must fetch and resend by itself, and the
// trace must show that it did.
func TestT0GetResponseAndWrongLe(t *testing.T) {
	vc := pcsctest.StartCard(t, newDefaultCard(t, true))
	var trace []pcsc.TraceEvent
	_, card := vc.Connect(t, func(ev pcsc.TraceEvent) { trace = append(trace, ev) })
	if card.Protocol() != pcsc.ProtocolT0 {
		t.Fatalf("protocol %s, want T=0", pcsc.ProtocolName(card.Protocol()))
	}
	ctx := context.Background()
	resp, err := card.Transmit(ctx, apdu.Command{INS: 0xA4, P1: 0x04, Data: ssseAID, Ne: 256, Name: "SELECT SSSE"})
	if err != nil || !resp.SW.OK() || len(resp.Data) == 0 || resp.Data[0] != 0x6F {
		t.Fatalf("SELECT with FCI = %X %v %v", resp.Data, resp.SW, err)
	}
	if len(trace) != 2 || trace[0].SW.SW1() != 0x61 || trace[1].Name != "GET RESPONSE" {
		t.Fatalf("expected SELECT answered 61xx then GET RESPONSE, trace: %v", trace)
	}
	// On T=0 the case 4 SELECT went as case 3: no Le after the data (the
	// virtual T=0 card answers a case 4 TPDU with 6700, as a strict one does).
	if want := append([]byte{0x00, 0xA4, 0x04, 0x00, byte(len(ssseAID))}, ssseAID...); !bytes.Equal(trace[0].RawCommand, want) {
		t.Fatalf("SELECT on the wire % X, want % X", trace[0].RawCommand, want)
	}
	if _, err := card.Transmit(ctx, apdu.Command{INS: 0xA4, Data: []byte{0xEF, 0x05}}); err != nil {
		t.Fatal(err)
	}
	trace = nil
	resp, err = card.Transmit(ctx, apdu.Command{INS: 0xB2, P1: 3, P2: 4, Ne: 10})
	if err != nil || !resp.SW.OK() || string(resp.Data) != "\x03\x042.00" {
		t.Fatalf("READ RECORD with wrong Le = %X %v %v", resp.Data, resp.SW, err)
	}
	if len(trace) != 2 || trace[0].SW.SW1() != 0x6C || !strings.HasSuffix(trace[1].Command, " 06") {
		t.Fatalf("expected 6C06 then a resend with Le=06, trace: %v", trace)
	}
}

// A card pulled in the middle of an operation gives a card-removed error,
// promptly: never a hang.
func TestCardPulledMidOperation(t *testing.T) {
	vc := pcsctest.StartCard(t, newDefaultCard(t, false))
	_, card := vc.Connect(t, nil)
	ctx := context.Background()
	selectSSSE(t, card)
	vc.Slot.RemoveAfter(1)
	if _, err := card.Transmit(ctx, apdu.Command{INS: 0xA4, Data: []byte{0xEF, 0x05}}); err != nil {
		t.Fatalf("the APDU before the pull failed: %v", err)
	}
	start := time.Now()
	_, err := card.Transmit(ctx, apdu.Command{INS: 0xB2, P1: 1, P2: 4, Ne: 256})
	if !errors.Is(err, pcsc.ErrCardRemoved) {
		t.Fatalf("after the pull: %v (kind %v), want card removed", err, pcsc.KindOf(err))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the removal took %s to report", d)
	}
	if !strings.Contains(err.Error(), "card removed") || !strings.Contains(err.Error(), vc.Reader) {
		t.Fatalf("error does not say what happened and where: %v", err)
	}
}

// A connection dropped in the middle of an APDU (the card, or the reader
// under it, vanishes with the command unanswered) also ends in an error
// the caller can act on, not a hang.
func TestConnectionDroppedMidAPDU(t *testing.T) {
	vc := pcsctest.StartCard(t, newDefaultCard(t, false))
	_, card := vc.Connect(t, nil)
	vc.Slot.Drop()
	done := make(chan error, 1)
	go func() {
		_, err := card.Transmit(context.Background(), apdu.Command{INS: 0x84, Ne: 8})
		done <- err
	}()
	select {
	case err := <-done:
		k := pcsc.KindOf(err)
		if k != pcsc.KindCardRemoved && k != pcsc.KindReaderGone {
			t.Fatalf("dropped connection: %v (kind %v), want card removed or reader gone", err, k)
		}
		t.Logf("dropped connection reported as: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("transmit hung after the connection dropped")
	}
}

func TestMonitorSeesInsertAndRemove(t *testing.T) {
	vc := pcsctest.StartCard(t, newDefaultCard(t, false))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan pcsc.Event, 64)
	go (&pcsc.Monitor{}).Run(ctx, events)
	wait := func(typ pcsc.EventType) pcsc.Event {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev.Type == typ && ev.Reader == vc.Reader {
					return ev
				}
			case <-timeout:
				t.Fatalf("no %s event for %q", typ, vc.Reader)
			}
		}
	}
	ev := wait(pcsc.CardInserted) // the card present at start is reported
	if !bytes.Equal(ev.ATR, vc.Slot.Card().ATR()) {
		t.Fatalf("ATR in event %X", ev.ATR)
	}
	vc.Slot.Remove()
	wait(pcsc.CardRemoved)
	vc.Slot.Insert()
	wait(pcsc.CardInserted)
}

// BenchmarkTransmitOverhead sends GET CHALLENGE to cardsim through pcscd,
// alternating the project's transmit loop and a bare scard.Transmit in the
// same run, and reports their ratio (target ≤ 1.05).
func BenchmarkTransmitOverhead(b *testing.B) {
	vc := pcsctest.StartCard(b, newDefaultCard(b, false))
	ctx := context.Background()
	sc, err := scard.EstablishContext()
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Release()
	raw, err := sc.Connect(vc.Reader, scard.ShareShared, scard.ProtocolAny)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Disconnect(scard.LeaveCard)
	pc, err := pcsc.Establish()
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Release()
	card, err := pc.Connect(ctx, vc.Reader, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard})
	if err != nil {
		b.Fatal(err)
	}
	defer card.Close()
	cmd := apdu.Command{INS: 0x84, Ne: 8}
	rawCmd := []byte{0x00, 0x84, 0x00, 0x00, 0x08}
	var ours, bare time.Duration
	b.ResetTimer()
	ourOne := func() {
		t0 := time.Now()
		resp, err := card.Transmit(ctx, cmd)
		ours += time.Since(t0)
		if err != nil || !resp.SW.OK() || len(resp.Data) != 8 {
			b.Fatalf("GET CHALLENGE: %v %s", err, resp.SW)
		}
	}
	bareOne := func() {
		t0 := time.Now()
		r, err := raw.Transmit(rawCmd)
		bare += time.Since(t0)
		if err != nil || len(r) != 10 {
			b.Fatalf("GET CHALLENGE (scard): %v %X", err, r)
		}
	}
	for i := 0; i < b.N; i++ {
		// Alternate which goes first, so neither always pays for the other's wake-ups.
		if i%2 == 0 {
			ourOne()
			bareOne()
		} else {
			bareOne()
			ourOne()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(ours.Microseconds())/float64(b.N), "us-ours/op")
	b.ReportMetric(float64(bare.Microseconds())/float64(b.N), "us-scard/op")
	b.ReportMetric(float64(ours)/float64(bare), "ratio")
}
