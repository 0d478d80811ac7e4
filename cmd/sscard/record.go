package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"ssstation/cardapp"
	"ssstation/internal/transcript"
	"ssstation/pcsc"
)

func init() {
	register("record", "run the station's read flow on a card and save a redacted transcript: --out FILE [info|full] (personal data replaced by fictional data; cardsim --replay plays it back)", cmdRecord)
}

// cmdRecord is `sscard record --reader R --out FILE [info|full]`: the
// station's read flow (identify, then the basic or full read) on a real
// card, every exchange recorded through the connection's trace hook, and
// the transcript saved with PINs and key cryptograms masked and the
// holder's data replaced by fictional data (internal/transcript). The
// transcript replays with `cardsim --replay FILE`: a technician's
// recording of a new card batch becomes a regression test.
func cmdRecord(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("record")
	f := addCardFlags(fs)
	out := fs.String("out", "", "transcript file to write (required; written mode 0600)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("sscard record --reader R --out FILE [info|full]: --out is required")
	}
	what := "info"
	switch fs.NArg() {
	case 0:
	case 1:
		what = fs.Arg(0)
	default:
		return usagef("sscard record: one flow, info or full")
	}
	if what != "info" && what != "full" {
		return usagef("sscard record: unknown flow %q: info or full", what)
	}
	ce, err := loadCardEnv(f)
	if err != nil {
		return err
	}

	pc, err := pcsc.Establish()
	if err != nil {
		return fmt.Errorf("cannot reach the smart card service (is pcscd running?): %w", err)
	}
	defer pc.Release()
	name, err := resolveReader(pc, *f.reader)
	if err != nil {
		return err
	}
	done, err := ce.attachKeys(ctx, pc, name)
	if err != nil {
		return err
	}
	defer done()
	// The recorder is the connection's only tracer: it sees the personal
	// records (to replace them) and nothing prints them.
	rec := transcript.NewRecorder()
	card, err := pc.Connect(ctx, name, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard, Tracer: rec.Trace})
	if err != nil {
		if errors.Is(err, pcsc.ErrNoCard) || errors.Is(err, pcsc.ErrCardRemoved) {
			return fmt.Errorf("no card in %q: %w", name, pcsc.ErrNoCard)
		}
		return err
	}
	defer card.Close()
	var profile string
	runErr := card.Transaction(ctx, func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, rec.Session(card), ce.set, ce.options())
		if err != nil {
			return err
		}
		profile = app.Profile().Name
		if what == "full" {
			_, err = app.ReadFullInfo(ctx)
		} else {
			_, err = app.ReadBasicInfo(ctx)
		}
		return err
	})
	// A flow that failed half-way is worth keeping too: it is what this
	// card does. The error is reported after the file is written.
	t, err := rec.Transcript(card.ATR(), card.Protocol(), nil)
	if err != nil {
		if runErr != nil {
			return runErr
		}
		return err
	}
	t.Comment = fmt.Sprintf("recorded by sscard record %s on %s (profile %q; flow %s); PIN and key data masked, personal data replaced by fictional data",
		what, time.Now().UTC().Format("2006-01-02"), profile, what)
	if runErr != nil {
		t.Comment += fmt.Sprintf("; the flow ended with an error: %v", runErr)
	}
	if err := t.Save(*out); err != nil {
		return err
	}
	if *f.verbose {
		for _, e := range t.Exchanges {
			fmt.Fprintf(env.stderr, "> %s  (%s)\n< %s\n", e.Command, e.Note, e.Response)
		}
	}
	if *f.asJSON {
		if err := writeJSON(env.stdout, map[string]any{"ok": runErr == nil, "file": *out, "exchanges": len(t.Exchanges), "protocol": t.Protocol}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(env.stdout, "%d exchanges recorded to %s (%s; personal data replaced by fictional data).\n", len(t.Exchanges), *out, t.Protocol)
	}
	return runErr
}
