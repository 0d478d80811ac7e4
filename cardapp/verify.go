package cardapp

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"time"

	"ssstation/cardapp/keys"
	"ssstation/cardapp/records"
	"ssstation/cardapp/secure"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc/apdu"
)

// Verification is the result of VerifyCard.
type Verification struct {
	Genuine    bool   `json:"genuine"`
	ExpiryDate string `json:"expiry_date"`
	Expired    bool   `json:"expired"`
	CheckedOn  string `json:"checked_on"` // YYYYMMDD
	// State: StateActive, StateExpired, or StateBlockedTemp when SELECT
	// SSSE answered 6283 (genuine, but its application is blocked).
	State string `json:"state"`
}

// VerifyCard proves the card genuine with INTERNAL AUTHENTICATE: the card
// encrypts 8 random bytes with its diversified key, the host computes the
// expected answer with the key holder and compares in constant time. It
// also checks the expiry date against today (now, in the station's zone).
// A forged card gives ErrCardNotGenuine; an expired one a result with
// Expired set (it is genuine, but must not be used).
func (a *App) VerifyCard(ctx context.Context, now time.Time) (*Verification, error) {
	v, err := a.verifyCard(ctx, now)
	return v, opError("verify card", err)
}

func (a *App) verifyCard(ctx context.Context, now time.Time) (*Verification, error) {
	if err := a.internalAuth(ctx); err != nil {
		return nil, err
	}
	raw, err := a.readRecord(ctx, profiles.ItemExpiryDate)
	if err != nil {
		return nil, err
	}
	expiry, err := records.Decode(records.TypeNumeric, raw)
	if err != nil {
		return nil, err
	}
	today := now.Format("20060102")
	res := &Verification{Genuine: true, ExpiryDate: expiry, CheckedOn: today}
	if expiry == "" {
		return nil, fmt.Errorf("the card has no expiry date (blank card?)")
	}
	if _, err := time.Parse("20060102", expiry); err != nil {
		return nil, fmt.Errorf("expiry date %q is not a date", expiry)
	}
	res.Expired = expiry < today
	switch {
	case a.blocked:
		res.State = StateBlockedTemp
	case res.Expired:
		res.State = StateExpired
	default:
		res.State = StateActive
	}
	return res, nil
}

// internalAuth runs INTERNAL AUTHENTICATE and checks the answer:
// 00 88 00 P2 10 <factor 8> <data 8>. The factor is, per the profile, a
// process factor from GET CHALLENGE (as SI_3rdCard fills it,
// card-reference §9) or derived from the card identification code; the
// data is 8 random bytes of the host, and the card's answer is checked
// against the key holder's encryption of them (assumption
// A-INT-AUTH-FACTOR: how the card computes its answer is not public).
func (a *App) internalAuth(ctx context.Context) error {
	if err := keys.Ready(a.keys); err != nil {
		return err
	}
	if err := a.selectApp(ctx); err != nil {
		return err
	}
	ia := a.p.Crypto.InternalAuth
	holder, ok := a.p.HolderKeyFor(ia.Key)
	if !ok {
		return fmt.Errorf("profile %s names no key holder key for %s", a.p.Name, ia.Key)
	}
	req, err := a.request(ctx, holder) // reads the card id first if needed
	if err != nil {
		return err
	}
	var factor []byte
	if ia.Factor == profiles.FactorChallenge {
		if factor, err = a.challenge(ctx); err != nil {
			return err
		}
	} else if factor, err = profiles.DivInput(ia.Factor, a.cardID); err != nil {
		return err
	}
	random := make([]byte, 8)
	if _, err := rand.Read(random); err != nil {
		return err
	}
	block, err := secure.InternalAuthData(a.alg, random)
	if err != nil {
		return err
	}
	want, err := a.keys.Encrypt(ctx, req, block)
	if err != nil {
		return fmt.Errorf("key holder: %w", err)
	}
	resp, err := a.transmit(ctx, apdu.Command{INS: 0x88, P2: byte(a.p.Crypto.Keys[ia.Key]), Data: append(factor, random...),
		Ne: a.alg.BlockSize(), Sensitive: true, Name: "INTERNAL AUTHENTICATE"})
	if err != nil {
		return err
	}
	if !resp.SW.OK() {
		return statusError(resp.SW)
	}
	if subtle.ConstantTimeCompare(resp.Data, want) != 1 {
		return ErrCardNotGenuine
	}
	a.genuine = true
	return nil
}

