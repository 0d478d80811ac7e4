package pcsc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ebfe/scard"

	"ssstation/pcsc/apdu"
)

// fakeHandle is an SCARDHANDLE that answers with scripted PC/SC codes:
// those pcscd cannot be made to produce on demand. It records the calls.
type fakeHandle struct {
	mu       sync.Mutex
	calls    []string
	begin    []error // BeginTransaction's answers, in turn (then nil)
	end      error   // EndTransaction's answer
	transmit error   // Transmit's error (nil: 9000)
	atr      []byte
	proto    scard.Protocol
}

func (f *fakeHandle) record(format string, args ...any) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *fakeHandle) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, " ")
}

func (f *fakeHandle) Transmit(cmd []byte) ([]byte, error) {
	f.record("transmit")
	if f.transmit != nil {
		return nil, f.transmit
	}
	return []byte{0x90, 0x00}, nil
}
func (f *fakeHandle) Status() (*scard.CardStatus, error) {
	return &scard.CardStatus{Reader: "fake", State: scard.Present | scard.Specific, ActiveProtocol: f.proto, Atr: f.atr}, nil
}
func (f *fakeHandle) BeginTransaction() error {
	f.record("begin")
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.begin) == 0 {
		return nil
	}
	err := f.begin[0]
	f.begin = f.begin[1:]
	return err
}
func (f *fakeHandle) EndTransaction(d scard.Disposition) error {
	f.record("end(%s)", dispName(d))
	return f.end
}
func (f *fakeHandle) Reconnect(_ scard.ShareMode, _ scard.Protocol, d scard.Disposition) error {
	f.record("reconnect(%s)", dispName(d))
	return nil
}
func (f *fakeHandle) Disconnect(d scard.Disposition) error {
	f.record("disconnect(%s)", dispName(d))
	return nil
}
func (f *fakeHandle) Control(uint32, []byte) ([]byte, error) { return nil, scard.ErrUnsupportedFeature }
func (f *fakeHandle) ActiveProtocol() scard.Protocol         { return f.proto }

func dispName(d scard.Disposition) string {
	switch d {
	case scard.LeaveCard:
		return "leave"
	case scard.ResetCard:
		return "reset"
	}
	return fmt.Sprint(uint32(d))
}

// fakeContext connects to the handles given, in turn; dials counts the
// connections made.
func fakeContext(err error, handles ...*fakeHandle) (*Context, *int) {
	dials := 0
	return &Context{dial: func(string, ShareMode, Protocol) (cardHandle, func(), error) {
		if err != nil {
			return nil, nil, err
		}
		h := handles[min(dials, len(handles)-1)]
		dials++
		return h, func() {}, nil
	}}, &dials
}

func connectFake(t *testing.T, h ...*fakeHandle) (*Card, *int) {
	t.Helper()
	pc, dials := fakeContext(nil, h...)
	card, err := pc.Connect(context.Background(), "fake", ConnectOptions{Share: ShareShared, OnClose: LeaveCard})
	if err != nil {
		t.Fatal(err)
	}
	return card, dials
}

// libpcsclite answers SCARD_F_COMM_ERROR when its socket to pcscd breaks
// in the middle of a call: the service went away, not the reader.
func TestCommErrorMeansServiceGone(t *testing.T) {
	card, _ := connectFake(t, &fakeHandle{transmit: scard.ErrCommError, proto: ProtocolT1})
	_, err := card.Transmit(context.Background(), apdu.Command{INS: 0x84, Ne: 8})
	if !errors.Is(err, ErrServiceGone) {
		t.Fatalf("transmit with SCARD_F_COMM_ERROR: %v (kind %v), want service gone", err, KindOf(err))
	}
}

// "No card" and "removed" while connecting mean an empty reader.
func TestNoCardOnConnect(t *testing.T) {
	for _, code := range []scard.Error{scard.ErrNoSmartcard, scard.ErrRemovedCard} {
		pc, _ := fakeContext(code)
		_, err := pc.Connect(context.Background(), "fake", ConnectOptions{Share: ShareShared})
		if !errors.Is(err, ErrNoCard) || errors.Is(err, ErrCardRemoved) {
			t.Errorf("connect answered %v: %v (kind %v), want no card", code, err, KindOf(err))
		}
	}
}

