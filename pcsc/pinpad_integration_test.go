package pcsc_test

import (
	"context"
	"errors"
	"testing"

	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
	"ssstation/pcsc/pcsctest"
)

// Through a real pcscd, vpcd's reader publishes no part 10 feature: it is
// reported as having no PIN pad, a PIN pad verify is refused before any
// structure reaches the reader, and the attributes come back without error.
func TestVPCDReaderHasNoPINPad(t *testing.T) {
	vc := pcsctest.StartCard(t, newDefaultCard(t, false))
	_, card := vc.Connect(t, nil)
	ctx := context.Background()
	rf, err := card.Features(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rf.PINPad.Any() || len(rf.Names) != 0 {
		t.Fatalf("vpcd reader reports features %v, pin pad %+v", rf.Names, rf.PINPad)
	}
	if card.PINPad(ctx).Any() {
		t.Fatal("PINPad() reports a pad")
	}
	s := pcsc.VerifyPINStructure{PINFormat: pcsc.PINFormat{FormatString: 0x81, PINBlockString: 0x03, MinDigits: 6, MaxDigits: 6}, APDU: []byte{0x00, 0x20, 0x00, 0x00, 0x03, 0xFF, 0xFF, 0xFF}}
	if _, err := card.VerifyPINDirect(ctx, s); !errors.Is(err, pcsc.ErrNoPINPad) {
		t.Fatalf("verify on vpcd: %v", err)
	}
	ra, err := card.Attributes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Protocol != "T=1" {
		t.Fatalf("attributes %+v", ra)
	}
	t.Logf("vpcd attributes: %+v", ra)
	// The card is still usable after the control calls.
	if resp, err := card.Transmit(ctx, apdu.Command{INS: 0x84, Ne: 8, Name: "GET CHALLENGE"}); err != nil {
		t.Fatalf("after the feature request: %v %v", err, resp.SW)
	}
}

// A reader with no card is asked in direct mode: vpcd's reader answers
// and reports no PIN pad.
func TestReaderInfoWithoutCard(t *testing.T) {
	d := pcsctest.EnsurePCSCD(t)
	vc := pcsctest.StartCard(t, newDefaultCard(t, false)) // takes one reader; the other stays empty
	pc, err := pcsc.Establish()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Release()
	st, err := pc.Status(readerNames(d))
	if err != nil {
		t.Fatal(err)
	}
	empty := ""
	for _, s := range st {
		if s.Reader != vc.Reader && !s.CardPresent {
			empty = s.Reader
		}
	}
	if empty == "" {
		t.Fatal("no empty reader: the tests of this package do not run in parallel, so the other reader should be free")
	}
	ra, rf, err := pc.ReaderInfo(context.Background(), empty)
	if err != nil {
		t.Fatalf("direct connection to %q: %v", empty, err)
	}
	if rf.PINPad.Any() || ra == nil {
		t.Fatalf("%+v %+v", ra, rf)
	}
}

func readerNames(d *pcsctest.Daemon) []string {
	var out []string
	for _, r := range d.Readers {
		out = append(out, r.Name)
	}
	return out
}
