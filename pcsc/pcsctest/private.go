package pcsctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// PrivatePCSCD is a pcscd of the test's own, for tests that kill and
// restart the service without disturbing the shared one other packages
// are using. pcsc-lite 1.9 refuses to start a second daemon while
// /run/pcscd/pcscd.comm exists, so it runs in a mount namespace of its own
// where /run/pcscd is a private directory; clients reach it by setting
// PCSCLITE_CSOCK_NAME (read once per process by libpcsclite, so the
// client is a subprocess, e.g. the sscard binary).
type PrivatePCSCD struct {
	t       testing.TB
	dir     string
	Reader  VirtualReader // its one virtual reader slot 0
	Reader1 VirtualReader // slot 1
	cmd     *exec.Cmd
	lock    *fileLock
}

// StartPrivatePCSCD starts a private pcscd with one vpcd entry on port
// (and port+1). Ports 36100 and up are left to such tests.
func StartPrivatePCSCD(t testing.TB, port int) *PrivatePCSCD {
	t.Helper()
	EnsurePCSCD(t) // same prerequisites, and the CI-aware failure
	if _, err := exec.LookPath("unshare"); err != nil {
		unavailable(t, "unshare (util-linux) is needed for a private pcscd")
	}
	l, ok, err := tryLock(portLockPath(port))
	if err != nil || !ok {
		t.Fatalf("private pcscd port %d is in use by another test process (%v)", port, err)
	}
	dir := t.TempDir()
	p := &PrivatePCSCD{t: t, dir: dir, lock: l,
		Reader:  VirtualReader{Name: "Private PCD 00 00", Port: port},
		Reader1: VirtualReader{Name: "Private PCD 00 01", Port: port + 1}}
	if err := os.MkdirAll(filepath.Join(dir, "conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("FRIENDLYNAME \"Private PCD\"\nDEVICENAME /dev/null:0x%X\nLIBPATH %s\nCHANNELID 0x%X\n", port, VPCDDriver, port)
	if err := os.WriteFile(filepath.Join(dir, "conf", "vpcd"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill(); p.lock.unlock() })
	p.Start()
	return p
}

// Socket is the private daemon's socket path.
func (p *PrivatePCSCD) Socket() string { return filepath.Join(p.dir, "run", "pcscd.comm") }

// Env is the environment a client process needs to talk to this daemon.
func (p *PrivatePCSCD) Env() []string {
	return append(os.Environ(), "PCSCLITE_CSOCK_NAME="+p.Socket())
}

// Start runs the daemon (again) and waits for its socket.
func (p *PrivatePCSCD) Start() {
	p.t.Helper()
	run := filepath.Join(p.dir, "run")
	os.Remove(filepath.Join(run, "pcscd.comm"))
	os.Remove(filepath.Join(run, "pcscd.pid"))
	script := fmt.Sprintf("mount --bind %q /run/pcscd && exec pcscd --foreground --error -c %q", run, filepath.Join(p.dir, "conf"))
	cmd := exec.Command("unshare", "-m", "sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, _ := os.Create(filepath.Join(p.dir, fmt.Sprintf("pcscd-%d.log", time.Now().UnixNano())))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		unavailable(p.t, "starting a private pcscd: %v", err)
	}
	p.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := os.Stat(p.Socket()); err == nil && st.Mode()&os.ModeSocket != 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Kill()
	unavailable(p.t, "the private pcscd did not create its socket within 10s (mount namespaces not permitted?)")
}

// Kill stops the daemon the hard way, as a crash would.
func (p *PrivatePCSCD) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}
