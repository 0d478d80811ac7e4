// Package bundle writes a support bundle: one tar.gz a technician sends
// when a station misbehaves, holding what is needed to tell whether the
// reader, the card, the keys, the configuration or the software is at
// fault, and nothing that protects a holder or the issuer.
//
// The bundle holds the versions (the tool, Go, every module, pcscd, the
// operating system), the configuration with its secrets removed, the
// readers and their PC/SC attributes and part 10 features, the firmware
// profiles in use, a bounded tail of the logs it was pointed at, the audit
// chain's verification, and the diagnostics report. Every member passes
// through the ID-number mask; log lines also through the full redactor
// (Line): PIN-looking fields, tokens, bearer credentials and long hex
// strings are removed. Key files are named by their path, never read.
//
// Write takes everything it reports as parameters: the caller (sscard
// bundle) runs the diagnostics and loads the configuration, so that the
// bundle shows what the station itself sees.
package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	profiles "ssstation/firmware-profiles"
	"ssstation/station/audit"
	"ssstation/station/config"
	"ssstation/station/diag"
	"ssstation/station/store"
)

// Root is the directory every member sits in inside the archive.
const Root = "ssstation-bundle"

// DefaultLogLines is how many of a log's last lines are kept.
const DefaultLogLines = 2000

// maxLogBytes bounds what is read from the end of one log file.
const maxLogBytes = 4 << 20

// Options are what the bundle reports.
type Options struct {
	// Tool and Version name the program writing the bundle ("sscard", "dev").
	Tool, Version string

	// Config is the station's configuration (nil: none could be loaded,
	// ConfigError says why); ConfigPath is where it was read from.
	Config      *config.Config
	ConfigPath  string
	ConfigError error

	// Profiles is the set in use (built-in plus Config.ProfilesDir).
	Profiles      *profiles.Set
	ProfilesError error

	// Diag is the diagnostics report (diag.Run); DiagError why there is none.
	Diag      *diag.Report
	DiagError error

	// StorePath is stationd's store, whose audit chain is verified
	// (read-only); "" skips it.
	StorePath string

	// Logs are log files whose tails are included, redacted. Journald,
	// when set, is a systemd unit whose journal is read with journalctl.
	Logs     []string
	Journald string
	// LogLines is how many last lines of each log are kept (0: DefaultLogLines).
	LogLines int
	// LogNote says where the daemon's logs are when no log was given
	// (printed in the manifest).
	LogNote string

	// PCSCDVersion reports pcscd's version (nil: `pcscd --version`).
	PCSCDVersion func(ctx context.Context) (string, error)
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Manifest is the bundle's table of contents (MANIFEST.json).
type Manifest struct {
	Created  time.Time `json:"created"`
	Tool     string    `json:"tool"`
	Version  string    `json:"version"`
	Members  []Member  `json:"members"`
	Redacted []string  `json:"redacted"`
	Notes    []string  `json:"notes"`
}

// Member is one file of the bundle.
type Member struct {
	Name  string `json:"name"`
	What  string `json:"what"`
	Bytes int    `json:"bytes"`
}

// redactionPolicy is what MANIFEST.json says was removed, for the person
// receiving the bundle.
var redactionPolicy = []string{
	"every member: ID-number-shaped runs of 15 to 18 digits masked (first 4 and last 2 characters kept)",
	"config.json: the API tokens' sha256 hashes removed; key files named by path, never read",
	"logs: values of fields named like pin, password, secret, token, key, authorization, cookie removed; bearer/basic credentials, sst_ tokens and hex strings of 32 digits or more removed",
	"PINs and keys are never collected: nothing in the bundle reads a PIN or a key file",
}

// writer adds members to the archive and keeps the manifest.
type writer struct {
	tw  *tar.Writer
	now time.Time
	man Manifest
}

func (w *writer) add(name, what string, body []byte) error {
	body = []byte(IDNumbers(string(body)))
	hdr := &tar.Header{Name: Root + "/" + name, Mode: 0o600, Size: int64(len(body)), ModTime: w.now, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("bundle: %s: %w", name, err)
	}
	if _, err := w.tw.Write(body); err != nil {
		return fmt.Errorf("bundle: %s: %w", name, err)
	}
	if name != "MANIFEST.json" {
		w.man.Members = append(w.man.Members, Member{Name: name, What: what, Bytes: len(body)})
	}
	return nil
}

func (w *writer) addJSON(name, what string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("bundle: %s: %w", name, err)
	}
	return w.add(name, what, append(b, '\n'))
}

func (w *writer) note(format string, args ...any) {
	w.man.Notes = append(w.man.Notes, fmt.Sprintf(format, args...))
}