// sendMACed sends a profile command whose last data bytes are a MAC: a
// fresh GET CHALLENGE gives the IV, the key holder computes the MAC over
// the header and data (secure.MACInput). vals fills the template's other
// placeholders. The answer's status word is returned for the caller.
func (a *App) sendMACed(ctx context.Context, name string, vals map[string][]byte, sensitive bool) (apdu.StatusWord, error) {
	t, ok := a.p.Template(name)
	if !ok {
		return 0, fmt.Errorf("%w: profile %s has no %s command", ErrNotSupported, a.p.Name, name)
	}
	// No keys: refused before any APDU (not even the SELECT).
	if err := keys.Ready(a.keys); err != nil {
		return 0, err
	}
	if err := a.selectApp(ctx); err != nil {
		return 0, err
	}
	if t.Auth != "" {
		idx, ok := a.p.Crypto.Keys[t.Auth]
		if !ok {
			return 0, fmt.Errorf("profile %s: %s needs unknown key role %s", a.p.Name, name, t.Auth)
		}
		if err := a.externalAuth(ctx, byte(idx)); err != nil {
			return 0, err
		}
	}
	macReq, err := a.request(ctx, t.MACKey)
	if err != nil {
		return 0, err
	}
	ch, err := a.challenge(ctx)
	if err != nil {
		return 0, err
	}
	iv, err := secure.IV(a.alg, ch)
	if err != nil {
		return 0, err
	}
	all := map[string][]byte{"mac": make([]byte, secure.MACSize)}
	for k, v := range vals {
		all[k] = v
	}
	raw, err := t.Build(all)
	if err != nil {
		return 0, err
	}
	if sensitive {
		defer clear(raw) // holds the PIN cryptogram (reload)
	}
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return 0, fmt.Errorf("template %s: %w", name, err)
	}
	in, err := secure.MACInput(cmd.CLA, cmd.INS, cmd.P1, cmd.P2, cmd.Data)
	if err != nil {
		return 0, err
	}
	mac, err := a.keys.MAC(ctx, macReq, iv, in)
	if err != nil {
		return 0, fmt.Errorf("key holder: %w", err)
	}
	copy(cmd.Data[len(cmd.Data)-secure.MACSize:], mac)
	cmd.Sensitive, cmd.Name = sensitive, commandTitle(name)
	resp, err := a.transmit(ctx, cmd)
	if sensitive {
		clear(cmd.Data)
	}
	if err != nil {
		return 0, err
	}
	return resp.SW, nil
}

// encryptPINBlock encrypts a PIN block for the reload and unblock commands.
func (a *App) encryptPINBlock(ctx context.Context, holderKey, pin string) ([]byte, error) {
	if err := keys.Ready(a.keys); err != nil {
		return nil, err
	}
	block, err := secure.PINBlock(pin)
	if err != nil {
		return nil, err
	}
	defer clear(block)
	req, err := a.request(ctx, holderKey)
	if err != nil {
		return nil, err
	}
	out, err := a.keys.Encrypt(ctx, req, block)
	if err != nil {
		return nil, fmt.Errorf("key holder: %w", err)
	}
	return out, nil
}

func commandTitle(name string) string {
	b := []byte(name)
	for i, c := range b {
		switch {
		case c == '_':
			b[i] = ' '
		case c >= 'a' && c <= 'z':
			b[i] = c - 32
		}
	}
	return string(b)
}
