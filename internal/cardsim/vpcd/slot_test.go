package vpcd_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"ssstation/internal/cardsim/vpcd"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

// echoCard answers every command with its header and 9000.
type echoCard struct {
	mu     sync.Mutex
	resets int
	cmds   int
}

func (c *echoCard) ATR() []byte { return []byte{0x3B, 0x02, 0x41, 0x42} }
func (c *echoCard) Reset() {
	c.mu.Lock()
	c.resets++
	c.mu.Unlock()
}
func (c *echoCard) Process(cmd []byte) []byte {
	c.mu.Lock()
	c.cmds++
	c.mu.Unlock()
	return append(append([]byte(nil), cmd[:4]...), 0x90, 0x00)
}
func (c *echoCard) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resets, c.cmds
}

// fakeVPCD plays pcscd's side of the protocol.
type fakeVPCD struct {
	ln    net.Listener
	conns chan net.Conn
}

func newFake(t *testing.T) *fakeVPCD {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeVPCD{ln: ln, conns: make(chan net.Conn, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *fakeVPCD) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-f.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(3 * time.Second):
		t.Fatal("the slot did not connect")
		return nil
	}
}

func (f *fakeVPCD) noConnect(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case c := <-f.conns:
		c.Close()
		t.Fatal("the slot connected while it should not")
	case <-time.After(d):
	}
}

func send(t *testing.T, c net.Conn, payload []byte) {
	t.Helper()
	b := binary.BigEndian.AppendUint16(nil, uint16(len(payload)))
	if _, err := c.Write(append(b, payload...)); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func recv(c net.Conn) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(h[:]))
	_, err := io.ReadFull(c, b)
	return b, err
}

func mustRecv(t *testing.T, c net.Conn) []byte {
	t.Helper()
	b, err := recv(c)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return b
}

func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	b, err := recv(c)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("expected the slot to close the connection, got % X, %v", b, err)
	}
}

func startSlot(t *testing.T, addr string, card vpcd.Card) *vpcd.Slot {
	t.Helper()
	s := vpcd.NewSlot(addr, card)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProtocol(t *testing.T) {
	f := newFake(t)
	card := &echoCard{}
	s := startSlot(t, f.ln.Addr().String(), card)
	c := f.accept(t)
	waitFor(t, "Connected", s.Connected)

	send(t, c, []byte{vpcd.CtrlPowerOn})
	send(t, c, []byte{vpcd.CtrlATR})
	if atr := mustRecv(t, c); !bytes.Equal(atr, card.ATR()) {
		t.Fatalf("ATR % X", atr)
	}
	send(t, c, []byte{vpcd.CtrlReset})
	send(t, c, []byte{vpcd.CtrlPowerOff})
	send(t, c, mustHex(t, "00A4040000"))
	if r := mustRecv(t, c); !bytes.Equal(r, mustHex(t, "00A404009000")) {
		t.Fatalf("response % X", r)
	}
	resets, cmds := card.counts()
	// One reset for the connection, three for the controls.
	if resets != 4 || cmds != 1 {
		t.Fatalf("resets=%d cmds=%d, want 4 and 1", resets, cmds)
	}
	st := s.Stats()
	if st.APDUs != 1 || st.Connects != 1 || st.Resets != 3 || st.Dropped != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	if !s.Present() {
		t.Fatal("not Present")
	}
}

func TestStatusOnceAndLatency(t *testing.T) {
	f := newFake(t)
	card := &echoCard{}
	s := startSlot(t, f.ln.Addr().String(), card)
	c := f.accept(t)

	s.StatusOnce(0x6A82)
	send(t, c, mustHex(t, "00B0000004"))
	if r := mustRecv(t, c); !bytes.Equal(r, []byte{0x6A, 0x82}) {
		t.Fatalf("StatusOnce answer % X", r)
	}
	if _, cmds := card.counts(); cmds != 0 {
		t.Fatalf("the card saw the StatusOnce command")
	}
	send(t, c, mustHex(t, "00B0000004"))
	if r := mustRecv(t, c); !bytes.Equal(r, mustHex(t, "00B000009000")) {
		t.Fatalf("after StatusOnce: % X", r)
	}

	s.Latency(30 * time.Millisecond)
	start := time.Now()
	send(t, c, mustHex(t, "00B0000004"))
	mustRecv(t, c)
	// A lower bound only: the slot sleeps before it answers and a sleep
	// never ends early, so no load can make this fail.
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("Latency(30ms) answered after %v", d)
	}
	s.Latency(0)
	if st := s.Stats(); st.APDUs != 3 {
		t.Fatalf("APDUs = %d, want 3", st.APDUs)
	}
}