// Write writes the bundle to out as a gzip-compressed tar archive. A part
// that cannot be collected is noted in the manifest (and in that part's
// member), never a reason to write no bundle: the error is reserved for
// writing itself and a cancelled context.
func Write(ctx context.Context, out io.Writer, o Options) error {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	gz := gzip.NewWriter(out)
	w := &writer{tw: tar.NewWriter(gz), now: now().UTC()}
	w.man = Manifest{Created: w.now, Tool: o.Tool, Version: o.Version, Redacted: redactionPolicy, Notes: []string{}}

	steps := []func(context.Context, *writer, *Options) error{
		writeVersions, writeConfig, writeReaders, writeProfiles, writeLogs, writeAudit, writeDiag,
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := step(ctx, w, &o); err != nil {
			return err
		}
	}
	if err := w.addJSON("MANIFEST.json", "", w.man); err != nil {
		return err
	}
	if err := w.tw.Close(); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return gz.Close()
}

// Versions is versions.json.
type Versions struct {
	Tool       string            `json:"tool"`
	Version    string            `json:"version"`
	Go         string            `json:"go"`
	OS         string            `json:"os"`
	Arch       string            `json:"arch"`
	OSRelease  string            `json:"os_release,omitempty"`
	Kernel     string            `json:"kernel,omitempty"`
	Module     string            `json:"module,omitempty"`
	Build      map[string]string `json:"build,omitempty"`
	Modules    []ModuleVersion   `json:"modules"`
	PCSCD      string            `json:"pcscd,omitempty"`
	PCSCDError string            `json:"pcscd_error,omitempty"`
}

// ModuleVersion is one module the binary was built with.
type ModuleVersion struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	Replace string `json:"replace,omitempty"`
}

func writeVersions(ctx context.Context, w *writer, o *Options) error {
	v := Versions{Tool: o.Tool, Version: o.Version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Modules: []ModuleVersion{}}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Module = bi.Main.Path
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Module += "@" + bi.Main.Version
		}
		v.Build = map[string]string{}
		for _, s := range bi.Settings {
			// The VCS state and the toolchain's settings; never the
			// environment-dependent flags (they may hold paths with names).
			if strings.HasPrefix(s.Key, "vcs.") || s.Key == "GOOS" || s.Key == "GOARCH" || s.Key == "CGO_ENABLED" || s.Key == "-race" || s.Key == "-trimpath" {
				v.Build[s.Key] = s.Value
			}
		}
		for _, d := range bi.Deps {
			m := ModuleVersion{Path: d.Path, Version: d.Version}
			if d.Replace != nil {
				m.Replace = d.Replace.Path + "@" + d.Replace.Version
			}
			v.Modules = append(v.Modules, m)
		}
	} else {
		w.note("versions: the binary carries no build information (module versions unknown)")
	}
	v.OSRelease = osRelease()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		v.Kernel = strings.TrimSpace(string(b))
	}
	pv := o.PCSCDVersion
	if pv == nil {
		pv = pcscdVersion
	}
	if s, err := pv(ctx); err != nil {
		v.PCSCDError = err.Error()
		w.note("versions: pcscd's version unknown: %v", err)
	} else {
		v.PCSCD = s
	}
	return w.addJSON("versions.json", "sscard, Go, module, pcscd and operating system versions", v)
}

