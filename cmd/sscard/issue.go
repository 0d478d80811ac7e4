package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"ssstation/cardapp"
	"ssstation/pcsc"
	"ssstation/station/issuance"
	"ssstation/station/journal"
	"ssstation/station/secret"
)

func init() {
	register("personalize", "write a holder to a blank card, read it back (--lock: then lock it)", cmdPersonalize)
	register("lock", "lock a personalized card after reading it back against --holder", cmdLock)
	register("activate", "activate a delivered card and set the holder's PIN", cmdActivate)
	register("block", "block a card reported lost (--permanent, or --card for the whole card)", cmdBlock)
	register("unblock", "release a temporary application block", cmdUnblock)
	register("journal", "list the journal of multi-step operations (--card ID for one card); journal abandon OP closes one whose card is gone", cmdJournal)
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

// exitJournalDamaged is sscard's exit code for a journal file that cannot
// be read (truncated, overwritten, not a journal): docs/journal.md.
const exitJournalDamaged = 3

// journalDamaged carries a damaged journal's error and its exit code.
type journalDamaged struct{ err error }

func (e journalDamaged) Error() string {
	return e.err.Error() + " (the file is left as it is: move it away to start a new journal, keep it for inspection)"
}
func (e journalDamaged) Unwrap() error { return e.err }
func (e journalDamaged) ExitCode() int { return exitJournalDamaged }

func journalError(err error) error {
	if errors.Is(err, journal.ErrDamaged) {
		return journalDamaged{err}
	}
	return err
}

// journalPath is --journal, or DATA_DIR/journal.db; an empty data
// directory is an error, never the current directory.
func journalPath(ce *cardEnv, path string) (string, error) {
	if path != "" {
		return path, nil
	}
	if ce.cfg.DataDir == "" {
		return "", fmt.Errorf("no data directory configured (data_dir): the journal has no place")
	}
	return filepath.Join(ce.cfg.DataDir, "journal.db"), nil
}

// journalOptions carries the configured retention (journal_retention_days).
func journalOptions(ce *cardEnv) journal.Options {
	var o journal.Options
	switch d := ce.cfg.JournalRetentionDays; {
	case d < 0:
		o.Retention = -1
	case d > 0:
		o.Retention = time.Duration(d) * 24 * time.Hour
	}
	return o
}

// openJournal opens the journal for writing, and the station secret that
// keys its digests (kept beside it, never in it).
func openJournal(ce *cardEnv, path string) (*journal.Store, *secret.Key, error) {
	path, err := journalPath(ce, path)
	if err != nil {
		return nil, nil, err
	}
	j, err := journal.OpenWith(path, journalOptions(ce))
	if err != nil {
		return nil, nil, journalError(err)
	}
	key, err := secret.Load(filepath.Dir(path))
	if err != nil {
		j.Close()
		return nil, nil, err
	}
	return j, key, nil
}

// withRunner opens the card (no transaction: the runner's operation runs
// inside the one withSession opens) and the journal.
func withRunner(ctx context.Context, env *cli, f *issueFlags, body func(ctx context.Context, r *issuance.Runner, card *pcsc.Card) error) error {
	ce, err := loadCardEnv(f.cardFlags)
	if err != nil {
		return err
	}
	j, key, err := openJournal(ce, *f.journal)
	if err != nil {
		return err
	}
	defer j.Close()
	return withSession(ctx, env, f.cardFlags, ce, func(ctx context.Context, card *pcsc.Card) error {
		r := &issuance.Runner{Journal: j, Set: ce.set, Opts: ce.options(), Secret: key}
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
	req, err := cardapp.DecodeRequest(b) // strict: one document, no key twice
	if err != nil {
		return nil, usagef("%s: %v", path, err)
	}
	return req, nil
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
			fmt.Fprintf(env.stdout, "%s interrupted (%s).\nPut the same card back and run the same command (the card's unfinished operation is found; or give --op %s) to resume.\n", what, out.StoppedAt, out.OpID)
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
	newPIN, err := sec.read("Holder's new PIN (resuming an interrupted activation: the PIN typed then)")
	if err != nil {
		return err
	}
	confirm, err := sec.read("New PIN again")
	if err != nil {
		return err
	}
	if confirm == "" {
		return usagef("the PIN was not confirmed (an empty second entry)")
	}
	var res *cardapp.ActivateResult
	var out *issuance.Outcome
	err = withRunner(ctx, env, f, func(ctx context.Context, r *issuance.Runner, card *pcsc.Card) error {
		var err error
		res, out, err = r.Activate(ctx, card, card.Reader(), *f.op, newPIN, confirm)
		return err
	})
	// newPIN and confirm are not "cleared": Go strings cannot be (PIN
	// hygiene is best effort, see cardapp/pin.go).
	if err == nil && !*f.asJSON && res != nil {
		tries := ""
		if res.TriesLeft != nil {
			tries = fmt.Sprintf(" The card reports %d PIN tries left.", *res.TriesLeft)
		}
		switch {
		case res.AlreadyActive && res.Evidence == "journal":
			fmt.Fprintf(env.stdout, "Card %s: PIN already set (this station's journal shows the activation done): nothing was sent.\n", res.CardID)
		case res.AlreadyActive:
			fmt.Fprintf(env.stdout, "Card %s: PIN already set (the card refuses the initial PIN): nothing was changed.%s\n", res.CardID, tries)
		case res.SetEarlier:
			fmt.Fprintf(env.stdout, "Card %s activated: the holder's PIN was set by the interrupted attempt.%s\n", res.CardID, tries)
		default:
			fmt.Fprintf(env.stdout, "Card %s activated: holder PIN set (transport lock released: %v).\n", res.CardID, res.Unblocked)
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
	if len(args) > 0 && args[0] == "abandon" {
		return cmdJournalAbandon(env, args[1:])
	}
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
	p, err := journalPath(ce, *path)
	if err != nil {
		return err
	}
	// Listing reads: it creates no file or directory and writes nothing.
	j, err := journal.OpenReadOnly(p, journal.Options{})
	if errors.Is(err, os.ErrNotExist) {
		if *asJSON {
			return writeJSON(env.stdout, []*journal.Entry{})
		}
		fmt.Fprintf(env.stdout, "No journal at %s yet: no operation was recorded.\n", p)
		return nil
	}
	if err != nil {
		return journalError(err)
	}
	defer j.Close()
	var entries []*journal.Entry
	if *card != "" {
		entries, err = j.ByCard(*card)
	} else {
		entries, err = j.List(50)
	}
	if err != nil {
		return journalError(err)
	}
	for _, e := range entries {
		e.PINCheck = "" // a keyed digest, but nothing a listing needs
	}
	if *asJSON {
		return writeJSON(env.stdout, entries)
	}
	if len(entries) == 0 {
		fmt.Fprintln(env.stdout, "The journal is empty.")
	}
	for _, e := range entries {
		if e.Status == journal.StatusDamaged {
			fmt.Fprintf(env.stdout, "%-19s  %-11s %-11s %s\n    %s\n", "-", "?", e.Status, termSafeLines(e.OpID), termSafeLines(e.Error))
			continue
		}
		fmt.Fprintf(env.stdout, "%s  %-11s %-11s card %s  %s\n", e.Updated.Format("2006-01-02 15:04:05"), e.Kind, e.Status, e.CardID, e.OpID)
		if e.Status.Unfinished() {
			fmt.Fprintf(env.stdout, "    %s\n", termSafeLines(e.StoppedAt()))
		}
	}
	return nil
}

// cmdJournalAbandon closes an unfinished operation whose card is gone.
func cmdJournalAbandon(env *cli, args []string) error {
	fs := newFlags("journal abandon")
	cfgPath := fs.String("config", "", "station configuration file")
	path := fs.String("journal", "", "journal file (default DATA_DIR/journal.db)")
	note := fs.String("note", "abandoned by a technician: the card is gone", "why (kept in the journal; never holder data)")
	asJSON := fs.Bool("json", false, "print JSON")
	var op string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		op, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if op == "" && fs.NArg() == 1 {
		op = fs.Arg(0)
	}
	if op == "" {
		return usagef("usage: sscard journal abandon OP [--note TEXT]")
	}
	ce, err := loadCardEnv(&cardFlags{config: cfgPath, reader: new(string), asJSON: asJSON, verbose: new(bool)})
	if err != nil {
		return err
	}
	p, err := journalPath(ce, *path)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(p); err != nil {
		return fmt.Errorf("journal %s: %w", p, err)
	}
	j, err := journal.OpenWith(p, journalOptions(ce))
	if err != nil {
		return journalError(err)
	}
	defer j.Close()
	if err := j.Abandon(op, *note); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.stdout, map[string]string{"op_id": op, "status": string(journal.StatusAbandoned)})
	}
	fmt.Fprintf(env.stdout, "Operation %s abandoned.\n", op)
	return nil
}
