package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"ssstation/cardapp"
	"ssstation/pcsc"
	"ssstation/station/conform"
)

func init() {
	register("conform", "conformance kit: run every read-side command the station relies on against a card, as profile P codes it, one verdict each: --profile P [--destructive --holder FILE] [--wire] (exit 4: not conforming)", cmdConform)
}

// cmdConform is `sscard conform --reader R --profile P [--destructive
// --holder FILE] [--wire] [--json]`.
func cmdConform(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("conform")
	f := addCardFlags(fs)
	profName := fs.String("profile", "", "the firmware profile the card should conform to (sscard profile list); required")
	destructive := fs.Bool("destructive", false, "also run the write-side checks: only on a BLANK card, which is written with --holder's fictional data, read back, and left unlocked")
	holderPath := fs.String("holder", "", "fictional holder (personalization request JSON, as for personalize) for --destructive")
	wire := fs.Bool("wire", false, "show the APDUs as they crossed the wire under each check (table output)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("sscard conform takes no arguments")
	}
	if *profName == "" {
		return usagef("sscard conform: --profile is required (sscard profile list)")
	}
	if *destructive != (*holderPath != "") {
		return usagef("sscard conform: --destructive and --holder go together")
	}
	ce, err := loadCardEnv(f)
	if err != nil {
		return err
	}
	prof, ok := ce.set.Get(*profName)
	if !ok {
		return usagef("sscard conform: no profile %q (sscard profile list)", *profName)
	}
	o := conform.Options{Profile: prof, Destructive: *destructive, Wire: &conform.Wire{}}
	if *destructive {
		raw, err := os.ReadFile(*holderPath)
		if err != nil {
			return err
		}
		if o.Holder, err = cardapp.DecodeRequest(raw); err != nil {
			return fmt.Errorf("--holder %s: %w", *holderPath, err)
		}
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
	o.Keys = ce.keys
	card, err := pc.Connect(ctx, name, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.ResetCard, Tracer: o.Wire.Trace})
	if err != nil {
		if errors.Is(err, pcsc.ErrNoCard) || errors.Is(err, pcsc.ErrCardRemoved) {
			return fmt.Errorf("no card in %q: %w", name, pcsc.ErrNoCard)
		}
		return err
	}
	defer card.Close()
	o.Card = card
	bar := newProgress(env, *f.asJSON, "conform")
	if bar != nil {
		o.Progress = func(done, total int, _ string) { bar.step(name, done, total) }
	}
	var rep *conform.Report
	err = card.Transaction(ctx, func(ctx context.Context) (err error) {
		// Authentications leave state on the card: reset it at the end.
		card.ResetAtEnd()
		rep, err = conform.Run(ctx, o)
		return err
	})
	bar.finish()
	if err != nil {
		return err
	}
	if *f.asJSON {
		if err := writeJSON(env.stdout, rep); err != nil {
			return err
		}
	} else {
		var buf bytes.Buffer
		rep.WriteTable(&buf, *wire)
		fmt.Fprint(env.stdout, termSafeLines(buf.String()))
	}
	if !rep.OK {
		return problemFound{what: "check(s) failed: the card does not conform to " + prof.Name, n: rep.Summary.Fail}
	}
	return nil
}
