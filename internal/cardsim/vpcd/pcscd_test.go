package vpcd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"ssstation/internal/cardsim/engine"
	"ssstation/internal/cardsim/vpcd"
	"ssstation/pcsc/pcsctest"
)

// The integration tests run against this test process's private pcscd
// with vsmartcard's vpcd driver (pcsc/pcsctest: a pcscd in its own mount
// namespace, on a vpcd port pair claimed with an exclusive flock on
// /tmp/ssstation-vpcd-PORT.lock). Without pcscd, vpcd or unshare they skip,
// or fail when CI=true.

// waitState waits until the reader's state has one of the want flags and
// returns how long that took.
func waitState(t testing.TB, ctx *scard.Context, reader string, want scard.StateFlag, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	rs := []scard.ReaderState{{Reader: reader, CurrentState: scard.StateUnaware}}
	for {
		left := timeout - time.Since(start)
		if left <= 0 {
			t.Fatalf("%s: state %#x did not reach %#x within %v", reader, rs[0].EventState, want, timeout)
		}
		if err := ctx.GetStatusChange(rs, left); err != nil && !errors.Is(err, scard.ErrTimeout) {
			t.Fatalf("GetStatusChange: %v", err)
		}
		if rs[0].EventState&want != 0 {
			return time.Since(start)
		}
		rs[0].CurrentState = rs[0].EventState &^ scard.StateChanged
	}
}

func transmit(t *testing.T, card *scard.Card, hexCmd string) ([]byte, uint16) {
	t.Helper()
	cmd := mustHex(t, hexCmd)
	resp, err := card.Transmit(cmd)
	if err != nil {
		t.Fatalf("Transmit %s: %v", hexCmd, err)
	}
	if len(resp) < 2 {
		t.Fatalf("Transmit %s: response % X has no SW", hexCmd, resp)
	}
	n := len(resp) - 2
	return resp[:n], uint16(resp[n])<<8 | uint16(resp[n+1])
}

func describe(err error) string {
	var se scard.Error
	if errors.As(err, &se) {
		return fmt.Sprintf("%v (0x%08X)", err, uint32(se))
	}
	return fmt.Sprintf("%v (%T)", err, err)
}

func connect(t *testing.T, ctx *scard.Context, reader string) *scard.Card {
	t.Helper()
	card, err := ctx.Connect(reader, scard.ShareShared, scard.ProtocolAny)
	if err != nil {
		t.Fatalf("Connect %s: %v", reader, describe(err))
	}
	return card
}

