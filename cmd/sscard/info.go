package main

import (
	"context"
	"fmt"
	"time"

	"ssstation/cardapp"
	"ssstation/pcsc"
)

func init() {
	register("info", "read the card: holder, card number, dates (--ireadcardbas for the standard string)", cmdInfo)
	register("verify-card", "prove the card genuine (INTERNAL AUTHENTICATE) and check its expiry", cmdVerifyCard)
}

func cmdInfo(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("info")
	f := addCardFlags(fs)
	bas := fs.Bool("ireadcardbas", false, "print the iReadCardBas string of the standard reader interface")
	full := fs.Bool("full", false, "read every EF05/EF06 item (gender, nationality, birthplace, birth date...)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ce, err := loadCardEnv(f)
	if err != nil {
		return err
	}
	var info *cardapp.BasicInfo
	err = withCard(ctx, env, f, ce, func(ctx context.Context, app *cardapp.App, card *pcsc.Card) error {
		var err error
		if *full {
			info, err = app.ReadFullInfo(ctx)
		} else {
			info, err = app.ReadBasicInfo(ctx)
		}
		return err
	})
	if err != nil {
		return err
	}
	s := info.IReadCardBas(ce.cfg.TerminalNo, ce.cfg.DeviceNo)
	switch {
	case *bas && !*f.asJSON:
		fmt.Fprintln(env.stdout, s)
	case *f.asJSON:
		return writeJSON(env.stdout, map[string]any{"card": info, "ireadcardbas": s})
	default:
		printInfo(env, info)
	}
	return nil
}

func printInfo(env *cli, i *cardapp.BasicInfo) {
	w := env.stdout
	fmt.Fprintf(w, "Profile        %s (spec %s, %s)\n", i.Profile, i.SpecVersion, i.Algorithm)
	fmt.Fprintf(w, "Card id        %s (region %s)\n", i.CardID, i.RegionCode)
	if i.Blank {
		fmt.Fprintln(w, "Blank card: not personalized yet.")
		return
	}
	fmt.Fprintf(w, "Card number    %s\n", i.CardNumber)
	fmt.Fprintf(w, "Name           %s\n", i.Name)
	fmt.Fprintf(w, "ID number      %s\n", i.SSN)
	fmt.Fprintf(w, "Issued         %s\n", i.IssueDate)
	fmt.Fprintf(w, "Expires        %s\n", i.ExpiryDate)
	if h := i.Holder; h != nil {
		fmt.Fprintf(w, "Gender         %s\n", h.GenderName)
		fmt.Fprintf(w, "Nationality    %s\n", h.Nationality)
		fmt.Fprintf(w, "Birthplace     %s\n", h.Birthplace)
		fmt.Fprintf(w, "Birth date     %s\n", h.BirthDate)
		fmt.Fprintf(w, "Card type      %s\n", h.CardType)
		fmt.Fprintf(w, "Init. org.     %s\n", h.InitOrg)
	}
}

func cmdVerifyCard(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("verify-card")
	f := addCardFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ce, err := loadCardEnv(f)
	if err != nil {
		return err
	}
	var v *cardapp.Verification
	err = withCard(ctx, env, f, ce, func(ctx context.Context, app *cardapp.App, card *pcsc.Card) error {
		var err error
		v, err = app.VerifyCard(ctx, time.Now())
		return err
	})
	if err != nil {
		return err
	}
	if *f.asJSON {
		return writeJSON(env.stdout, v)
	}
	fmt.Fprintln(env.stdout, "The card is genuine (internal authentication passed).")
	if v.Expired {
		fmt.Fprintf(env.stdout, "But it EXPIRED on %s: it must be replaced.\n", v.ExpiryDate)
		return fmt.Errorf("card expired on %s", v.ExpiryDate)
	}
	fmt.Fprintf(env.stdout, "Valid until %s.\n", v.ExpiryDate)
	return nil
}
