// Package pcsctest is the test bed: it makes sure a real pcscd runs with
// vsmartcard's vpcd readers, puts the project's virtual card (cardsim) into
// a free virtual reader, and hands the test that reader's name. Tests that
// use it go through the whole stack: libpcsclite, pcscd, vpcd, cardsim.
//
// `go test ./...` runs packages as parallel processes, so each virtual
// reader is claimed with an exclusive flock on /tmp/ssstation-vpcd-PORT.lock.
//
// With CI=true a missing pcscd or vpcd is a test failure, never a skip.
package pcsctest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ssstation/pcsc"
)

// VPCDDriver is where Debian's vsmartcard-vpcd installs its pcscd driver.
const VPCDDriver = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"

// ReaderConfDir is where pcscd reads serial reader entries at start.
const ReaderConfDir = "/etc/reader.conf.d"

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
	t.Skipf("test bed unavailable: %s (run `make pcscd` as root to set it up)", msg)
}

var ensureOnce struct {
	sync.Mutex
	readers []VirtualReader
}

// EnsurePCSCD makes sure pcscd runs with vpcd readers and returns those
// readers. It starts pcscd when none runs.
func EnsurePCSCD(t testing.TB) []VirtualReader {
	t.Helper()
	ensureOnce.Lock()
	defer ensureOnce.Unlock()
	if ensureOnce.readers != nil {
		return ensureOnce.readers
	}
	pcscdPath, err := exec.LookPath("pcscd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/pcscd", "/sbin/pcscd"} {
			if _, e := os.Stat(p); e == nil {
				pcscdPath, err = p, nil
				break
			}
		}
	}
	if err != nil {
		unavailable(t, "pcscd is not installed (apt-get install pcscd libpcsclite-dev)")
	}
	if _, err := os.Stat(VPCDDriver); err != nil {
		unavailable(t, "the vpcd driver %s is not installed (apt-get install vsmartcard-vpcd)", VPCDDriver)
	}
	configured, err := ConfiguredVirtualReaders(ReaderConfDir)
	if err != nil || len(configured) == 0 {
		unavailable(t, "no vpcd reader is configured in %s (%v)", ReaderConfDir, err)
	}

	if err := withFileLock("/tmp/ssstation-pcscd-start.lock", func() error {
		if readersVisible(configured) {
			return nil
		}
		if pgrepPCSCD() {
			return fmt.Errorf("pcscd runs but does not show the vpcd readers %s; restart it (make pcscd)", configured[0].Name)
		}
		cmd := exec.Command(pcscdPath) // daemonizes itself and outlives the test
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("starting %s: %v: %s", pcscdPath, err, out)
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if readersVisible(configured) {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("pcscd started but its vpcd readers did not appear within 10s")
	}); err != nil {
		unavailable(t, "%v", err)
	}
	visible := map[string]bool{}
	if pc, err := pcsc.Establish(); err == nil {
		names, _ := pc.Readers()
		for _, n := range names {
			visible[n] = true
		}
		pc.Release()
	}
	var usable []VirtualReader
	for _, r := range configured {
		if visible[r.Name] {
			usable = append(usable, r)
		}
	}
	if len(usable) == 0 {
		unavailable(t, "pcscd shows none of the configured vpcd readers")
	}
	ensureOnce.readers = usable
	return usable
}

func pgrepPCSCD() bool {
	return exec.Command("pgrep", "-x", "pcscd").Run() == nil
}

func readersVisible(configured []VirtualReader) bool {
	pc, err := pcsc.Establish()
	if err != nil {
		return false
	}
	defer pc.Release()
	names, err := pc.Readers()
	if err != nil {
		return false
	}
	for _, n := range names {
		if n == configured[0].Name {
			return true
		}
	}
	return false
}

// ConfiguredVirtualReaders reads pcscd's reader.conf.d entries for the
// vpcd driver: each entry with FRIENDLYNAME F and CHANNELID P gives the
// readers "F 00 00" on port P and "F 00 01" on port P+1.
func ConfiguredVirtualReaders(dir string) ([]VirtualReader, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		return nil, err
	}
	var out []VirtualReader
	for _, f := range files {
		entries, err := parseReaderConf(f)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !strings.Contains(e["LIBPATH"], "libifdvpcd") {
				continue
			}
			name := strings.Trim(e["FRIENDLYNAME"], `"`)
			port, err := strconv.ParseInt(e["CHANNELID"], 0, 32)
			if err != nil || name == "" {
				continue
			}
			out = append(out, VirtualReader{Name: name + " 00 00", Port: int(port)}, VirtualReader{Name: name + " 00 01", Port: int(port) + 1})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out, nil
}

func parseReaderConf(path string) ([]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var entries []map[string]string
	cur := map[string]string{}
	flush := func() {
		if len(cur) > 0 {
			entries = append(entries, cur)
			cur = map[string]string{}
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		val = strings.TrimSpace(val)
		if key == "FRIENDLYNAME" {
			flush()
		}
		cur[key] = val
	}
	flush()
	return entries, sc.Err()
}
