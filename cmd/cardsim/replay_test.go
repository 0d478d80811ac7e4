package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ssstation/internal/transcript"
	"ssstation/pcsc/apdu"
)

var mingwah = filepath.Join("..", "..", "internal", "cardsim", "replay", "testdata", "mingwah-v1-t0.json")

// cardsim --replay serves the transcript's card over the vpcd protocol,
// answers 6D00 to what it does not hold, and the control channel's stats
// count those commands.
func TestServeReplay(t *testing.T) {
	if _, err := parseFlags([]string{"--replay", mingwah, "--card", "sample-v1"}, io.Discard); err == nil {
		t.Fatal("--replay with --card accepted")
	}
	vp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer vp.Close()
	port := vp.Addr().(*net.TCPAddr).Port
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, options{Ports: []int{port}, Host: "127.0.0.1", Control: sock, Replay: mingwah}, io.Discard)
	}()
	conn, err := vp.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	exchange := func(msg []byte) string {
		t.Helper()
		conn.Write(append([]byte{byte(len(msg) >> 8), byte(len(msg))}, msg...))
		var hdr [2]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, int(hdr[0])<<8|int(hdr[1]))
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatal(err)
		}
		return transcript.Hex(b)
	}
	tr, err := transcript.Load(mingwah)
	if err != nil {
		t.Fatal(err)
	}
	if got := exchange([]byte{4}); got != tr.ATR {
		t.Fatalf("ATR %s, want %s", got, tr.ATR)
	}
	sel, _ := apdu.ParseHex("00 A4 04 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF")
	if got := exchange(sel); got != "61 18" {
		t.Fatalf("SELECT SSSE: %s", got)
	}
	if got := exchange([]byte{0x00, 0x84, 0x00, 0x00, 0x08}); got != "6D 00" {
		t.Fatalf("unrecorded GET CHALLENGE: %s", got)
	}
	var ctl net.Conn
	for deadline := time.Now().Add(3 * time.Second); ; {
		if ctl, err = net.Dial("unix", sock); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	fmt.Fprintln(ctl, "stats")
	ctl.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, _ := bufio.NewReader(ctl).ReadString('\n')
	if !strings.HasPrefix(line, fmt.Sprintf("ok %d apdus=2 ", port)) || !strings.HasSuffix(line, " unmatched=1\n") {
		t.Fatalf("stats = %q", line)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("serve did not end")
	}
}
