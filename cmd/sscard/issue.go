package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"ssstation/cardapp"
	"ssstation/pcsc"
	"ssstation/station/issuance"
	"ssstation/station/journal"
)

func init() {
	register("personalize", "write a holder to a blank card, read it back (--lock: then lock it)", cmdPersonalize)
	register("lock", "lock a personalized card after reading it back against --holder", cmdLock)
	register("activate", "activate a delivered card and set the holder's PIN", cmdActivate)
	register("block", "block a card reported lost (--permanent, or --card for the whole card)", cmdBlock)
	register("unblock", "release a temporary application block", cmdUnblock)
	register("journal", "list the journal of multi-step operations (--card ID for one card)", cmdJournal)
}

type issueFlags struct {
	*cardFlags
	op      *string
	journal *string
}

func addIssueFlags(name string) (*issueFlags, *flagSet) {
	fs := &flagSet{newFlags(name)}
	f := &issueFlags{cardFlags: addCardFlags(fs.FlagSet)}
	f.op = fs.String("op", "", "operation id: give an interrupted operation's id to resume it (default: a new one, or the card's unfinished one)")
	f.journal = fs.String("journal", "", "journal file (default DATA_DIR/journal.db from the configuration)")
	return f, fs
}

func openJournal(ce *cardEnv, path string) (*journal.Store, error) {
	if path == "" {
		path = filepath.Join(ce.cfg.DataDir, "journal.db")
	}
	return journal.Open(path)
}

// withRunner opens the card (no transaction: the runner's operation runs
// inside the one withSession opens) and the journal.
func withRunner(ctx context.Context, env *cli, f *issueFlags, body func(ctx context.Context, r *issuance.Runner, card *pcsc.Card) error) error {
	ce, err := loadCardEnv(f.cardFlags)
	if err != nil {
		return err
	}
	j, err := openJournal(ce, *f.journal)
	if err != nil {
		return err
	}
	defer j.Close()
	return withSession(ctx, env, f.cardFlags, ce, func(ctx context.Context, card *pcsc.Card) error {
		r := &issuance.Runner{Journal: j, Set: ce.set, Opts: ce.options()}
		ctx = cardapp.WithProgress(ctx, func(i, n int, step string) {
			if !*f.asJSON {
				fmt.Fprintf(env.stderr, "  [%d/%d] %s\n", i, n, step)
			}
		})
		return body(ctx, r, card)
	})
}

func readHolder(path string) (*cardapp.PersonalizeRequest, error) {
	if path == "" {
		return nil, usagef("--holder FILE.json is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("%v", err)
	}
	var req cardapp.PersonalizeRequest
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, usagef("%s: %v", path, err)
	}
	return &req, nil
}

func reportOutcome(env *cli, asJSON bool, what string, result any, out *issuance.Outcome, err error) error {
	if asJSON {
		m := map[string]any{"result": result, "outcome": out}
		if err != nil {
			m["error"] = err.Error()
		}
		_ = writeJSON(env.stdout, m)
		return err
	}
	if out != nil {
		switch {
		case errors.Is(err, issuance.ErrInterrupted):
			fmt.Fprintf(env.stdout, "%s interrupted (%s).\nPut the same card back and run the same command with --op %s to resume.\n", what, out.StoppedAt, out.OpID)
		case err != nil:
			fmt.Fprintf(env.stdout, "%s failed (operation %s).\n", what, out.OpID)
		case out.Resumed:
			fmt.Fprintf(env.stdout, "%s completed, resumed from an interrupted attempt (operation %s).\n", what, out.OpID)
		default:
			fmt.Fprintf(env.stdout, "%s completed (operation %s).\n", what, out.OpID)
		}
	}
	return err
}

func cmdPersonalize(ctx context.Context, env *cli, args []string) error {
	f, fs := addIssueFlags("personalize")
	holder := fs.String("holder", "", "JSON file with the holder and card data")
	lock := fs.Bool("lock", false, "lock (finalize) the card after the read-back passed: issue on the spot")
	if err := parseFlags(fs.FlagSet, args); err != nil {
		return err
	}
	req, err := readHolder(*holder)
	if err != nil {
		return err
	}
	var res *cardapp.PersonalizeResult
	var out *issuance.Outcome
	err = withRunner(ctx, env, f, func(ctx context.Context, r *issuance.Runner, card *pcsc.Card) error {
		var err error
		res, out, err = r.Personalize(ctx, card, card.Reader(), *f.op, req, *lock)
		return err
	})
	if err == nil && !*f.asJSON && res != nil {
		fmt.Fprintf(env.stdout, "Card %s (%s): %d records written, %d already written, %d read back equal; locked: %v.\n",
			res.CardID, res.Profile, res.Written, res.Skipped, res.Verified, res.Locked)
	}
	return reportOutcome(env, *f.asJSON, "Personalization", res, out, err)
}

