package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	psamhost "ssstation/cardapp/keys/psam"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc"
	"ssstation/station/config"
	"ssstation/station/diag"
)

func init() {
	register("diag", "diagnose the station: PC/SC service, readers (attributes, part 10 features, PIN pad), cards (ATR, profile, PIN tries, files, latency), keys, configuration, journal and audit (exit 4: problem found)", cmdDiag)
}

// exitProblemFound is sscard's exit code when diag or conform ran through
// and found something wrong (a reader, a card, the keys, a file): distinct
// from a failure to run at all (1) and a bad command line (2).
const exitProblemFound = 4

// problemFound carries the count of problems and the exit code.
type problemFound struct {
	what string
	n    int
}

func (p problemFound) Error() string { return fmt.Sprintf("%d %s", p.n, p.what) }
func (p problemFound) ExitCode() int { return exitProblemFound }

func cmdDiag(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("diag")
	reader := fs.String("reader", "", "diagnose only this reader (a name, an index from `sscard readers`, or a unique part of a name); default: every reader")
	cfgPath := fs.String("config", "", "station configuration file (default $SSSTATION_CONFIG or "+config.DefaultPath+")")
	asJSON := fs.Bool("json", false, "print JSON")
	n := fs.Int("latency", diag.DefaultLatency, "number of GET CHALLENGEs in each card's latency test")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("sscard diag takes no arguments")
	}
	if *n < 1 || *n > 10000 {
		return usagef("--latency: 1 to 10000 GET CHALLENGEs")
	}
	o := diag.Options{Latency: *n}
	var cfgErr error
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		// Diagnose with the defaults, and say the file is the first problem.
		cfgErr, cfg = err, config.Default()
	}
	o.Config = cfg
	if o.Profiles, err = cfg.Profiles(); err != nil {
		if cfgErr == nil {
			cfgErr = err
		}
		o.Profiles, _ = profiles.Builtin()
	}
	o.KeysSource = cfg.Keys.Provider
	if cfg.TestKeys() {
		noteTestKeys()
	}
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
		if *reader != "" {
			name, err := resolveReader(pc, *reader)
			if err != nil {
				return err
			}
			o.Readers = []string{name}
		}
	}
	if cfg.Keys.Provider == config.ProviderPSAM {
		if pc == nil {
			o.KeysError = errors.New("PSAM: the smart card service is not reachable")
		} else {
			done, perr := attachDiagPSAM(ctx, pc, cfg, &o)
			if perr != nil {
				o.KeysError = perr
			} else {
				defer done()
			}
		}
	} else if o.Keys, err = cfg.HostKeys(); err != nil {
		o.KeysError = err
	}
	if o.Keys != nil {
		defer o.Keys.Close()
	}

	bar := newProgress(env, *asJSON, "latency")
	if bar != nil {
		o.Progress = func(reader string, done, total int) { bar.step(reader, done, total) }
	}
	rep, err := diag.Run(ctx, o)
	bar.finish()
	if err != nil {
		return err
	}
	if cfgErr != nil {
		rep.Problems = append([]string{"configuration: " + cfgErr.Error()}, rep.Problems...)
		rep.OK = false
	}
	if *asJSON {
		if err := writeJSON(env.stdout, rep); err != nil {
			return err
		}
	} else {
		var buf bytes.Buffer
		rep.WriteTable(&buf)
		fmt.Fprint(env.stdout, termSafeLines(buf.String()))
	}
	if !rep.OK {
		return problemFound{what: "problem(s) found", n: len(rep.Problems)}
	}
	return nil
}

// journalFile is sscard's journal in the data directory.
func journalFile(cfg *config.Config) string {
	p, _ := journalPath(&cardEnv{cfg: cfg}, "")
	return p
}

// attachDiagPSAM connects to the PSAM named by the configuration; its
// reader is then listed with the role "psam".
func attachDiagPSAM(ctx context.Context, pc *pcsc.Context, cfg *config.Config, o *diag.Options) (func(), error) {
	name, err := resolvePSAMReader(pc, cfg.Keys.PSAMReader, "")
	if err != nil {
		return nil, err
	}
	o.PSAMReader = name
	var opts []psamhost.Option
	if path := cfg.Keys.PSAMKeyTable; path != "" {
		table, err := psamhost.LoadKeyTable(path)
		if err != nil {
			return nil, err
		}
		opts = append(opts, psamhost.WithKeyTable(table))
	}
	card, err := pc.Connect(ctx, name, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard})
	if err != nil {
		return nil, fmt.Errorf("PSAM in %q: %w", name, err)
	}
	p := psamhost.New(card, opts...)
	o.Keys = p
	return func() { card.Close() }, nil
}

// progress is a progress bar on standard error, shown only when standard
// output is a terminal and the output is not JSON: a pipe, a file or a
// program reading JSON sees nothing of it. A nil *progress does nothing.
type progress struct {
	bar   *progressbar.ProgressBar
	label string
	last  string
}

func newProgress(env *cli, asJSON bool, label string) *progress {
	if asJSON || !isTerminal(env) {
		return nil
	}
	return &progress{label: label}
}

func isTerminal(env *cli) bool {
	f, ok := env.stdout.(*os.File)
	return ok && f == os.Stdout && term.IsTerminal(int(f.Fd()))
}

func (p *progress) step(what string, done, total int) {
	if p == nil {
		return
	}
	if p.bar == nil || p.last != what {
		if p.bar != nil {
			_ = p.bar.Finish()
		}
		p.last = what
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription(p.label+" "+termSafe(what)),
			progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetPredictTime(false),
		)
	}
	_ = p.bar.Set(done)
}

func (p *progress) finish() {
	if p == nil || p.bar == nil {
		return
	}
	_ = p.bar.Finish()
	_ = p.bar.Clear()
}
