package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc"
	"ssstation/station/bundle"
	"ssstation/station/config"
	"ssstation/station/diag"
)

func init() {
	register("bundle", "write a support bundle (tar.gz): versions, configuration without secrets, readers, profiles, redacted log tails, audit chain check, diagnostics", cmdBundle)
}

// version is sscard's version, set at build time (-ldflags "-X main.version=…").
var version = "dev"

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// stationdLogNote says where stationd's logs go, for a bundle made
// without a log file: stationd writes zerolog JSON to its standard error
// and keeps no log file of its own.
const stationdLogNote = "stationd writes its log (JSON) to standard error and keeps no log file: under systemd it is in the journal (--journald UNIT), otherwise wherever its standard error was redirected (--log FILE)"

// cmdBundle is `sscard bundle [--out FILE] [--config FILE] [--log FILE]...`.
func cmdBundle(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("bundle")
	out := fs.String("out", "", "the bundle file to write (mode 0600, never overwritten; default ssstation-bundle-DATE-TIME.tar.gz here; - for standard output)")
	cfgPath := fs.String("config", "", "station configuration file (default $SSSTATION_CONFIG or "+config.DefaultPath+")")
	storePath := fs.String("store", "", "stationd's store, for the audit chain check (default: the configuration's)")
	var logs stringList
	fs.Var(&logs, "log", "a log file whose last lines go into the bundle, redacted (repeatable; e.g. where stationd's standard error is redirected)")
	unit := fs.String("journald", "stationd", "systemd unit whose journal is read with journalctl (none: skip)")
	lines := fs.Int("log-lines", bundle.DefaultLogLines, "how many last lines of each log to keep")
	latency := fs.Int("latency", 5, "GET CHALLENGEs in each card's latency test (diagnostics)")
	reader := fs.String("reader", "", "diagnose only this reader (default: every reader)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("sscard bundle takes no arguments")
	}
	if *lines < 1 || *lines > 100000 {
		return usagef("--log-lines: 1 to 100000")
	}
	if *latency < 1 || *latency > 1000 {
		return usagef("--latency: 1 to 1000")
	}

	o := bundle.Options{Tool: "sscard", Version: version, Logs: logs, LogLines: *lines, LogNote: stationdLogNote}
	if *unit != "none" && *unit != "" {
		o.Journald = *unit
	}
	o.ConfigPath = *cfgPath
	if o.ConfigPath == "" {
		o.ConfigPath = os.Getenv("SSSTATION_CONFIG")
	}
	if o.ConfigPath == "" {
		o.ConfigPath = config.DefaultPath
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		o.ConfigError = err
		cfg = config.Default()
	} else {
		o.Config = cfg
	}
	o.StorePath = *storePath
	if o.StorePath == "" {
		o.StorePath = cfg.StorePath()
	}
	o.Profiles, o.ProfilesError = cfg.Profiles()
	if o.ProfilesError != nil {
		o.Profiles, _ = profiles.Builtin()
	}
	o.Diag, o.DiagError = bundleDiag(ctx, cfg, o.Profiles, *reader, *latency, o.ConfigError)
	if errors.Is(o.DiagError, context.Canceled) {
		return o.DiagError
	}

	// Written to memory first: a bundle is small (log tails are bounded),
	// and a half-written file is never left behind.
	var buf bytes.Buffer
	if err := bundle.Write(ctx, &buf, o); err != nil {
		return err
	}
	name := *out
	if name == "" {
		name = "ssstation-bundle-" + time.Now().UTC().Format("20060102-150405") + ".tar.gz"
	}
	if name == "-" {
		_, err := env.stdout.Write(buf.Bytes())
		return err
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		os.Remove(name)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return err
	}
	members, err := bundle.Members(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return err
	}
	var man struct{ Notes []string }
	_ = json.Unmarshal(members["MANIFEST.json"], &man)
	if *asJSON {
		names := make([]string, 0, len(members))
		for n := range members {
			names = append(names, n)
		}
		sort.Strings(names)
		return writeJSON(env.stdout, map[string]any{"file": name, "bytes": buf.Len(), "members": names, "notes": man.Notes})
	}
	fmt.Fprintf(env.stdout, "Support bundle written to %s (%d bytes, %d files; secrets removed: see MANIFEST.json).\n", name, buf.Len(), len(members))
	for _, n := range man.Notes {
		fmt.Fprintf(env.stdout, "  note: %s\n", termSafe(n))
	}
	return nil
}

// bundleDiag runs the diagnostics as `sscard diag` does, for the bundle.
func bundleDiag(ctx context.Context, cfg *config.Config, set *profiles.Set, reader string, latency int, cfgErr error) (*diag.Report, error) {
	o := diag.Options{Latency: latency, Config: cfg, Profiles: set, KeysSource: cfg.Keys.Provider}
	if cfg.DataDir != "" {
		o.JournalPath = journalFile(cfg)
		o.StorePath = cfg.StorePath()
	}
	pc, err := pcsc.Establish()
	if err != nil {
		o.ServiceError = fmt.Errorf("cannot reach the smart card service (is pcscd running?): %w", err)
	} else {
		defer pc.Release()
		o.PCSC = pc
		if reader != "" {
			name, err := resolveReader(pc, reader)
			if err != nil {
				return nil, err
			}
			o.Readers = []string{name}
		}
	}
	if cfg.Keys.Provider == config.ProviderPSAM {
		if pc == nil {
			o.KeysError = errors.New("PSAM: the smart card service is not reachable")
		} else if done, perr := attachDiagPSAM(ctx, pc, cfg, &o); perr != nil {
			o.KeysError = perr
		} else {
			defer done()
		}
	} else if o.Keys, err = cfg.HostKeys(); err != nil {
		o.KeysError = err
	}
	if o.Keys != nil {
		defer o.Keys.Close()
	}
	rep, err := diag.Run(ctx, o)
	if err != nil {
		return nil, err
	}
	if cfgErr != nil {
		rep.Problems = append([]string{"configuration: " + cfgErr.Error()}, rep.Problems...)
		rep.OK = false
	}
	return rep, nil
}
