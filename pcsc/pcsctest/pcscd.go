// Package pcsctest is the test bed: it runs a real pcscd with vsmartcard's
// vpcd reader driver, puts the project's virtual card (cardsim) into a
// virtual reader, and hands the test that reader's name. Tests that use it
// go through the whole stack: libpcsclite, pcscd, vpcd, cardsim.
//
// Each test process gets a pcscd of its own. vpcd 3.3 (Debian bookworm)
// keeps its connection state per slot number only (ctx[Lun & 0xffff]), so
// a second reader.conf.d entry in the same pcscd does not add readers: its
// slots overwrite the first entry's and only the last entry's ports are
// ever served (measured here: connections to the other ports sit in the
// listen backlog unanswered). One pcscd therefore serves exactly two vpcd
// readers, and `go test ./...`, which runs packages as parallel processes,
// needs one pcscd per process. pcsc-lite refuses to start a second daemon
// while /run/pcscd/pcscd.comm exists, so each runs in a mount namespace of
// its own where /run/pcscd is a private directory; this process reaches it
// through PCSCLITE_CSOCK_NAME. Port pairs are claimed across processes
// with an exclusive flock on /tmp/ssstation-vpcd-PORT.lock.
//
// With CI=true a missing pcscd, vpcd or unshare is a test failure, never a skip.
package pcsctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// VPCDDriver is where Debian's vsmartcard-vpcd installs its pcscd driver.
const VPCDDriver = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"

// Port range for the test daemons' vpcd readers: clear of vpcd's default
// 35963/35964, which the system pcscd (and `make demo`) uses.
const (
	firstPort = 36000
	portPairs = 48
)

// VirtualReader is one vpcd reader slot and the TCP port its card connects to.
type VirtualReader struct {
	Name string
	Port int
}

// unavailable fails the test under CI and skips it elsewhere, always with
// the reason and the remedy.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("test bed unavailable (CI=true, so this fails rather than skips): %s", msg)
	}
	t.Skipf("test bed unavailable: %s (run `make pcscd` as root to install pcscd and vpcd)", msg)
}

// Daemon is one private pcscd with one vpcd entry: two readers.
type Daemon struct {
	dir     string
	Port    int // vpcd slot 0; slot 1 is Port+1
	Readers [2]VirtualReader
	lock    *fileLock
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the running daemon's process has been reaped
}

// Socket is the daemon's socket path, for PCSCLITE_CSOCK_NAME.
func (d *Daemon) Socket() string { return filepath.Join(d.dir, "run", "pcscd.comm") }

// Env is the environment for a client subprocess of this daemon.
func (d *Daemon) Env() []string {
	return append(os.Environ(), "PCSCLITE_CSOCK_NAME="+d.Socket())
}

// Logs returns what the daemon printed (errors only), for failure messages.
func (d *Daemon) Logs() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "pcscd.log"))
	return string(b)
}

func prerequisites() error {
	if _, err := findPCSCD(); err != nil {
		return fmt.Errorf("pcscd is not installed (apt-get install pcscd libpcsclite-dev)")
	}
	if _, err := os.Stat(VPCDDriver); err != nil {
		return fmt.Errorf("the vpcd driver %s is not installed (apt-get install vsmartcard-vpcd)", VPCDDriver)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return fmt.Errorf("unshare (util-linux) is not installed")
	}
	return nil
}