// An unpowered card (SCARD_W_UNPOWERED_CARD) is reconnected, with a reset
// that powers it up, and the transaction goes ahead.
func TestUnpoweredCardReconnects(t *testing.T) {
	h := &fakeHandle{begin: []error{scard.ErrUnpoweredCard}, proto: ProtocolT1}
	card, _ := connectFake(t, h)
	ran := false
	err := card.Transaction(context.Background(), func(ctx context.Context) error { ran = true; return nil })
	if err != nil || !ran {
		t.Fatalf("transaction on an unpowered card: %v (ran %v)", err, ran)
	}
	if got, want := h.log(), "begin reconnect(reset) begin end(leave)"; got != want {
		t.Fatalf("calls %q, want %q", got, want)
	}
}

// A reset asked for at the end of a transaction is never lost: when
// SCardEndTransaction(reset) fails, the handle is disconnected with a
// reset and the connection made again.
func TestResetAtEndNeverLost(t *testing.T) {
	first := &fakeHandle{end: scard.ErrNotTransacted, proto: ProtocolT1}
	second := &fakeHandle{proto: ProtocolT1}
	card, dials := connectFake(t, first, second)
	err := card.Transaction(context.Background(), func(ctx context.Context) error {
		card.ResetAtEnd()
		return nil
	})
	if err == nil {
		t.Fatal("a failed end of transaction was not reported")
	}
	if got, want := first.log(), "begin end(reset) disconnect(reset)"; got != want {
		t.Fatalf("calls %q, want %q", got, want)
	}
	if *dials != 2 {
		t.Fatalf("%d connections, want the card connected again", *dials)
	}
	// The connection is usable again, and the next transaction does not
	// reset (the request was spent).
	if err := card.Transaction(context.Background(), func(ctx context.Context) error {
		_, err := card.Transmit(ctx, apdu.Command{INS: 0x84, Ne: 8})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got, want := second.log(), "begin transmit end(leave)"; got != want {
		t.Fatalf("calls on the new handle %q, want %q", got, want)
	}
}

// The encoding follows the connection: T=0 never gets extended lengths or
// a Le after data; T=1 gets extended lengths only when the card's ATR
// announces them and the reader takes them.
func TestLinkFromProtocolAndCapabilities(t *testing.T) {
	extATR := []byte{0x3B, 0x05, 0x80, 0x73, 0xC0, 0x21, 0xC0} // card capabilities: extended Lc/Le
	plainATR := []byte{0x3B, 0x02, 0x41, 0x42}
	for _, c := range []struct {
		name      string
		proto     scard.Protocol
		atr       []byte
		readerMax int
		want      link
	}{
		{"T=1, card and reader extended", ProtocolT1, extATR, 1024, link{maxData: 1024}},
		{"T=1, reader short", ProtocolT1, extATR, 0, link{maxData: 255}},
		{"T=1, card short", ProtocolT1, plainATR, 1024, link{maxData: 255}},
		{"T=0, both extended", ProtocolT0, extATR, 1024, link{t0: true, maxData: 255}},
	} {
		pc, _ := fakeContext(nil, &fakeHandle{proto: c.proto, atr: c.atr})
		card, err := pc.Connect(context.Background(), "fake", ConnectOptions{Share: ShareShared, MaxAPDUData: c.readerMax})
		if err != nil {
			t.Fatal(err)
		}
		if card.link != c.want {
			t.Errorf("%s: link %+v, want %+v", c.name, card.link, c.want)
		}
	}
}

// A card pulled as the transaction ends: the operation's result stands
// (the card lost its security state with its power), the handle is let go,
// and the Card never connects again behind the caller's back (the card
// now in the reader may be another one): it reports the removal.
func TestRemovedAtEndIsNotReconnected(t *testing.T) {
	h := &fakeHandle{end: scard.ErrRemovedCard, proto: ProtocolT1}
	card, dials := connectFake(t, h, &fakeHandle{proto: ProtocolT1})
	err := card.Transaction(context.Background(), func(ctx context.Context) error {
		card.ResetAtEnd()
		return nil
	})
	if err != nil {
		t.Fatalf("a card pulled after a successful body: %v", err)
	}
	if got, want := h.log(), "begin end(reset) disconnect(leave)"; got != want {
		t.Fatalf("calls %q, want %q", got, want)
	}
	if *dials != 1 {
		t.Fatalf("%d connections after a removal, want 1", *dials)
	}
	if _, err := card.Transmit(context.Background(), apdu.Command{INS: 0x84, Ne: 8}); !errors.Is(err, ErrCardRemoved) {
		t.Fatalf("transmit after the removal: %v, want card removed", err)
	}
	if err := card.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}
