// Package cardapp is the host side of the social security (SSSE) card
// application: detection, reading, card authentication, PIN work and
// issuance, each driven by a firmware profile. It knows nothing of HTTP,
// storage or terminals: every operation takes a context and a card
// Session and returns a typed result, so the daemon's reader workers, the
// CLI and the tests all call the same code.
package cardapp

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc/apdu"
)

// Session is a connection to one card: *pcsc.Card is one. Everything
// goes through the transmit loop behind Transmit.
type Session interface {
	Transmit(ctx context.Context, cmd apdu.Command) (apdu.Response, error)
	ATR() []byte
}

// resetter is implemented by sessions that can reset the card when the
// operation ends (pcsc.Card.ResetAtEnd): used after a PIN was verified, so
// the verification does not outlive the operation.
type resetter interface{ ResetAtEnd() }

// App is the SSSE application on one card for the length of one
// operation. It remembers what is selected and which keys were
// authenticated, so that no SELECT or authentication is sent twice.
type App struct {
	s       Session
	p       *profiles.Profile
	alg     keys.Algorithm
	keys    keys.Provider
	current string            // name of the selected EF ("EF05"), "" for the application itself
	inApp   bool              // SSSE is selected
	blocked bool              // SELECT SSSE answered 6283
	authed  map[byte]bool     // external authentications done since SSSE was selected
	genuine bool              // INTERNAL AUTHENTICATE passed in this operation
	cardID  []byte            // EF05 record 1, once read
	values  map[string][]byte // record values read in this operation, by item
	algEnv  byte              // 9F0C algorithm environment from the SELECT answer (0 if absent)
	ident   *Identification   // how Identify chose the profile (nil for NewApp)
	now     func() time.Time
}

// Options are the station settings operations need.
type Options struct {
	// Keys computes cryptograms and MACs (software keystore or PSAM). Nil
	// (or keys.None): reads work, genuineness is not checked and key
	// operations refuse.
	Keys keys.Provider
	// Now is the station's clock for expiry checks (nil: time.Now).
	Now func() time.Time
}

