package cardapp

import (
	"context"
	"fmt"

	"ssstation/cardapp/keys"
	"ssstation/cardapp/secure"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc/apdu"
)

// The PIN operations. Policy is checked before any APDU is sent; one
// request sends at most one PIN to the card (never a retry); the card's
// answer comes back as a typed outcome: *WrongPIN{Retries}, ErrPINBlocked,
// ErrApplicationLocked, ErrSecurityStatus, ErrNotFound. No PIN digit ever
// appears in an error, a trace (the commands are Sensitive) or a log.
//
// PIN hygiene is best effort (issue 8 §12): a PIN arrives as a Go string
// (typed at a terminal, or in an API body), which cannot be cleared, and
// lives until the garbage collector reuses its memory; nothing here
// pretends otherwise by assigning "" to it. What this package makes
// itself is cleared as soon as the command has left: the encoded PIN
// (BCD) blocks, the built command bytes, the PIN block before encryption
// and its cryptogram.
//
// Every operation that put a PIN to the card or opened it with a key
// (VERIFY, CHANGE PIN, reload, unblock) asks the session to reset the card
// when the operation ends, so no verified PIN or authenticated key outlives
// it on the card.

// PINStatus is what the card says of its PIN without spending a try.
type PINStatus struct {
	TriesLeft int  `json:"tries_left"`
	Blocked   bool `json:"blocked"`
	// Verified: the PIN was already verified in this card session.
	Verified bool `json:"verified"`
}

// CheckNewPIN applies a profile's rules for a PIN being set, without a
// card: callers check before they touch one. confirm is the second entry
// of the PIN and must equal it; an empty one never confirms.
func CheckNewPIN(p *profiles.Profile, newPIN, confirm string) error {
	a := &App{p: p}
	return a.checkNewPIN(newPIN, confirm)
}

// checkPIN applies the profile's policy to one PIN.
func (a *App) checkPIN(pin string) error {
	if pin == "" {
		return ErrPINMissing
	}
	for i := 0; i < len(pin); i++ {
		if pin[i] < '0' || pin[i] > '9' {
			return ErrPINIllegalChars
		}
	}
	pol := a.p.PIN
	if len(pin) < pol.MinLength || len(pin) > pol.MaxLength {
		return fmt.Errorf("%w: %d digits, the card takes %d to %d", ErrPINLength, len(pin), pol.MinLength, pol.MaxLength)
	}
	return nil
}

// checkNewPIN applies the rules for a PIN being set. Every PIN set is
// typed twice: confirm must equal newPIN, and an empty confirmation never
// confirms one (issue 8 §9), so no caller can skip the second entry.
func (a *App) checkNewPIN(newPIN, confirm string) error {
	if err := a.checkPIN(newPIN); err != nil {
		return err
	}
	if confirm == "" {
		return fmt.Errorf("%w: the new PIN was not confirmed (an empty second entry)", ErrPINMismatch)
	}
	if confirm != newPIN {
		return ErrPINMismatch
	}
	if newPIN == a.p.PIN.Initial {
		return ErrPINInitial
	}
	return nil
}

// PINTries asks the card for the PIN tries left with a VERIFY without data,
// where the profile says the card answers it without spending a try.
func (a *App) PINTries(ctx context.Context) (*PINStatus, error) {
	const op = "PIN tries"
	if !a.p.PIN.RetriesByEmptyVerify {
		return nil, opError(op, ErrPINTriesUnknown)
	}
	if err := a.selectApp(ctx); err != nil {
		return nil, opError(op, err)
	}
	resp, err := a.transmit(ctx, apdu.Command{INS: 0x20, Name: "VERIFY (tries)"})
	if err != nil {
		return nil, opError(op, err)
	}
	if n, ok := resp.SW.Retries(); ok {
		return &PINStatus{TriesLeft: n}, nil
	}
	switch resp.SW {
	case apdu.SWOK:
		return &PINStatus{TriesLeft: a.p.PIN.Tries, Verified: true}, nil
	case apdu.SWAuthBlocked:
		return &PINStatus{Blocked: true}, nil
	}
	return nil, opError(op, statusError(resp.SW))
}

// VerifyPIN sends one VERIFY. The initial PIN is refused before sending:
// it cannot be used to transact (card-reference §4). After a right PIN the
// session is asked to reset the card when the operation ends.
func (a *App) VerifyPIN(ctx context.Context, pin string) error {
	const op = "verify PIN"
	if err := a.checkPIN(pin); err != nil {
		return opError(op, err)
	}
	if pin == a.p.PIN.Initial {
		return opError(op, ErrPINInitialNoUse)
	}
	if err := a.selectApp(ctx); err != nil {
		return opError(op, err)
	}
	if a.blocked {
		return opError(op, ErrApplicationBlocked)
	}
	return opError(op, a.verifyRaw(ctx, pin))
}

// verifyRaw sends one VERIFY (policy already checked).
func (a *App) verifyRaw(ctx context.Context, pin string) error {
	data, err := secure.EncodePIN(pin)
	if err != nil {
		return err
	}
	defer clear(data)
	resp, err := a.transmit(ctx, apdu.Command{INS: 0x20, Data: data, Sensitive: true, Name: "VERIFY"})
	clear(data)
	a.resetAtEnd()
	if err != nil {
		return err
	}
	return pinOutcome(resp.SW)
}

// resetAtEnd asks the session (pcsc.Card) to reset the card when the
// operation ends. Called once a PIN or a key authentication went to the
// card, whatever its answer: a reset costs nothing and leaves no state.
func (a *App) resetAtEnd() {
	if r, ok := a.s.(resetter); ok {
		r.ResetAtEnd()
	}
}

