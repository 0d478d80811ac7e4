package control_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ssstation/internal/cardsim/control"
	"ssstation/internal/cardsim/engine"
	"ssstation/internal/cardsim/vpcd"
)

func newSlots(t *testing.T, addrs ...string) []*vpcd.Slot {
	t.Helper()
	var out []*vpcd.Slot
	for _, a := range addrs {
		c, err := engine.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, vpcd.NewSlot(a, c))
	}
	return out
}

func TestExec(t *testing.T) {
	slots := newSlots(t, "127.0.0.1:35969", "127.0.0.1:35970")
	a, b := slots[0], slots[1]
	cases := []struct{ line, want string }{
		{"slots", "ok 35969=connecting 35970=connecting"},
		{"remove", "ok 35969 removed"},
		{"slots", "ok 35969=removed 35970=connecting"},
		{"insert 35969", "ok 35969 inserted"},
		{"REMOVE 35970", "ok 35970 removed"},
		{"  insert   35970  ", "ok 35970 inserted"},
		{"remove 1234", "error no slot on port 1234 (slots: 35969 35970)"},
		{"remove x", `error slot "x": want a port number`},
		{"remove 35969 35970", "error too many arguments; usage: remove [SLOT]"},
		{"remove-after 2", "ok 35969 remove-after 2"},
		{"remove-after 0 35970", "ok 35970 remove-after 0"},
		{"remove-after", "error remove-after needs an argument; usage: remove-after N [SLOT]"},
		{"remove-after -1", `error remove-after "-1": want a count >= 0`},
		{"remove-after two", `error remove-after "two": want a count >= 0`},
		{"remove-after 2 35970 x", "error too many arguments; usage: remove-after N [SLOT]"},
		{"insert 35970", "ok 35970 inserted"},
		{"latency 5ms 35970", "ok 35970 latency 5ms"},
		{"latency 0", "ok 35969 latency 0s"},
		{"latency fast", `error latency "fast": want a duration such as 5ms or 0`},
		{"latency -1ms", `error latency "-1ms": want a duration such as 5ms or 0`},
		{"sw-once 6A82", "ok 35969 sw-once 6A82"},
		{"sw-once 0x6a83 35970", "ok 35970 sw-once 6A83"},
		{"sw-once 6A8", `error sw-once "6A8": want 4 hex digits such as 6A82`},
		{"sw-once 6A8G", `error sw-once "6A8G": want 4 hex digits such as 6A82`},
		{"drop", "ok 35969 drop armed"},
		{"drop 35970", "ok 35970 drop armed"},
		{"stats", "ok 35969 apdus=0 connects=0 resets=0 dropped=0 state=connecting"},
		{"stats 35970", "ok 35970 apdus=0 connects=0 resets=0 dropped=0 state=connecting"},
		{"bogus", `error unknown command "bogus"; try help`},
		{"", "error empty command; try help"},
		{"slots 35969", "error slots takes no argument"},
	}
	for _, c := range cases {
		if got := control.Exec(slots, c.line); got != c.want {
			t.Errorf("Exec(%q)\n  = %q\n want %q", c.line, got, c.want)
		}
	}
	if !a.Present() || !b.Present() {
		t.Error("both slots should be inserted at the end")
	}
	if got := control.Exec(slots, "help"); !strings.HasPrefix(got, "ok slots | remove [SLOT]") {
		t.Errorf("help = %q", got)
	}
	if got := control.Exec(nil, "remove"); got != "error no slots" {
		t.Errorf("no slots: %q", got)
	}
	if got := control.Exec(nil, "slots"); got != "ok" {
		t.Errorf("slots with none: %q", got)
	}
}

// fakeVPCD accepts the slot's connections and plays pcscd's side.
func fakeVPCD(t *testing.T) (net.Listener, chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln, conns
}

func accept(t *testing.T, conns chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(3 * time.Second):
		t.Fatal("the slot did not connect")
		return nil
	}
}