func cmdLock(ctx context.Context, env *cli, args []string) error {
	f, fs := addIssueFlags("lock")
	holder := fs.String("holder", "", "JSON file with the data the card must hold (it is read back first)")
	if err := parseFlags(fs.FlagSet, args); err != nil {
		return err
	}
	req, err := readHolder(*holder)
	if err != nil {
		return err
	}
	var res *cardapp.PersonalizeResult
	var out *issuance.Outcome
	err = withRunner(ctx, env, f, func(ctx context.Context, r *issuance.Runner, card *pcsc.Card) error {
		var err error
		res, out, err = r.Lock(ctx, card, card.Reader(), *f.op, req)
		return err
	})
	if err == nil && !*f.asJSON && res != nil {
		fmt.Fprintf(env.stdout, "Card %s: %d records read back equal; locked.\n", res.CardID, res.Verified)
	}
	return reportOutcome(env, *f.asJSON, "Lock", res, out, err)
}

func cmdActivate(ctx context.Context, env *cli, args []string) error {
	f, fs := addIssueFlags("activate")
	pinStdin := fs.Bool("pin-stdin", false, "read the new PIN twice from standard input instead of the terminal")
	if err := parseFlags(fs.FlagSet, args); err != nil {
		return err
	}
	sec := &secrets{env: env, stdin: *pinStdin}
	newPIN, err := sec.read("Holder's new PIN")
	if err != nil {
		return err
	}
	confirm, err := sec.read("New PIN again")
	if err != nil {
		return err
	}
	var res *cardapp.ActivateResult
	var out *issuance.Outcome
	err = withRunner(ctx, env, f, func(ctx context.Context, r *issuance.Runner, card *pcsc.Card) error {
		var err error
		res, out, err = r.Activate(ctx, card, card.Reader(), *f.op, newPIN, confirm)
		return err
	})
	newPIN, confirm = "", ""
	if err == nil && !*f.asJSON && res != nil {
		if res.AlreadyActive {
			fmt.Fprintf(env.stdout, "Card %s is already active: nothing was changed.\n", res.CardID)
		} else {
			fmt.Fprintf(env.stdout, "Card %s activated: transport lock released: %v, holder PIN set: %v.\n", res.CardID, res.Unblocked, res.PINSet)
		}
	}
	return reportOutcome(env, *f.asJSON, "Activation", res, out, err)
}

func cmdBlock(ctx context.Context, env *cli, args []string) error {
	f, fs := addIssueFlags("block")
	permanent := fs.Bool("permanent", false, "block the application for ever (it answers 9303 from then on)")
	whole := fs.Bool("card", false, "block the whole card (CARD BLOCK)")
	if err := parseFlags(fs.FlagSet, args); err != nil {
		return err
	}
	kind := cardapp.BlockTemporary
	switch {
	case *permanent && *whole:
		return usagef("choose --permanent or --card, not both")
	case *permanent:
		kind = cardapp.BlockPermanent
	case *whole:
		kind = cardapp.BlockCard
	}
	var out *issuance.Outcome
	err := withRunner(ctx, env, f, func(ctx context.Context, r *issuance.Runner, card *pcsc.Card) error {
		var err error
		out, err = r.Block(ctx, card, card.Reader(), *f.op, kind)
		return err
	})
	if err == nil && !*f.asJSON {
		fmt.Fprintf(env.stdout, "Card blocked (%s).\n", kind)
	}
	return reportOutcome(env, *f.asJSON, "Block", map[string]string{"kind": string(kind)}, out, err)
}

func cmdUnblock(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("unblock")
	f := addCardFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ce, err := loadCardEnv(f)
	if err != nil {
		return err
	}
	err = withCard(ctx, env, f, ce, func(ctx context.Context, app *cardapp.App, card *pcsc.Card) error {
		return app.Unblock(ctx)
	})
	if err != nil {
		return err
	}
	if *f.asJSON {
		return writeJSON(env.stdout, map[string]bool{"ok": true})
	}
	fmt.Fprintln(env.stdout, "Application unblocked.")
	return nil
}

func cmdJournal(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("journal")
	cfgPath := fs.String("config", "", "station configuration file")
	path := fs.String("journal", "", "journal file (default DATA_DIR/journal.db)")
	card := fs.String("card", "", "only this card's operations (identification code, hex)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ce, err := loadCardEnv(&cardFlags{config: cfgPath, reader: new(string), asJSON: asJSON, verbose: new(bool)})
	if err != nil {
		return err
	}
	j, err := openJournal(ce, *path)
	if err != nil {
		return err
	}
	defer j.Close()
	var entries []*journal.Entry
	if *card != "" {
		entries, err = j.ByCard(*card)
	} else {
		entries, err = j.List(50)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.stdout, entries)
	}
	if len(entries) == 0 {
		fmt.Fprintln(env.stdout, "The journal is empty.")
	}
	for _, e := range entries {
		fmt.Fprintf(env.stdout, "%s  %-11s %-11s card %s  %s\n", e.Updated.Format("2006-01-02 15:04:05"), e.Kind, e.Status, e.CardID, e.OpID)
		if e.Status.Unfinished() {
			fmt.Fprintf(env.stdout, "    %s\n", e.StoppedAt())
		}
	}
	return nil
}
