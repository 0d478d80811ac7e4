//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's master and slave.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// Issue 8 §6: Ctrl-C at the PIN prompt ends sscard (it used to wait for
// the PIN for ever), and the terminal gets its echo back.
func TestInterruptAtPINPromptRestoresTheTerminal(t *testing.T) {
	master, slave := openPTY(t)
	cmd := exec.Command(sscardBin, "pin", "verify", "--reader", "0")
	cmd.Env = noConfig(t)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() { cmd.Process.Kill() }()
	out := make(chan []byte, 16)
	go func() {
		for {
			b := make([]byte, 1024)
			n, err := master.Read(b)
			if n > 0 {
				out <- b[:n]
			}
			if err != nil {
				close(out)
				return
			}
		}
	}()
	var seen bytes.Buffer
	deadline := time.After(time.Minute)
	for !strings.Contains(seen.String(), "PIN: ") {
		select {
		case b, ok := <-out:
			if !ok {
				t.Fatalf("no PIN prompt: %q", seen.String())
			}
			seen.Write(b)
		case <-deadline:
			t.Fatalf("no PIN prompt within a minute: %q", seen.String())
		}
	}
	// The prompt is printed just before the echo goes off: wait for that.
	for i := 0; ; i++ {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if i == 3000 {
			t.Fatal("the echo never went off at the PIN prompt")
		}
		time.Sleep(10 * time.Millisecond)
	}
	master.Write([]byte{0x03}) // Ctrl-C, through the terminal's line discipline
	select {
	case err := <-done:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 130 {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("sscard still waits for the PIN a minute after Ctrl-C")
	}
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&unix.ECHO == 0 {
		t.Fatal("sscard left the terminal without echo")
	}
}