// exchange sends one APDU and returns the answer; io.EOF when the card
// closed the connection instead.
func exchange(t *testing.T, c net.Conn, apdu []byte) ([]byte, error) {
	t.Helper()
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(apdu))), apdu...)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(h[:]))
	_, err := io.ReadFull(c, b)
	return b, err
}

// The commands act on a running slot.
func TestExecOnRunningSlot(t *testing.T) {
	ln, conns := fakeVPCD(t)
	slots := newSlots(t, ln.Addr().String())
	port := control.Port(slots[0])
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- slots[0].Run(ctx) }()
	defer func() { cancel(); <-done }()
	c := accept(t, conns)

	challenge := []byte{0x00, 0x84, 0x00, 0x00, 0x08}
	if got := control.Exec(slots, "sw-once 6A82"); !strings.HasPrefix(got, "ok") {
		t.Fatal(got)
	}
	if r, err := exchange(t, c, challenge); err != nil || string(r) != "\x6A\x82" {
		t.Fatalf("after sw-once: % X %v", r, err)
	}
	control.Exec(slots, "remove-after 1")
	if r, err := exchange(t, c, challenge); err != nil || len(r) != 10 {
		t.Fatalf("last APDU: % X %v", r, err)
	}
	// The card is pulled before it reads another command: the slot closes
	// the connection right after its last answer. The test reads that
	// close without sending anything. Sending a command first raced the
	// close: a socket closed with unread data answers RST instead of FIN
	// (RFC 1122 §4.2.2.13), so a command that reached the slot before its
	// close() gave ECONNRESET, one after it io.EOF (about 1 run in 10).
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after remove-after 1: %d bytes, %v; want the connection closed", n, err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for control.Exec(slots, "slots") != "ok "+strconv.Itoa(port)+"=removed" {
		if time.Now().After(deadline) {
			t.Fatalf("slots = %q", control.Exec(slots, "slots"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	control.Exec(slots, "insert")
	c = accept(t, conns)
	control.Exec(slots, "drop")
	if _, err := exchange(t, c, challenge); !errors.Is(err, io.EOF) {
		t.Fatalf("after drop: %v", err)
	}
	for !strings.HasSuffix(control.Exec(slots, "stats"), "state=removed") {
		if time.Now().After(deadline) {
			t.Fatalf("stats = %q", control.Exec(slots, "stats"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got, want := control.Exec(slots, "stats"), "ok "+strconv.Itoa(port)+" apdus=2 connects=2 resets=0 dropped=1 state=removed"; got != want {
		t.Fatalf("stats = %q, want %q", got, want)
	}
}

func converse(t *testing.T, network, addr string, lines ...string) []string {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, strings.Join(lines, "\n")+"\n"); err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func TestServeTCPAndUnix(t *testing.T) {
	slots := newSlots(t, "127.0.0.1:35969")
	for _, addr := range []string{"127.0.0.1:0", filepath.Join(t.TempDir(), "ctl.sock")} {
		ln, err := control.Listen(addr)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- control.Serve(ctx, ln, slots) }()
		got := converse(t, ln.Addr().Network(), ln.Addr().String(), "slots", "", "# comment", "remove", "stats", "insert", "quit", "slots")
		want := []string{"ok 35969=connecting", "ok 35969 removed", "ok 35969 apdus=0 connects=0 resets=0 dropped=0 state=removed", "ok 35969 inserted", "ok bye"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: got %q\nwant %q", addr, got, want)
		}
		// A connection left open does not keep Serve from ending.
		idle, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("Serve did not return")
		}
		idle.Close()
	}
}

func TestListen(t *testing.T) {
	if _, err := control.Listen("0.0.0.0:0"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("0.0.0.0: %v", err)
	}
	if _, err := control.Listen("35990"); err == nil {
		t.Error("a bare port was accepted")
	}
	ln, err := control.Listen("localhost:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()

	sock := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err = control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := control.Listen(sock); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second listener on a live socket: %v", err)
	}
	// A stale socket file (a crashed cardsim) is replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	}
	ln, err = control.Listen(sock)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	ln.Close()
}
