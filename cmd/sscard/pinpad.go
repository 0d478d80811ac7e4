package main

import (
	"context"
	"errors"
	"fmt"

	"ssstation/cardapp"
	"ssstation/pcsc"
)

func init() {
	register("pinpad", "the reader's PIN pad (PC/SC part 10): status | verify | change [--digits N] (the holder types on the reader; the PIN never passes through the host)", cmdPINPad)
}

// cmdPINPad is `sscard pinpad status|verify|change --reader R [--digits N]
// [--timeout S]`. status reads the reader's part 10 features; verify and
// change have the holder type on the reader's own keys.
func cmdPINPad(ctx context.Context, env *cli, args []string) error {
	if len(args) == 0 {
		return usagef("sscard pinpad status|verify|change [flags]")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("pinpad " + sub)
	f := addCardFlags(fs)
	digits := fs.Int("digits", 0, "the PIN length the holder types (default: the profile's, when it allows one length only)")
	timeout := fs.Int("timeout", 30, "seconds the reader waits for the PIN (1-255)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *timeout < 1 || *timeout > 255 {
		return usagef("--timeout: 1 to 255 seconds")
	}
	if *digits < 0 || *digits > 16 {
		return usagef("--digits: 1 to 16")
	}
	opts := cardapp.PINPadOptions{Digits: *digits, Timeout: byte(*timeout)}
	switch sub {
	case "status":
		var rf *pcsc.ReaderFeatures
		err := withSession(ctx, env, f, nil, func(ctx context.Context, card *pcsc.Card) (err error) {
			rf, err = card.Features(ctx)
			return err
		})
		if err != nil {
			return err
		}
		if *f.asJSON {
			return writeJSON(env.stdout, rf)
		}
		pad := "no PIN pad"
		switch {
		case rf.PINPad.Verify && rf.PINPad.Modify:
			pad = "PIN pad: verify and change"
		case rf.PINPad.Verify:
			pad = "PIN pad: verify only"
		case rf.PINPad.Modify:
			pad = "PIN pad: change only"
		}
		fmt.Fprintln(env.stdout, pad)
		if len(rf.Names) > 0 {
			fmt.Fprintf(env.stdout, "part 10 features: %v\n", rf.Names)
		}
		return nil
	case "verify", "change":
	default:
		return usagef("unknown pinpad verb %q: status, verify or change", sub)
	}
	ce, err := loadCardEnv(f)
	if err != nil {
		return err
	}
	if !*f.asJSON {
		fmt.Fprintln(env.stderr, "Type the PIN on the reader's keypad.")
	}
	err = withCard(ctx, env, f, ce, func(ctx context.Context, app *cardapp.App, card *pcsc.Card) error {
		if sub == "verify" {
			return app.VerifyPINOnPad(ctx, card, opts)
		}
		return app.ChangePINOnPad(ctx, card, opts)
	})
	if err != nil {
		var wp *cardapp.WrongPIN
		if errors.As(err, &wp) && *f.asJSON {
			if werr := writeJSON(env.stdout, map[string]any{"ok": false, "tries_left": wp.Retries}); werr != nil {
				return werr
			}
		}
		return err
	}
	if *f.asJSON {
		return writeJSON(env.stdout, map[string]any{"ok": true})
	}
	if sub == "verify" {
		fmt.Fprintln(env.stdout, "PIN verified on the PIN pad")
	} else {
		fmt.Fprintln(env.stdout, "PIN changed on the PIN pad")
	}
	return nil
}
