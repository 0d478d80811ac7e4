package main

import (
	"context"
	"errors"
	"fmt"

	"ssstation/cardapp"
	"ssstation/pcsc"
)

func init() {
	register("pin", "PIN work: retries | verify | change | reload | unblock (PINs typed without echo, or --pin-stdin; unblock resets the try counter, no PIN)", cmdPIN)
}

func cmdPIN(ctx context.Context, env *cli, args []string) error {
	if len(args) == 0 {
		return usagef("sscard pin retries|verify|change|reload|unblock [flags]")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("pin " + sub)
	f := addCardFlags(fs)
	pinStdin := fs.Bool("pin-stdin", false, "read the PIN(s) from standard input, one per line, instead of the terminal")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ce, err := loadCardEnv(f)
	if err != nil {
		return err
	}
	sec := &secrets{env: env, stdin: *pinStdin}

	// Every PIN is read before the card is touched: no transaction is held
	// while a person types.
	var old, newPIN, confirm string
	switch sub {
	case "retries", "unblock":
		// PIN UNBLOCK resets the try counter only: it takes no PIN
		// (card-reference §9).
	case "verify":
		if old, err = sec.read("PIN"); err != nil {
			return err
		}
	case "change":
		if old, err = sec.read("Current PIN"); err != nil {
			return err
		}
		fallthrough
	case "reload":
		if newPIN, err = sec.read("New PIN"); err != nil {
			return err
		}
		if confirm, err = sec.read("New PIN again"); err != nil {
			return err
		}
		if confirm == "" {
			// Issue 8 §9; cardapp refuses it too, but here no card is touched.
			return usagef("the new PIN was not confirmed (an empty second entry)")
		}
	default:
		return usagef("unknown pin verb %q: retries, verify, change, reload or unblock", sub)
	}

	var status *cardapp.PINStatus
	err = withCard(ctx, env, f, ce, func(ctx context.Context, app *cardapp.App, card *pcsc.Card) error {
		var err error
		switch sub {
		case "retries":
			status, err = app.PINTries(ctx)
		case "verify":
			err = app.VerifyPIN(ctx, old)
		case "change":
			err = app.ChangePIN(ctx, old, newPIN, confirm)
		case "reload":
			err = app.ReloadPIN(ctx, newPIN, confirm)
		case "unblock":
			err = app.UnblockPIN(ctx)
		}
		return err
	})
	// No clearing of old, newPIN and confirm: Go strings cannot be
	// cleared, and assigning "" would only look like it (PIN hygiene is
	// best effort, as cardapp/pin.go documents; cardapp clears the
	// encoded PIN bytes it builds).
	if err != nil {
		// The standard interface's code (−51 wrong PIN, −52 locked, minus
		// the status word otherwise), as counter software knows them.
		code := cardapp.LegacyCode(err)
		var wp *cardapp.WrongPIN
		if *f.asJSON {
			out := map[string]any{"ok": false, "error": err.Error(), "code": code}
			if errors.As(err, &wp) {
				out["tries_left"] = wp.Retries
			}
			_ = writeJSON(env.stdout, out)
		}
		return fmt.Errorf("%w (code %d)", err, code)
	}
	if *f.asJSON {
		if status != nil {
			return writeJSON(env.stdout, status)
		}
		return writeJSON(env.stdout, map[string]any{"ok": true})
	}
	switch sub {
	case "retries":
		switch {
		case status.Blocked:
			fmt.Fprintln(env.stdout, "The PIN is blocked: unblock it at a bank counter.")
		case status.Verified:
			fmt.Fprintln(env.stdout, "The PIN is already verified in this card session.")
		default:
			fmt.Fprintf(env.stdout, "%d tries left.\n", status.TriesLeft)
		}
	case "verify":
		fmt.Fprintln(env.stdout, "PIN correct.")
	case "change":
		fmt.Fprintln(env.stdout, "PIN changed.")
	case "reload":
		fmt.Fprintln(env.stdout, "New PIN set (reload).")
	case "unblock":
		fmt.Fprintln(env.stdout, "PIN unblocked: the try counter is reset; the PIN is unchanged.")
	}
	return nil
}
