package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"ssstation/station/audit"
	"ssstation/station/config"
	"ssstation/station/store"
)

func init() {
	register("audit", "the daemon's audit trail: verify (walk the hash chain) or export (JSON lines)", auditVerb)
}

// auditVerb opens the store read-only: it never changes the trail. The
// store is locked while stationd runs; stop it first or read the trail
// through GET /v1/audit.
func auditVerb(ctx context.Context, env *cli, args []string) error {
	if len(args) == 0 || (args[0] != "verify" && args[0] != "export") {
		return usagef("usage: sscard audit verify|export [--store FILE] [--config FILE] [--json] [--out FILE]")
	}
	sub := args[0]
	fs := flag.NewFlagSet("audit "+sub, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	cfgPath := fs.String("config", "", "station configuration file (default $SSSTATION_CONFIG or "+config.DefaultPath+")")
	storePath := fs.String("store", "", "the store file (default: the configuration's data_dir/station.db)")
	asJSON := fs.Bool("json", false, "print JSON (verify)")
	outPath := fs.String("out", "", "write the export to this file (mode 0600) instead of standard output")
	if err := fs.Parse(args[1:]); err != nil {
		return usagef("%v", err)
	}
	path := *storePath
	if path == "" {
		cfg, err := loadConfig(*cfgPath)
		if err != nil {
			return err
		}
		path = cfg.StorePath()
	}
	st, err := store.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("%w: stop stationd first, or read the trail through GET /v1/audit", err)
		}
		return err
	}
	defer st.Close()
	switch sub {
	case "verify":
		n, err := audit.Verify(st.DB())
		// A begin entry without its end: the station stopped before the
		// end was committed (ends of reads are committed after the answer).
		unknown, _ := audit.Unfinished(st.DB())
		if *asJSON {
			res := map[string]any{"store": path, "entries": n, "ok": err == nil, "outcome_unknown": unknown}
			var be *audit.BreakError
			if errors.As(err, &be) {
				res["broken_at"] = be.Seq
				res["reason"] = be.Reason
			}
			if werr := writeJSON(env.stdout, res); werr != nil {
				return werr
			}
			return err
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "audit trail intact: %d entries, every hash links to the entry before\n", n)
		if unknown > 0 {
			fmt.Fprintf(env.stdout, "%d card touches have no end entry: outcome unknown (the station stopped before recording how they ended)\n", unknown)
		}
		return nil
	default:
		w := env.stdout
		if *outPath != "" {
			f, err := os.OpenFile(*outPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			defer f.Close()
			w = f
		}
		n, err := audit.Export(st.DB(), w)
		if err != nil {
			return err
		}
		if *outPath != "" {
			fmt.Fprintf(env.stderr, "exported %d entries to %s\n", n, *outPath)
		}
		return nil
	}
}