func TestRemoveAfterAndInsert(t *testing.T) {
	f := newFake(t)
	card := &echoCard{}
	s := startSlot(t, f.ln.Addr().String(), card)
	c := f.accept(t)

	s.RemoveAfter(2)
	for range 2 {
		send(t, c, mustHex(t, "0084000008"))
		mustRecv(t, c)
	}
	expectClosed(t, c)
	waitFor(t, "removal", func() bool { return !s.Present() && !s.Connected() })
	f.noConnect(t, 400*time.Millisecond)

	s.Insert()
	c = f.accept(t)
	waitFor(t, "Connected", s.Connected)
	send(t, c, mustHex(t, "0084000008"))
	mustRecv(t, c)
	if st := s.Stats(); st.Connects != 2 || st.APDUs != 3 {
		t.Fatalf("Stats = %+v", st)
	}

	s.Remove()
	expectClosed(t, c)
	if s.Present() || s.Connected() {
		t.Fatal("still present after Remove")
	}
	// A different card while removed.
	other := &echoCard{}
	s.SetCard(other)
	if s.Card() != other {
		t.Fatal("Card() is not the card just set")
	}
	s.Insert()
	c = f.accept(t)
	send(t, c, []byte{vpcd.CtrlATR})
	mustRecv(t, c)
	send(t, c, mustHex(t, "0084000008"))
	mustRecv(t, c)
	if _, cmds := other.counts(); cmds != 1 {
		t.Fatalf("the new card processed %d commands", cmds)
	}
	// RemoveAfter(0) is an immediate removal.
	s.RemoveAfter(0)
	expectClosed(t, c)
}

func TestDrop(t *testing.T) {
	f := newFake(t)
	card := &echoCard{}
	s := startSlot(t, f.ln.Addr().String(), card)
	c := f.accept(t)
	s.Drop()
	send(t, c, []byte{vpcd.CtrlATR}) // controls are still answered
	mustRecv(t, c)
	send(t, c, mustHex(t, "0084000008"))
	expectClosed(t, c)
	if _, cmds := card.counts(); cmds != 0 {
		t.Fatal("the dropped command reached the card")
	}
	waitFor(t, "removal", func() bool { return !s.Present() })
	if st := s.Stats(); st.Dropped != 1 || st.APDUs != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	f.noConnect(t, 300*time.Millisecond)
}

// When vpcd closes the connection while the card is inserted (pcscd
// restarting), the slot connects again.
func TestReconnectAfterHostClose(t *testing.T) {
	f := newFake(t)
	s := startSlot(t, f.ln.Addr().String(), &echoCard{})
	c := f.accept(t)
	c.Close()
	start := time.Now()
	c = f.accept(t)
	t.Logf("reconnected after %v", time.Since(start))
	send(t, c, mustHex(t, "0084000008"))
	mustRecv(t, c)
	if st := s.Stats(); st.Connects != 2 {
		t.Fatalf("Connects = %d", st.Connects)
	}
}

// A refused connection (no pcscd yet) is retried until vpcd appears.
func TestRetryRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // now refused
	s := startSlot(t, addr, &echoCard{})
	time.Sleep(400 * time.Millisecond)
	if s.Connected() {
		t.Fatal("connected to nothing")
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	defer ln.Close()
	// 3 s is a hang guard, not a speed target: the pause between two
	// attempts is TestRetryDelay's business.
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(3 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("no retry: %v", err)
	}
	defer c.Close()
}

// The slot dials again after 100-250 ms (jittered, so that slots started
// together do not hammer a restarting pcscd in step).
func TestRetryDelay(t *testing.T) {
	lo, hi := time.Hour, time.Duration(0)
	for range 2000 {
		d := vpcd.RetryDelay()
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 100*time.Millisecond || hi >= 250*time.Millisecond || hi-lo < 50*time.Millisecond {
		t.Fatalf("retry delays span %v..%v, want within 100ms..250ms and jittered", lo, hi)
	}
}

func TestRunEndsWithContext(t *testing.T) {
	f := newFake(t)
	s := vpcd.NewSlot(f.ln.Addr().String(), &echoCard{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	c := f.accept(t)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return")
	}
	expectClosed(t, c)
	// A removed card's Run also ends.
	s.Remove()
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- s.Run(ctx) }()
	cancel()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Run of a removed slot did not return")
	}
}

func TestNoCard(t *testing.T) {
	s := vpcd.NewSlot("127.0.0.1:1", nil)
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("Run without a card succeeded")
	}
}

// Traces never carry PIN or key data.
func TestLogRedaction(t *testing.T) {
	f := newFake(t)
	var mu sync.Mutex
	var log strings.Builder
	s := vpcd.NewSlot(f.ln.Addr().String(), &echoCard{})
	s.Logf = func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(&log, format+"\n", args...)
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	c := f.accept(t)
	for _, cmd := range []string{
		"0020000003123456", "8024000108DEADBEEFCAFEBABE", "805E010007111111FF222222",
		"0082000A10A1A2A3A4A5A6A7A8A9AAABACADAEAFB0", "0088000010C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0",
		"00A4000002EF05",
	} {
		send(t, c, mustHex(t, cmd))
		mustRecv(t, c)
	}
	cancel()
	<-done
	mu.Lock()
	out := log.String()
	mu.Unlock()
	for _, secret := range []string{"12 34 56", "DE AD", "11 11", "22 22", "A1 A2", "C1 C2"} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"00 20 00 00 [4 bytes hidden]", "00 A4 00 00 02 EF 05"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if vpcd.Sensitive(0xB0) || !vpcd.Sensitive(0x82) {
		t.Error("Sensitive")
	}
}

// All methods may be called while the slot serves.
func TestConcurrentUse(t *testing.T) {
	f := newFake(t)
	s := startSlot(t, f.ln.Addr().String(), &echoCard{})
	c := f.accept(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.Latency(0)
			s.StatusOnce(0x9000)
			_ = s.Stats()
			_ = s.Present()
			_ = s.Connected()
			_ = s.Card()
		}
	}()
	for range 50 {
		send(t, c, mustHex(t, "0084000008"))
		mustRecv(t, c)
	}
	close(stop)
	wg.Wait()
}
