package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ssstation/internal/cardsim/engine"
	"ssstation/pcsc/apdu"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"--port", "35969", "--port=35970,35971", "--t0", "--card", "x.json", "--control", "/tmp/c.sock", "--host", "::1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Ports, []int{35969, 35970, 35971}) || !o.T0 || o.CardFile != "x.json" || o.Control != "/tmp/c.sock" || o.Host != "::1" {
		t.Fatalf("options %+v", o)
	}
	o, err = parseFlags(nil, io.Discard)
	if err != nil || !slices.Equal(o.Ports, []int{35963}) || o.Host != "127.0.0.1" || o.T0 {
		t.Fatalf("defaults %+v %v", o, err)
	}
	for _, bad := range [][]string{
		{"--port", "0"}, {"--port", "70000"}, {"--port", "x"}, {"--port", "1", "--port", "1"},
		{"--bogus"}, {"extra"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestBuildCard(t *testing.T) {
	def := engine.DefaultImage()
	c, err := buildCard(options{})
	if err != nil || !bytes.Equal(c.ATR(), mustHex(t, def.ATR)) {
		t.Fatalf("default card: %v", err)
	}
	c, err = buildCard(options{T0: true})
	if err != nil || !bytes.Equal(c.ATR(), mustHex(t, def.ATRT0)) {
		t.Fatalf("T=0 card: %v", err)
	}
	// Every call is a fresh card.
	a, _ := buildCard(options{})
	b, _ := buildCard(options{})
	if a == b {
		t.Fatal("buildCard shares cards")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "card.json")
	os.WriteFile(file, []byte(`{"atr": "3B 02 41 42", "mf": {}}`), 0o644)
	c, err = buildCard(options{CardFile: file})
	if err != nil || !bytes.Equal(c.ATR(), []byte{0x3B, 0x02, 0x41, 0x42}) {
		t.Fatalf("card file: %v", err)
	}
	if _, err := buildCard(options{CardFile: filepath.Join(dir, "none.json")}); err == nil {
		t.Fatal("missing card file accepted")
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := apdu.ParseHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRunExitCodes(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--print-image"}, &out, &errb); code != 0 || !bytes.Equal(out.Bytes(), engine.DefaultImageJSON()) {
		t.Fatalf("--print-image: %d %q", code, errb.String())
	}
	if code := run([]string{"--port", "x"}, &out, &errb); code != 2 {
		t.Fatalf("bad flag: exit %d", code)
	}
	if code := run([]string{"-h"}, &out, &errb); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	errb.Reset()
	if code := run([]string{"--card", "/nonexistent/card.json"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "card.json") {
		t.Fatalf("bad card: exit %d %q", code, errb.String())
	}
}

// serve puts a card on a (fake) vpcd port and answers the control channel
// until its context ends.
func TestServe(t *testing.T) {
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
		done <- serve(ctx, options{Ports: []int{port}, Host: "127.0.0.1", Control: sock}, io.Discard)
	}()
	conn, err := vp.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// ATR request.
	conn.Write([]byte{0, 1, 4})
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(conn)
	var hdr [2]byte
	io.ReadFull(r, hdr[:])
	atr := make([]byte, int(hdr[0])<<8|int(hdr[1]))
	io.ReadFull(r, atr)
	if !bytes.Equal(atr, mustHex(t, engine.DefaultImage().ATR)) {
		t.Fatalf("ATR % X", atr)
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
	fmt.Fprintln(ctl, "slots")
	ctl.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, _ := bufio.NewReader(ctl).ReadString('\n')
	if want := fmt.Sprintf("ok %d=connected\n", port); line != want {
		t.Fatalf("slots = %q, want %q", line, want)
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
