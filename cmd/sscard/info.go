package main

import (
	"context"
	"fmt"
	"time"

	"ssstation/cardapp"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
)

func init() {
	register("info", "read the card: holder, card number, dates, state (--ireadcardbas for the standard string and code)", cmdInfo)
	register("verify-card", "prove the card genuine (INTERNAL AUTHENTICATE) and check its state and expiry", cmdVerifyCard)
}

// infoJSON is `sscard info --json`: the card as read, how it was
// identified, and the standard interface's answer (code 0 and the
// iReadCardBas string, or a negative code and no string).
type infoJSON struct {
	Card           *cardapp.BasicInfo      `json:"card,omitempty"`
	Identification *cardapp.Identification `json:"identification,omitempty"`
	IReadCardBas   string                  `json:"ireadcardbas"`
	Code           int                     `json:"code"`
	State          string                  `json:"state"`
	GenuineChecked bool                    `json:"genuine_checked"`
	Error          string                  `json:"error,omitempty"`
}

func cmdInfo(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("info")
	f := addCardFlags(fs)
	bas := fs.Bool("ireadcardbas", false, "print the iReadCardBas string of the standard reader interface, or its negative code")
	full := fs.Bool("full", false, "read every EF05/EF06 item (gender, nationality, birthplace, birth date...)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ce, err := loadCardEnv(f)
	if err != nil {
		return err
	}
	var info *cardapp.BasicInfo
	var id *cardapp.Identification
	err = withSession(ctx, env, f, ce, func(ctx context.Context, card *pcsc.Card) error {
		app, err := cardapp.Identify(ctx, card, ce.set, ce.options())
		if err != nil {
			return err
		}
		id = app.Identification()
		if *full {
			info, err = app.ReadFullInfo(ctx)
		} else {
			info, err = app.ReadBasicInfo(ctx)
		}
		return err
	})
	out := infoJSON{Card: info, Identification: id, State: cardapp.StateOf(err)}
	if err == nil {
		// A card read in a state the interface does not serve (6283) still
		// shows its data, with the interface's negative code.
		out.State, out.GenuineChecked = info.State, info.GenuineChecked
		out.Code = cardapp.LegacyCode(info.Err())
		if out.Code == 0 {
			out.IReadCardBas = info.IReadCardBas(ce.cfg.TerminalNo, ce.cfg.DeviceNo)
		} else {
			out.Error = info.Err().Error()
		}
	} else {
		out.Code, out.Error = cardapp.LegacyCode(err), err.Error()
	}
	switch {
	case *f.asJSON:
		if werr := writeJSON(env.stdout, out); werr != nil {
			return werr
		}
	case *bas:
		if out.Code == 0 {
			fmt.Fprintln(env.stdout, termSafe(out.IReadCardBas))
		} else {
			fmt.Fprintf(env.stdout, "code %d (state %s)\n", out.Code, out.State)
		}
	case info != nil:
		printInfo(env, info, id)
	case out.State != cardapp.StateNotIdentified:
		fmt.Fprintf(env.stdout, "State          %s (code %d)\n", out.State, out.Code)
	}
	if err != nil {
		return err
	}
	if out.Code != 0 {
		return fmt.Errorf("%s (code %d)", out.Error, out.Code)
	}
	return nil
}

// printInfo shows the card for a person: card data is escaped (termSafe),
// so a crafted record cannot drive the terminal.
func printInfo(env *cli, i *cardapp.BasicInfo, id *cardapp.Identification) {
	w := env.stdout
	fmt.Fprintf(w, "Profile        %s (spec %s, %s)\n", i.Profile, termSafe(i.SpecVersion), i.Algorithm)
	if id != nil {
		known := "matches no profile"
		if id.ATRKnown {
			known = "matches the profile"
		}
		fmt.Fprintf(w, "ATR            %s (%s)\n", id.ATR, known)
		fmt.Fprintf(w, "Identified     %s\n", id.Reason)
	}
	fmt.Fprintf(w, "State          %s\n", stateText(i.State))
	if i.GenuineChecked {
		fmt.Fprintln(w, "Genuine        yes (internal authentication passed)")
	} else {
		fmt.Fprintln(w, "Genuine        NOT CHECKED: no key provider configured, nothing proved this card genuine")
	}
	fmt.Fprintf(w, "Card id        %s (region %s)\n", termSafe(i.CardID), termSafe(i.RegionCode))
	if i.Blank {
		fmt.Fprintln(w, "Blank card: not personalized yet.")
		if i.IssueDate != "" || i.ExpiryDate != "" {
			fmt.Fprintf(w, "Issued         %s\n", termSafe(i.IssueDate))
			fmt.Fprintf(w, "Expires        %s\n", termSafe(i.ExpiryDate))
		}
		return
	}
	fmt.Fprintf(w, "Card number    %s\n", termSafe(i.CardNumber))
	fmt.Fprintf(w, "Name           %s\n", termSafe(i.Name))
	fmt.Fprintf(w, "ID number      %s\n", termSafe(i.SSN))
	fmt.Fprintf(w, "Issued         %s\n", termSafe(i.IssueDate))
	fmt.Fprintf(w, "Expires        %s\n", termSafe(i.ExpiryDate))
	if h := i.Holder; h != nil {
		fmt.Fprintf(w, "Gender         %s\n", termSafe(h.GenderName))
		fmt.Fprintf(w, "Nationality    %s\n", termSafe(h.Nationality))
		fmt.Fprintf(w, "Birthplace     %s\n", termSafe(h.Birthplace))
		fmt.Fprintf(w, "Birth date     %s\n", termSafe(h.BirthDate))
		fmt.Fprintf(w, "Card type      %s\n", termSafe(h.CardType))
		fmt.Fprintf(w, "Init. org.     %s\n", termSafe(h.InitOrg))
	}
}

func stateText(s string) string {
	switch s {
	case cardapp.StateBlockedTemp:
		return s + ": the application is BLOCKED (SELECT answered 6283: loss reported, or not released yet)"
	case cardapp.StateBlockedPerm:
		return s + ": the application is PERMANENTLY BLOCKED (9303)"
	case cardapp.StateCardBlocked:
		return s + ": the card is BLOCKED"
	case cardapp.StateExpired:
		return s + ": past its expiry date, it must be replaced"
	}
	return s
}

// verifyJSON is `sscard verify-card --json`.
type verifyJSON struct {
	*cardapp.Verification
	State string `json:"state"`
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"`
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
	out := verifyJSON{Verification: v, State: cardapp.StateOf(err), Code: cardapp.LegacyCode(err)}
	if err != nil {
		out.Error = err.Error()
	} else {
		out.State = v.State
	}
	if *f.asJSON {
		if werr := writeJSON(env.stdout, out); werr != nil {
			return werr
		}
		if err != nil {
			return err
		}
	} else if err != nil {
		if out.State != cardapp.StateNotIdentified {
			fmt.Fprintf(env.stdout, "State: %s\n", stateText(out.State))
		}
		return err
	}
	if *f.asJSON {
		return nil // expired shows as "expired": true and state "expired"
	}
	fmt.Fprintln(env.stdout, "The card is genuine (internal authentication passed).")
	fmt.Fprintf(env.stdout, "State: %s\n", stateText(v.State))
	if v.State == cardapp.StateBlockedTemp {
		return fmt.Errorf("the card's application is blocked (SELECT answered 6283, code %d)", cardapp.LegacyCode(apdu.SWWarningFileInvalidated))
	}
	if v.Expired {
		fmt.Fprintf(env.stdout, "But it EXPIRED on %s: it must be replaced.\n", v.ExpiryDate)
		return fmt.Errorf("card expired on %s", v.ExpiryDate)
	}
	fmt.Fprintf(env.stdout, "Valid until %s.\n", v.ExpiryDate)
	return nil
}