func findPCSCD() (string, error) {
	if p, err := exec.LookPath("pcscd"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/pcscd", "/sbin/pcscd"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// StartEmptyDaemon starts a private pcscd with no reader at all.
func StartEmptyDaemon(t testing.TB) *Daemon {
	t.Helper()
	d, err := startDaemon(false)
	if err != nil {
		unavailable(t, "%v", err)
	}
	t.Cleanup(d.Close)
	return d
}

// StartDaemon starts a private pcscd on the first free port pair. It is
// killed at test cleanup (and with this process, whatever happens).
func StartDaemon(t testing.TB) *Daemon {
	t.Helper()
	d, err := startDaemon(true)
	if err != nil {
		unavailable(t, "%v", err)
	}
	t.Cleanup(d.Close)
	return d
}

func startDaemon(withReaders bool) (*Daemon, error) {
	if err := prerequisites(); err != nil {
		return nil, err
	}
	var lock *fileLock
	port := 0
	for i := 0; i < portPairs && lock == nil; i++ {
		p := firstPort + 2*i
		l, ok, err := tryLock(portLockPath(p))
		if err != nil {
			return nil, err
		}
		if ok {
			lock, port = l, p
		}
	}
	if lock == nil {
		return nil, fmt.Errorf("all %d vpcd port pairs from %d are claimed by other test processes", portPairs, firstPort)
	}
	dir, err := os.MkdirTemp("", "ssstation-pcscd-")
	if err != nil {
		lock.unlock()
		return nil, err
	}
	name := fmt.Sprintf("Station Test PCD %d", port)
	d := &Daemon{dir: dir, Port: port, lock: lock,
		Readers: [2]VirtualReader{{Name: name + " 00 00", Port: port}, {Name: name + " 00 01", Port: port + 1}}}
	for _, sub := range []string{"conf", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			d.Close()
			return nil, err
		}
	}
	conf := fmt.Sprintf("FRIENDLYNAME \"%s\"\nDEVICENAME /dev/null:0x%X\nLIBPATH %s\nCHANNELID 0x%X\n", name, port, VPCDDriver, port)
	if !withReaders {
		conf = "# no readers\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "conf", "vpcd"), []byte(conf), 0o644); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.Start(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Start runs the daemon (again, after Kill) and waits for its socket.
func (d *Daemon) Start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		return nil
	}
	pcscd, _ := findPCSCD()
	run := filepath.Join(d.dir, "run")
	os.Remove(filepath.Join(run, "pcscd.comm"))
	os.Remove(filepath.Join(run, "pcscd.pid"))
	script := fmt.Sprintf("mount --bind %q /run/pcscd && exec %s --foreground --error -c %q", run, pcscd, filepath.Join(d.dir, "conf"))
	cmd := exec.Command("unshare", "-m", "sh", "-c", script)
	// The daemon must not outlive the test process, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.OpenFile(filepath.Join(d.dir, "pcscd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting a private pcscd: %w", err)
	}
	logf.Close()
	d.cmd = cmd
	exited := make(chan struct{})
	d.exited = exited
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.After(15 * time.Second)
	for {
		if st, err := os.Stat(d.Socket()); err == nil && st.Mode()&os.ModeSocket != 0 {
			return nil
		}
		select {
		case <-exited:
			d.cmd = nil
			return fmt.Errorf("the private pcscd exited at start (mount namespaces need root): %s", d.Logs())
		case <-deadline:
			return fmt.Errorf("the private pcscd did not create its socket within 15s: %s", d.Logs())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill stops the daemon the hard way, as a crash would.
func (d *Daemon) Kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	select { // Wait runs in Start's goroutine
	case <-d.exited:
	case <-time.After(5 * time.Second):
	}
	d.cmd = nil
}

// Close kills the daemon and releases its ports.
func (d *Daemon) Close() {
	d.Kill()
	if d.lock != nil {
		d.lock.unlock()
		d.lock = nil
	}
	os.RemoveAll(d.dir)
}

var process struct {
	sync.Mutex
	daemon *Daemon
	err    error
	free   [2]bool
	cond   *sync.Cond
	// outSince is when each reader's last card left it (zero: never used).
	outSince [2]time.Time
}

// EnsurePCSCD starts this process's pcscd (once) and points libpcsclite at
// it. It must run before this process makes any other PC/SC call, since
// libpcsclite reads PCSCLITE_CSOCK_NAME once.
func EnsurePCSCD(t testing.TB) *Daemon {
	t.Helper()
	process.Lock()
	defer process.Unlock()
	if process.daemon == nil && process.err == nil {
		d, err := startDaemon(true)
		if err != nil {
			process.err = err
		} else {
			process.daemon = d
			process.free = [2]bool{true, true}
			process.cond = sync.NewCond(&process.Mutex)
			os.Setenv("PCSCLITE_CSOCK_NAME", d.Socket())
		}
	}
	if process.err != nil {
		unavailable(t, "%v", process.err)
	}
	return process.daemon
}