// TestThroughPCSCD runs a card behind the real pcscd and drives it with
// github.com/ebfe/scard: ATR, SELECT + READ BINARY, GET CHALLENGE round
// trip, StatusOnce, Latency, RemoveAfter, Remove, Drop, and a T=0 card
// swapped in while removed.
func TestThroughPCSCD(t *testing.T) {
	d := pcsctest.EnsurePCSCD(t)
	reader, port := d.Readers[0].Name, d.Readers[0].Port

	sctx, err := scard.EstablishContext()
	if err != nil {
		t.Fatalf("EstablishContext: %v", describe(err))
	}
	defer sctx.Release()
	readers, err := sctx.ListReaders()
	if err != nil {
		t.Fatalf("ListReaders: %v", describe(err))
	}
	if !slices.Contains(readers, reader) {
		t.Fatalf("reader %q not found; pcscd has %q", reader, readers)
	}

	img := engine.DefaultImage()
	ecard, err := engine.New(img)
	if err != nil {
		t.Fatal(err)
	}
	slot := vpcd.NewSlot(fmt.Sprintf("127.0.0.1:%d", port), ecard)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- slot.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	took := waitState(t, sctx, reader, scard.StatePresent, 10*time.Second)
	t.Logf("insertion seen by pcscd after %v", took.Round(time.Millisecond))

	card := connect(t, sctx, reader)
	st, err := card.Status()
	if err != nil {
		t.Fatalf("Status: %v", describe(err))
	}
	if !bytes.Equal(st.Atr, ecard.ATR()) {
		t.Fatalf("pcscd ATR % X, image ATR % X", st.Atr, ecard.ATR())
	}
	if p := card.ActiveProtocol(); p != scard.ProtocolT1 {
		t.Errorf("active protocol %v, want T=1", p)
	}

	// SELECT MF, SELECT 2F01 by FID, READ BINARY.
	if _, sw := transmit(t, card, "00A40000023F00"); sw != 0x9000 {
		t.Fatalf("SELECT MF: %04X", sw)
	}
	if _, sw := transmit(t, card, "00A40000022F01"); sw != 0x9000 {
		t.Fatalf("SELECT 2F01: %04X", sw)
	}
	data, sw := transmit(t, card, "00B0000018")
	if sw != 0x9000 || string(data) != "cardsim default image v1" {
		t.Fatalf("READ BINARY: %q %04X", data, sw)
	}
	// SELECT SSSE by name, then a record.
	if _, sw := transmit(t, card, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF00"); sw != 0x9000 {
		t.Fatalf("SELECT SSSE: %04X", sw)
	}
	if data, sw := transmit(t, card, "00B2032C00"); sw != 0x9000 || !bytes.Equal(data, []byte("\x03\x042.00")) {
		t.Fatalf("READ RECORD EF05/3: % X %04X", data, sw)
	}

	// GET CHALLENGE round trips: every one answered (their speed is
	// BenchmarkGetChallengeThroughPCSCD's business, not a test's).
	for range 20 {
		if ch, sw := transmit(t, card, "0084000008"); sw != 0x9000 || len(ch) != 8 {
			t.Fatalf("GET CHALLENGE: % X %04X", ch, sw)
		}
	}

	// StatusOnce and Latency.
	slot.StatusOnce(0x6A82)
	if data, sw := transmit(t, card, "0084000008"); sw != 0x6A82 || len(data) != 0 {
		t.Fatalf("after StatusOnce(6A82): % X %04X", data, sw)
	}
	slot.Latency(20 * time.Millisecond)
	start := time.Now()
	transmit(t, card, "0084000008")
	// A lower bound only: the slot sleeps before it answers, and a sleep
	// never ends early, however loaded the machine (no upper bound here).
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("Latency(20ms): transmit took %v", d)
	}
	slot.Latency(0)

	// RemoveAfter(1): the first transmit is answered, the second fails.
	before := slot.Stats().APDUs
	slot.RemoveAfter(1)
	if _, sw := transmit(t, card, "0084000008"); sw != 0x9000 {
		t.Fatalf("last APDU before removal: %04X", sw)
	}
	pulled := time.Now()
	// vpcd answers a command whose card vanished either with an error or,
	// racing the close, with an empty "response" (no status word): both
	// are a failed exchange (the pcsc package treats them so).
	var resp []byte
	resp, err = card.Transmit(mustHex(t, "0084000008"))
	if err == nil && len(resp) >= 2 {
		t.Fatalf("transmit after RemoveAfter(1) succeeded: % X", resp)
	}
	t.Logf("RemoveAfter(1): second transmit (%v after the pull) failed with %s", time.Since(pulled).Round(time.Microsecond), describe(err))
	took = waitState(t, sctx, reader, scard.StateEmpty, 5*time.Second)
	t.Logf("RemoveAfter(1): pcscd reported the reader empty %v after the pull", time.Since(pulled).Round(time.Millisecond))
	if got := slot.Stats().APDUs - before; got != 1 {
		t.Errorf("APDUs answered after RemoveAfter(1): %d, want 1", got)
	}
	if slot.Present() {
		t.Errorf("Present() after RemoveAfter fired")
	}
	_, err = card.Transmit(mustHex(t, "0084000008"))
	t.Logf("RemoveAfter(1): transmit on the stale handle once pcscd saw the removal: %s", describe(err))
	card.Disconnect(scard.LeaveCard)

	// Insert, then a plain Remove: time pcscd takes to see it.
	slot.Insert()
	took = waitState(t, sctx, reader, scard.StatePresent, 10*time.Second)
	t.Logf("re-insertion seen after %v", took.Round(time.Millisecond))
	card = connect(t, sctx, reader)
	transmit(t, card, "0084000008")
	removed := time.Now()
	slot.Remove()
	if resp, err := card.Transmit(mustHex(t, "0084000008")); err == nil && len(resp) >= 2 {
		t.Fatalf("transmit right after Remove succeeded: % X", resp)
	} else {
		t.Logf("Remove(): transmit right after it failed with %s", describe(err))
	}
	waitState(t, sctx, reader, scard.StateEmpty, 5*time.Second)
	t.Logf("Remove(): pcscd reported the reader empty after %v", time.Since(removed).Round(time.Millisecond))
	_, err = card.Transmit(mustHex(t, "0084000008"))
	if err == nil {
		t.Fatalf("transmit after Remove succeeded")
	}
	t.Logf("Remove(): transmit after pcscd saw the removal: %s", describe(err))
	card.Disconnect(scard.LeaveCard)

	// Drop: the command is read and never answered.
	slot.Insert()
	waitState(t, sctx, reader, scard.StatePresent, 10*time.Second)
	card = connect(t, sctx, reader)
	transmit(t, card, "0084000008")
	slot.Drop()
	dropped := time.Now()
	resp, err = card.Transmit(mustHex(t, "0084000008"))
	switch {
	case err != nil:
		t.Logf("Drop(): transmit failed after %v with %s", time.Since(dropped).Round(time.Microsecond), describe(err))
	case len(resp) < 2:
		// vpcd 3.3 takes the clean EOF for an empty answer: SCardTransmit
		// succeeds with 0 bytes, so the host must treat a response without
		// SW1 SW2 as a failed exchange.
		t.Logf("Drop(): transmit returned no error and a %d-byte response after %v", len(resp), time.Since(dropped).Round(time.Microsecond))
	default:
		t.Fatalf("transmit during Drop was answered: % X", resp)
	}
	waitState(t, sctx, reader, scard.StateEmpty, 5*time.Second)
	t.Logf("Drop(): pcscd reported the reader empty %v after the transmit began", time.Since(dropped).Round(time.Millisecond))
	if st := slot.Stats(); st.Dropped != 1 {
		t.Errorf("Stats().Dropped = %d, want 1", st.Dropped)
	}
	card.Disconnect(scard.LeaveCard)

	// A different card inserted: the same image as a T=0 card.
	t0card, err := engine.New(img)
	if err != nil {
		t.Fatal(err)
	}
	slot.SetCard(engine.T0(t0card))
	slot.Insert()
	waitState(t, sctx, reader, scard.StatePresent, 10*time.Second)
	card = connect(t, sctx, reader)
	defer card.Disconnect(scard.ResetCard)
	st, err = card.Status()
	if err != nil {
		t.Fatalf("Status: %v", describe(err))
	}
	if !bytes.Equal(st.Atr, t0card.ATRT0()) {
		t.Fatalf("T=0 card: pcscd ATR % X, want % X", st.Atr, t0card.ATRT0())
	}
	if p := card.ActiveProtocol(); p != scard.ProtocolT0 {
		t.Errorf("T=0 card: active protocol %v, want T=0", p)
	}
	// vpcd hands the card the host's bytes as they are: a case 4 TPDU
	// (data and Le) reaches the T=0 card, which refuses it as a strict
	// card does; the same command as case 3 is answered 61xx.
	if data, sw = transmit(t, card, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF00"); sw != 0x6700 || len(data) != 0 {
		t.Fatalf("T=0 SELECT SSSE sent as case 4: % X %04X, want 6700", data, sw)
	}
	data, sw = transmit(t, card, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
	if sw != 0x6113 || len(data) != 0 {
		t.Fatalf("T=0 SELECT SSSE: % X %04X, want 6113", data, sw)
	}
	data, sw = transmit(t, card, "00C0000013")
	want := append([]byte{0x6F, 0x11, 0x84, 0x0F}, mustHex(t, "7378312E73682EC9E7BBE1B1A3D5CF")...)
	if sw != 0x9000 || !bytes.Equal(data, want) {
		t.Fatalf("T=0 GET RESPONSE: % X %04X, want % X 9000", data, sw, want)
	}
	if _, sw = transmit(t, card, "00A4000002EF05"); sw != 0x610D {
		t.Fatalf("T=0 SELECT EF05: %04X, want 610D", sw)
	}
	if _, sw = transmit(t, card, "00B2010410"); sw != 0x6C12 {
		t.Fatalf("T=0 READ RECORD 1 Le=10: %04X, want 6C12", sw)
	}
	if data, sw = transmit(t, card, "00B2010412"); sw != 0x9000 || len(data) != 0x12 || data[0] != 0x01 {
		t.Fatalf("T=0 READ RECORD 1 Le=12: % X %04X", data, sw)
	}
}