func osRelease() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// pcscdVersion runs `pcscd --version` (bounded) and keeps its first line.
func pcscdVersion(ctx context.Context) (string, error) {
	path, err := exec.LookPath("pcscd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/pcscd", "/sbin/pcscd"} {
			if _, serr := os.Stat(p); serr == nil {
				path, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return "", errors.New("pcscd is not installed on this machine (or not on PATH)")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", path, err)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(first), nil
}

func writeConfig(_ context.Context, w *writer, o *Options) error {
	doc := map[string]any{"path": o.ConfigPath}
	if o.ConfigError != nil {
		doc["error"] = o.ConfigError.Error()
		w.note("config: %v", o.ConfigError)
	}
	if o.Config != nil {
		// diag.RedactConfig removes the tokens' hashes; key files, the
		// PSAM key table and the store are paths, and stay.
		doc["config"] = diag.RedactConfig(o.Config)
		doc["test_keys"] = o.Config.TestKeys()
		doc["store_path"] = o.Config.StorePath()
	}
	return w.addJSON("config.json", "the configuration, secrets removed (token hashes); paths kept", doc)
}

// ReaderEntry is one reader in readers.json: the diagnostics' view of it
// without the card's details (diag.json has those).
type ReaderEntry struct {
	Name        string `json:"name"`
	Role        string `json:"role"`
	CardPresent bool   `json:"card_present"`
	Mute        bool   `json:"mute,omitempty"`
	ATR         string `json:"atr,omitempty"`
	Protocol    string `json:"protocol,omitempty"`
	MaxAPDUData int    `json:"max_apdu_data,omitempty"`
	Attributes  any    `json:"attributes,omitempty"`
	Features    any    `json:"features,omitempty"`
	Error       string `json:"error,omitempty"`
}

func writeReaders(_ context.Context, w *writer, o *Options) error {
	doc := map[string]any{}
	if o.Diag == nil {
		doc["error"] = "no diagnostics report: readers not listed"
		if o.DiagError != nil {
			doc["error"] = o.DiagError.Error()
		}
		return w.addJSON("readers.json", "PC/SC readers: attributes and part 10 features", doc)
	}
	doc["service"] = o.Diag.Service
	readers := []ReaderEntry{}
	for _, r := range o.Diag.Readers {
		e := ReaderEntry{Name: r.Name, Role: r.Role, CardPresent: r.CardPresent, Mute: r.Mute, Protocol: r.Protocol, MaxAPDUData: r.MaxAPDUData, Error: r.Error}
		if r.Attributes != nil {
			e.Attributes = r.Attributes
		}
		if r.Features != nil {
			e.Features = r.Features
		}
		if r.Card != nil {
			e.ATR = r.Card.ATR
		}
		readers = append(readers, e)
	}
	doc["readers"] = readers
	return w.addJSON("readers.json", "PC/SC readers: attributes and part 10 features", doc)
}

// ProfileEntry is one profile in profiles/index.json.
type ProfileEntry struct {
	Name        string `json:"name"`
	SpecVersion string `json:"spec_version"`
	Source      string `json:"source"` // "built-in" or the override file
	Assumptions int    `json:"assumptions"`
}

func writeProfiles(_ context.Context, w *writer, o *Options) error {
	doc := map[string]any{"profiles_dir": ""}
	if o.Config != nil {
		doc["profiles_dir"] = o.Config.ProfilesDir
	}
	if o.ProfilesError != nil {
		doc["error"] = o.ProfilesError.Error()
		w.note("profiles: %v", o.ProfilesError)
	}
	entries := []ProfileEntry{}
	if o.Profiles != nil {
		for _, p := range o.Profiles.List() {
			src := "built-in"
			if filepath.IsAbs(p.SourceFile) || strings.ContainsRune(p.SourceFile, filepath.Separator) {
				src = p.SourceFile
			}
			entries = append(entries, ProfileEntry{Name: p.Name, SpecVersion: p.SpecVersion, Source: src, Assumptions: len(p.Assumptions)})
			if err := w.addJSON("profiles/"+safeName(p.Name)+".json", "the profile as loaded ("+src+")", p); err != nil {
				return err
			}
		}
	}
	doc["profiles"] = entries
	if err := w.addJSON("profiles/index.json", "the firmware profiles in use and where each comes from", doc); err != nil {
		return err
	}
	// The override directory's files, as written: what differs from the
	// built-in profiles of this version.
	if o.Config != nil && o.Config.ProfilesDir != "" {
		files, err := os.ReadDir(o.Config.ProfilesDir)
		if err != nil {
			w.note("profiles: override directory: %v", err)
			return nil
		}
		for _, f := range files {
			ext := filepath.Ext(f.Name())
			if f.IsDir() || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			b, err := readBounded(filepath.Join(o.Config.ProfilesDir, f.Name()), 1<<20)
			if err != nil {
				w.note("profiles: %s: %v", f.Name(), err)
				continue
			}
			if err := w.add("profiles/overrides/"+safeName(f.Name()), "an override profile file, as written", b); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeLogs(ctx context.Context, w *writer, o *Options) error {
	n := o.LogLines
	if n <= 0 {
		n = DefaultLogLines
	}
	if len(o.Logs) == 0 && o.Journald == "" {
		msg := "logs: no log file was given (--log FILE) and none is configured"
		if o.LogNote != "" {
			msg += ": " + o.LogNote
		}
		w.note("%s", msg)
	}
	for i, path := range o.Logs {
		lines, err := tailFile(path, n)
		if err != nil {
			w.note("logs: %s: %v", path, err)
			continue
		}
		name := fmt.Sprintf("logs/%d-%s", i+1, safeName(filepath.Base(path)))
		if err := w.add(name, fmt.Sprintf("the last %d lines of %s, redacted", len(lines), path), redactLines(lines)); err != nil {
			return err
		}
	}
	if o.Journald != "" {
		lines, err := journald(ctx, o.Journald, n)
		if err == nil && len(lines) == 0 {
			w.note("logs: the journal has no entries for the unit %s", o.Journald)
		}
		if err != nil {
			w.note("logs: journald unit %s: %v", o.Journald, err)
		} else if err := w.add("logs/journald-"+safeName(o.Journald)+".log", fmt.Sprintf("the last %d lines of the %s unit's journal, redacted", len(lines), o.Journald), redactLines(lines)); err != nil {
			return err
		}
	}
	return nil
}

func redactLines(lines []string) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(Line(l))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// tailFile returns the last n lines of a regular file, reading at most
// maxLogBytes from its end.
func tailFile(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	off := int64(0)
	if fi.Size() > maxLogBytes {
		off = fi.Size() - maxLogBytes
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return lastLines(io.LimitReader(f, maxLogBytes), n, off > 0)
}

// lastLines keeps the last n lines of r; with partial, the first line
// read is a fragment and dropped.
func lastLines(r io.Reader, n int, partial bool) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLogBytes)
	ring := make([]string, 0, n)
	first := true
	for sc.Scan() {
		if first && partial {
			first = false
			continue
		}
		first = false
		if len(ring) == n {
			ring = append(ring[:0], ring[1:]...)
		}
		ring = append(ring, sc.Text())
	}
	return ring, sc.Err()
}

func journald(ctx context.Context, unit string, n int) ([]string, error) {
	path, err := exec.LookPath("journalctl")
	if err != nil {
		return nil, errors.New("journalctl is not installed")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--no-pager", "-o", "cat", "-n", fmt.Sprint(n), "-u", unit).Output()
	if err != nil {
		return nil, fmt.Errorf("journalctl: %w", err)
	}
	return lastLines(bytes.NewReader(out), n, false)
}

// AuditResult is audit.json: the audit chain's verification.
type AuditResult struct {
	Store    string `json:"store"`
	State    string `json:"state"` // "ok", "broken", "absent", "locked", "unreadable", "not checked"
	Entries  int    `json:"entries"`
	OK       *bool  `json:"ok,omitempty"`
	BrokenAt uint64 `json:"broken_at,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

func writeAudit(_ context.Context, w *writer, o *Options) error {
	res := VerifyAudit(o.StorePath)
	if res.State != "ok" {
		w.note("audit: %s %s", res.State, res.Detail)
	}
	return w.addJSON("audit.json", "the audit chain walked from its first entry (sscard audit verify)", res)
}

// VerifyAudit opens the store read-only and walks the audit chain.
func VerifyAudit(path string) AuditResult {
	res := AuditResult{Store: path, State: "not checked"}
	if path == "" {
		res.Detail = "no store path"
		return res
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		res.State, res.Detail = "absent", "stationd has not run here yet: no audit trail"
		return res
	}
	st, err := store.Open(path, store.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
	switch {
	case errors.Is(err, store.ErrLocked):
		res.State, res.Detail = "locked", "stationd has the store open: verify through GET /v1/audit, or stop stationd and run sscard audit verify"
		return res
	case err != nil:
		res.State, res.Detail = "unreadable", err.Error()
		return res
	}
	defer st.Close()
	n, err := audit.Verify(st.DB())
	ok := err == nil
	res.OK, res.Entries = &ok, n
	var be *audit.BreakError
	switch {
	case ok:
		res.State = "ok"
	case errors.As(err, &be):
		res.State, res.BrokenAt, res.Reason = "broken", be.Seq, be.Reason
	default:
		res.State, res.Detail = "unreadable", err.Error()
	}
	return res
}

func writeDiag(_ context.Context, w *writer, o *Options) error {
	if o.Diag == nil {
		msg := "diagnostics did not run"
		if o.DiagError != nil {
			msg = o.DiagError.Error()
		}
		w.note("diag: %s", msg)
		return w.addJSON("diag.json", "the diagnostics report (sscard diag --json)", map[string]string{"error": msg})
	}
	return w.addJSON("diag.json", "the diagnostics report (sscard diag --json)", o.Diag)
}

// safeName keeps a member name to one plain path element.
func safeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := strings.TrimLeft(b.String(), ".")
	if out == "" {
		return "_"
	}
	return out
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%d bytes, more than %d", fi.Size(), max)
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// Members lists the member names of a bundle (for tests and `tar t`).
func Members(r io.Reader) (map[string][]byte, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(tr, 64<<20))
		if err != nil {
			return nil, err
		}
		out[strings.TrimPrefix(h.Name, Root+"/")] = b
	}
	return out, nil
}