// ChangePIN replaces the PIN (80 5E 01 00 old FF new). confirm is the
// second entry of the new PIN: it must equal newPIN (ErrPINMismatch,
// nothing sent, when it differs or is empty).
func (a *App) ChangePIN(ctx context.Context, oldPIN, newPIN, confirm string) error {
	const op = "change PIN"
	if err := a.checkPIN(oldPIN); err != nil {
		return opError(op, fmt.Errorf("old PIN: %w", err))
	}
	if err := a.checkNewPIN(newPIN, confirm); err != nil {
		return opError(op, err)
	}
	if newPIN == oldPIN {
		return opError(op, ErrPINSameAsOld)
	}
	return opError(op, a.changePIN(ctx, oldPIN, newPIN))
}

func (a *App) changePIN(ctx context.Context, oldPIN, newPIN string) error {
	if err := a.selectApp(ctx); err != nil {
		return err
	}
	if a.blocked {
		return ErrApplicationBlocked
	}
	t, ok := a.p.Template(profiles.CmdPINChange)
	if !ok {
		return fmt.Errorf("%w: profile %s has no pin_change command", ErrNotSupported, a.p.Name)
	}
	o, err := secure.EncodePIN(oldPIN)
	if err != nil {
		return err
	}
	defer clear(o)
	n, err := secure.EncodePIN(newPIN)
	if err != nil {
		return err
	}
	defer clear(n)
	raw, err := t.Build(map[string][]byte{"old": o, "new": n})
	if err != nil {
		return err
	}
	defer clear(raw)
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return err
	}
	cmd.Sensitive, cmd.Name = true, "CHANGE PIN"
	resp, err := a.transmit(ctx, cmd)
	clear(cmd.Data)
	a.resetAtEnd()
	if err != nil {
		return err
	}
	return pinOutcome(resp.SW)
}

// ReloadPIN sets a new PIN for a holder who forgot theirs, by key, the way
// SI_3rdCard does it (card-reference §9): EXTERNAL AUTHENTICATE with the
// reload key (06), SELECT SSSE again, GET CHALLENGE, then the profile's
// pin_reload_by_key command (84 24 00 01 14 <cryptogram> <MAC>) with the
// new PIN encrypted and MACed by the key holder. Re-selecting the
// application keeps the authentication on the card.
func (a *App) ReloadPIN(ctx context.Context, newPIN, confirm string) error {
	const op = "reload PIN"
	if err := a.checkNewPIN(newPIN, confirm); err != nil {
		return opError(op, err)
	}
	t, ok := a.p.Template(profiles.CmdPINReloadByKey)
	if !ok {
		return opError(op, fmt.Errorf("%w: no pin_reload_by_key command", ErrNotSupported))
	}
	// Every step below needs the key holder: without one nothing is sent.
	if err := keys.Ready(a.keys); err != nil {
		return opError(op, err)
	}
	if t.Auth != "" {
		idx, ok := a.p.Crypto.Keys[t.Auth]
		if !ok {
			return opError(op, fmt.Errorf("profile %s: pin_reload_by_key needs unknown key role %s", a.p.Name, t.Auth))
		}
		if err := a.externalAuth(ctx, byte(idx)); err != nil {
			a.resetAtEnd()
			return opError(op, err)
		}
		a.resetAtEnd()
		if err := a.reselectApp(ctx); err != nil {
			return opError(op, err)
		}
	}
	crypt, err := a.encryptPINBlock(ctx, t.EncKey, newPIN)
	if err != nil {
		return opError(op, err)
	}
	sw, err := a.sendMACed(ctx, profiles.CmdPINReloadByKey, map[string][]byte{"cryptogram16": crypt}, true)
	clear(crypt)
	if err != nil {
		return opError(op, err)
	}
	return opError(op, statusError(sw))
}

// reselectApp sends SELECT SSSE again, as the public PIN reload does after
// its EXTERNAL AUTHENTICATE. The card keeps the authentication, and so does
// the App (a.authed); the current EF is forgotten.
func (a *App) reselectApp(ctx context.Context) error {
	resp, err := a.transmit(ctx, apdu.Command{INS: 0xA4, P1: 0x04, Data: a.p.Select.SSSEAID, Ne: 256, Name: "SELECT SSSE"})
	if err != nil {
		return err
	}
	if resp.SW != apdu.SWOK && resp.SW != apdu.SWWarningFileInvalidated {
		return statusError(resp.SW)
	}
	a.current = ""
	return nil
}

// UnblockPIN resets a blocked PIN's try counter with the profile's
// pin_unblock command (MACed by the key holder). It sets no new PIN: PIN
// UNBLOCK "only resets the try counter" and iUnblockPIN has no new-PIN
// argument (card-reference §9); the holder's PIN stays what it was.
func (a *App) UnblockPIN(ctx context.Context) error {
	const op = "unblock PIN"
	t, ok := a.p.Template(profiles.CmdPINUnblock)
	if !ok {
		return opError(op, fmt.Errorf("%w: no pin_unblock command", ErrNotSupported))
	}
	for _, ph := range t.Placeholders() {
		if ph != "mac" {
			return opError(op, fmt.Errorf("%w: profile %s's pin_unblock carries {%s}; PIN UNBLOCK resets the try counter only and takes no new PIN", ErrNotSupported, a.p.Name, ph))
		}
	}
	if err := keys.Ready(a.keys); err != nil {
		return opError(op, err) // before any APDU
	}
	sw, err := a.sendMACed(ctx, profiles.CmdPINUnblock, nil, true)
	a.resetAtEnd()
	if err != nil {
		return opError(op, err)
	}
	return opError(op, statusError(sw))
}