// NewApp starts an operation on a card known to be of profile p.
func NewApp(s Session, p *profiles.Profile, opts Options) (*App, error) {
	alg, err := keys.ParseAlgorithm(p.Crypto.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &App{s: s, p: p, alg: alg, keys: opts.Keys, authed: map[byte]bool{}, values: map[string][]byte{}, now: now}, nil
}

// hasKeys reports whether a key provider is configured.
func (a *App) hasKeys() bool { return keys.Ready(a.keys) == nil }

// Profile is the card's profile.
func (a *App) Profile() *profiles.Profile { return a.p }

// transmit sends one command and returns the response; PC/SC failures
// come back as errors, status words in the response.
func (a *App) transmit(ctx context.Context, cmd apdu.Command) (apdu.Response, error) {
	return a.s.Transmit(ctx, cmd)
}

// selectApp selects the SSSE application (and 3F00 first where the
// profile's card needs it), once per operation. A blocked application
// (6283) is selected all the same: the caller decides whether that stops it.
func (a *App) selectApp(ctx context.Context) error {
	if a.inApp {
		return nil
	}
	if a.p.Select.MFFirst {
		// Some cards need the MF selected first; a failure is not fatal
		// (public issuance code ignores it, card-reference §3).
		if _, err := a.transmit(ctx, apdu.Command{INS: 0xA4, Data: []byte{0x3F, 0x00}, Name: "SELECT MF"}); err != nil {
			return err
		}
	}
	resp, err := a.transmit(ctx, apdu.Command{INS: 0xA4, P1: 0x04, Data: a.p.Select.SSSEAID, Ne: 256, Name: "SELECT SSSE"})
	if err != nil {
		return err
	}
	switch resp.SW {
	case apdu.SWOK:
	case apdu.SWWarningFileInvalidated:
		a.blocked = true
	default:
		return statusError(resp.SW)
	}
	a.algEnv = algorithmEnvironment(resp.Data)
	a.inApp, a.current = true, ""
	a.authed = map[byte]bool{}
	return nil
}

// algorithmEnvironment finds 9F0C 03 86 01 xx in the SELECT answer
// (card-reference §2); 0 when absent.
func algorithmEnvironment(fci []byte) byte {
	i := bytes.Index(fci, []byte{0x9F, 0x0C})
	if i < 0 || i+6 > len(fci) {
		return 0
	}
	v := fci[i+3:]
	if len(v) >= 3 && v[0] == 0x86 && v[1] == 0x01 {
		return v[2]
	}
	return 0
}

// AlgorithmName names the algorithm environment of the SELECT answer;
// absent means 01 (card-reference §2).
func AlgorithmName(env byte) string {
	switch env {
	case 0, 1:
		return "3DES"
	case 2:
		return "SSF33"
	case 3:
		return "SM4"
	}
	return fmt.Sprintf("unknown (%02X)", env)
}

// selectEF makes file the current EF, unless it already is.
func (a *App) selectEF(ctx context.Context, file string) error {
	if err := a.selectApp(ctx); err != nil {
		return err
	}
	if a.current == file {
		return nil
	}
	f, ok := a.p.Files[file]
	if !ok {
		return fmt.Errorf("profile %s has no file %s", a.p.Name, file)
	}
	resp, err := a.transmit(ctx, apdu.Command{INS: 0xA4, P1: a.p.Select.EFP1, P2: a.p.Select.EFP2, Data: f.FID[:], Name: "SELECT " + file})
	if err != nil {
		return err
	}
	if !resp.SW.OK() {
		return statusError(resp.SW)
	}
	a.current = file
	return nil
}

// keyPath is the diversification path of this card: one 8-byte input per
// level of the profile, from the card identification code.
func (a *App) keyPath(ctx context.Context) ([][]byte, error) {
	id, err := a.CardID(ctx)
	if err != nil {
		return nil, err
	}
	path := make([][]byte, 0, len(a.p.Crypto.Diversification.Levels))
	for _, l := range a.p.Crypto.Diversification.Levels {
		in, err := profiles.DivInput(l, id)
		if err != nil {
			return nil, err
		}
		path = append(path, in)
	}
	return path, nil
}

// request names a holder key for this card.
func (a *App) request(ctx context.Context, name string) (keys.Request, error) {
	path, err := a.keyPath(ctx)
	if err != nil {
		return keys.Request{}, err
	}
	return keys.Request{Key: keys.KeyName(name), Algorithm: a.alg, Path: path}, nil
}

// challenge asks the card for 8 random bytes.
func (a *App) challenge(ctx context.Context) ([]byte, error) {
	resp, err := a.transmit(ctx, apdu.Command{INS: 0x84, Ne: 8, Name: "GET CHALLENGE"})
	if err != nil {
		return nil, err
	}
	if !resp.SW.OK() || len(resp.Data) != 8 {
		if !resp.SW.OK() {
			return nil, statusError(resp.SW)
		}
		return nil, fmt.Errorf("GET CHALLENGE answered %d bytes, want 8", len(resp.Data))
	}
	return resp.Data, nil
}

// externalAuth authenticates the host to the card with the card key index
// kk, once per operation. It is never retried: a refusal is returned with
// the tries the card reports, and a second attempt is the caller's
// explicit decision.
func (a *App) externalAuth(ctx context.Context, kk byte) error {
	if a.authed[kk] {
		return nil
	}
	role := ""
	for r, idx := range a.p.Crypto.Keys {
		if byte(idx) == kk {
			role = r
		}
	}
	holder, ok := a.p.HolderKeyFor(role)
	if role == "" || !ok {
		return fmt.Errorf("profile %s names no key holder key for card key %02X", a.p.Name, kk)
	}
	// No keys: refused before any APDU (not even the SELECT).
	if !a.hasKeys() {
		if role == "read" {
			return fmt.Errorf("card key %02X: %w", kk, ErrNoReadKey)
		}
		return fmt.Errorf("card key %02X: %w", kk, keys.ErrNoProvider)
	}
	if err := a.selectApp(ctx); err != nil {
		return err
	}
	req, err := a.request(ctx, holder)
	if err != nil {
		return err
	}
	ch, err := a.challenge(ctx)
	if err != nil {
		return err
	}
	crypt, err := keys.ExternalAuthCryptogram(ctx, a.keys, req, ch)
	if err != nil {
		return fmt.Errorf("key holder: %w", err)
	}
	resp, err := a.transmit(ctx, apdu.Command{INS: 0x82, P2: kk, Data: crypt, Sensitive: true, Name: "EXTERNAL AUTHENTICATE"})
	if err != nil {
		return err
	}
	if n, ok := resp.SW.Retries(); ok {
		return &WrongKey{KeyIndex: kk, Retries: n}
	}
	if resp.SW == apdu.SWAuthBlocked {
		return fmt.Errorf("%w: key %02X", ErrKeyBlocked, kk)
	}
	if !resp.SW.OK() {
		return statusError(resp.SW)
	}
	a.authed[kk] = true
	return nil
}

// readRecord reads one record item, authenticating first if its access
// condition asks for a key, and returns the record's value.
func (a *App) readRecord(ctx context.Context, item string) ([]byte, error) {
	if v, ok := a.values[item]; ok {
		return v, nil
	}
	file, rec, ok := a.p.Record(item)
	if !ok {
		return nil, fmt.Errorf("%w: profile %s has no %s record", ErrNotSupported, a.p.Name, item)
	}
	acc, _ := a.p.ReadAccess(item)
	switch acc.Kind {
	case profiles.AccessKey:
		if item == profiles.ItemCardID {
			// The key is diversified from the card id: it must be free to read.
			return nil, fmt.Errorf("profile %s guards the card identification code with a key: no key can be derived to read it", a.p.Name)
		}
		if err := a.externalAuth(ctx, acc.Key); err != nil {
			return nil, err
		}
	case profiles.AccessNever:
		return nil, fmt.Errorf("%w: %s is never readable", ErrSecurityStatus, item)
	}
	f := a.p.Files[file]
	if f.SelectsEF() {
		if err := a.selectEF(ctx, file); err != nil {
			return nil, err
		}
	} else if err := a.selectApp(ctx); err != nil {
		return nil, err
	}
	// By record identifier and SFI (the real card's coding), by tag in the
	// current EF, or by number: the profile's read_by (card-reference §2, §9).
	p1, p2 := f.ReadCommand(rec)
	// Personal data (EF06: name, ID number, birth data) never reaches a
	// trace: the read is marked sensitive and its answer is redacted.
	resp, err := a.transmit(ctx, apdu.Command{INS: 0xB2, P1: p1, P2: p2, Ne: rec.Length + 2, Sensitive: file == "EF06", Name: "READ RECORD " + item})
	if err != nil {
		return nil, err
	}
	if !f.SelectsEF() {
		// A read by SFI makes that EF the current one (ISO/IEC 7816-4):
		// forget what we thought was selected, so that a later UPDATE
		// RECORD in the current EF selects its file again.
		a.current = ""
	}
	if !resp.SW.OK() {
		return nil, statusError(resp.SW)
	}
	if len(resp.Data) < 2 || resp.Data[0] != rec.Tag {
		return nil, fmt.Errorf("%s %s: expected tag %02X, got % X", file, item, rec.Tag, firstBytes(resp.Data, 2))
	}
	n := int(resp.Data[1])
	if 2+n > len(resp.Data) {
		return nil, fmt.Errorf("%s %s: tag %02X announces %d bytes but %d follow", file, item, rec.Tag, n, len(resp.Data)-2)
	}
	v := append([]byte(nil), resp.Data[2:2+n]...)
	a.values[item] = v
	return v, nil
}

// forget drops cached record values after the card's records were written.
func (a *App) forget() { a.values = map[string][]byte{} }

func firstBytes(b []byte, n int) []byte {
	if len(b) < n {
		return b
	}
	return b[:n]
}

// CardID reads (once) the 16-byte card identification code.
func (a *App) CardID(ctx context.Context) ([]byte, error) {
	if a.cardID != nil {
		return a.cardID, nil
	}
	v, err := a.readRecord(ctx, profiles.ItemCardID)
	if err != nil {
		return nil, err
	}
	if len(v) != 16 {
		return nil, fmt.Errorf("%w: %d bytes, want 16", ErrCardIDMalformed, len(v))
	}
	a.cardID = append([]byte(nil), v...)
	return a.cardID, nil
}