// BenchmarkGetChallengeThroughPCSCD reports the GET CHALLENGE round trip
// through pcscd with and without TCP_QUICKACK re-armed before each read
// (docs/pcsc.md: ~0.15 ms with it, ~48 ms without, from delayed ACKs).
// A speed is a benchmark's figure, never a test's assertion.
func BenchmarkGetChallengeThroughPCSCD(b *testing.B) {
	for _, quick := range []bool{true, false} {
		b.Run(fmt.Sprintf("quickack=%v", quick), func(b *testing.B) {
			d := pcsctest.EnsurePCSCD(b)
			reader, port := d.Readers[1].Name, d.Readers[1].Port
			sctx, err := scard.EstablishContext()
			if err != nil {
				b.Fatalf("EstablishContext: %v", describe(err))
			}
			defer sctx.Release()
			ecard, err := engine.New(nil)
			if err != nil {
				b.Fatal(err)
			}
			slot := vpcd.NewSlot(fmt.Sprintf("127.0.0.1:%d", port), ecard)
			if !quick {
				vpcd.DisableQuickAck(slot)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- slot.Run(ctx) }()
			defer func() { cancel(); <-done }()
			waitState(b, sctx, reader, scard.StatePresent, 10*time.Second)
			card, err := sctx.Connect(reader, scard.ShareShared, scard.ProtocolAny)
			if err != nil {
				b.Fatalf("Connect: %v", describe(err))
			}
			defer func() {
				card.Disconnect(scard.LeaveCard)
				slot.Remove()
				waitState(b, sctx, reader, scard.StateEmpty, 5*time.Second)
			}()
			cmd := []byte{0x00, 0x84, 0x00, 0x00, 0x08}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if r, err := card.Transmit(cmd); err != nil || len(r) != 10 {
					b.Fatalf("GET CHALLENGE: % X %v", r, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/apdu")
		})
	}
}
