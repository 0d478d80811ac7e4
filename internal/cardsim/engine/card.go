// Package engine is a generic ISO/IEC 7816-4 file-system card for the
// simulator: an MF with DFs and transparent or record EFs loaded from a JSON
// image, SELECT, READ/UPDATE BINARY, READ/UPDATE RECORD, GET CHALLENGE and
// VERIFY, with per-EF access conditions.
//
// A richer card (the social-security engine) extends it rather than copying
// it: the file system, the selection, the PIN, the security state and the
// last challenge are exported, and the command set is a dispatch table where
// Handle adds or overrides an INS; the default handlers are exported so an
// override can fall back to them:
//
//	c, _ := engine.New(img)
//	c.AllowCLA(0x80)
//	c.Handle(0xB2, func(c *engine.Card, cmd apdu.Command) apdu.Response {
//		if cmd.P2 == 0x00 { /* read record by tag */ }
//		return engine.ReadRecord(c, cmd)
//	})
//
// Handlers run with the card's lock held, one command at a time; they read
// and change the exported fields directly and must not call Process, Reset
// or Do (use Dispatch to run another command from inside a handler).
package engine

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"ssstation/internal/cardsim/vpcd"
	"ssstation/pcsc/apdu"
)

// Handler answers one parsed command.
type Handler func(c *Card, cmd apdu.Command) apdu.Response

// Card is a live card built from an Image. It implements vpcd.Card.
type Card struct {
	// MF is the root of the file tree.
	MF *DF
	// CurrentDF is the selected DF (the MF after a reset); CurrentEF the
	// selected EF under it, nil when none.
	CurrentDF *DF
	CurrentEF *EF
	// PIN is the card's PIN, nil when the image has none. Its try counter
	// survives Reset (it is non-volatile); whether it was verified is in Security.
	PIN *PINState
	// Security is the volatile security state, cleared by Reset.
	Security Security
	// Challenge is the last GET CHALLENGE answer, nil after Reset. An
	// EXTERNAL AUTHENTICATE handler reads it (and should clear it after use).
	Challenge []byte
	// Rand is the random source of GET CHALLENGE (crypto/rand by default;
	// tests put a fixed reader here).
	Rand io.Reader
	// CheckAccess decides an access condition; nil means DefaultCheckAccess.
	CheckAccess func(c *Card, a Access) apdu.StatusWord

	atr, atrT0 []byte
	image      *Image

	mu       sync.Mutex
	handlers map[byte]Handler
	classes  map[byte]bool
	onReset  []func(*Card)
}

var _ vpcd.Card = (*Card)(nil)

// Security is the volatile security state of a card.
type Security struct {
	PINVerified bool
	// Keys holds the indexes of the keys authenticated (by EXTERNAL
	// AUTHENTICATE) since the last reset.
	Keys map[byte]bool
}

// Authenticate records key index k as authenticated.
func (s *Security) Authenticate(k byte) {
	if s.Keys == nil {
		s.Keys = map[byte]bool{}
	}
	s.Keys[k] = true
}

// Authenticated reports whether key index k was authenticated.
func (s *Security) Authenticated(k byte) bool { return s.Keys[k] }

// Clear forgets the verified PIN and every authenticated key.
func (s *Security) Clear() {
	s.PINVerified = false
	s.Keys = nil
}

// PINState is a PIN and its try counter.
type PINState struct {
	Value    string // decimal digits
	MaxTries int
	Left     int // tries left; 0 = blocked
}

// Blocked reports a PIN with no tries left.
func (p *PINState) Blocked() bool { return p.Left <= 0 }

// Matches compares a PIN block (BCD, F-padded) with the PIN, without counting.
func (p *PINState) Matches(block []byte) bool {
	want, err := EncodePIN(p.Value)
	return err == nil && string(want) == string(block)
}

// Check verifies a PIN block and counts: 9000 (counter reset to MaxTries),
// 63Cx with x tries left, or 6983 when the PIN is (already) blocked.
func (p *PINState) Check(block []byte) apdu.StatusWord {
	if p.Blocked() {
		return apdu.SWAuthBlocked
	}
	if p.Matches(block) {
		p.Left = p.MaxTries
		return apdu.SWOK
	}
	p.Left--
	return apdu.StatusWord(0x63C0 | uint16(p.Left&0x0F))
}

// Set changes the PIN (digits only, 1..16 of them) without touching the counter.
func (p *PINState) Set(digits string) error {
	if _, err := EncodePIN(digits); err != nil {
		return err
	}
	p.Value = digits
	return nil
}

// Unblock gives the PIN all its tries back.
func (p *PINState) Unblock() { p.Left = p.MaxTries }

// EncodePIN packs decimal digits as BCD, two per byte, padding an odd count
// with F (card-reference §3: "12345" -> 12 34 5F).
func EncodePIN(digits string) ([]byte, error) {
	if len(digits) == 0 || len(digits) > 16 {
		return nil, fmt.Errorf("PIN of %d digits: want 1..16", len(digits))
	}
	if strings.Trim(digits, "0123456789") != "" {
		return nil, errors.New("PIN has a character that is not a decimal digit")
	}
	if len(digits)%2 == 1 {
		digits += "F"
	}
	out := make([]byte, len(digits)/2)
	for i := range out {
		out[i] = nibble(digits[2*i])<<4 | nibble(digits[2*i+1])
	}
	return out, nil
}

func nibble(c byte) byte {
	if c == 'F' {
		return 0xF
	}
	return c - '0'
}

// DecodePIN unpacks a BCD PIN block; F nibbles are padding and may only
// come at the end.
func DecodePIN(block []byte) (string, error) {
	var sb strings.Builder
	pad := false
	for _, b := range block {
		for _, n := range []byte{b >> 4, b & 0x0F} {
			switch {
			case n == 0xF:
				pad = true
			case n > 9 || pad:
				return "", errors.New("PIN block is not BCD digits followed by F padding")
			default:
				sb.WriteByte('0' + n)
			}
		}
	}
	if sb.Len() == 0 {
		return "", errors.New("PIN block holds no digit")
	}
	return sb.String(), nil
}

// New builds a fresh card from an image (nil: DefaultImage). Every call
// gives an independent card with its own files and counters.
func New(img *Image) (*Card, error) {
	if img == nil {
		img = DefaultImage()
	}
	b, err := img.build()
	if err != nil {
		return nil, err
	}
	c := &Card{
		MF:        b.mf,
		CurrentDF: b.mf,
		PIN:       b.pin,
		Rand:      rand.Reader,
		atr:       b.atr,
		atrT0:     b.atrT0,
		image:     img,
		classes:   map[byte]bool{0x00: true},
		handlers: map[byte]Handler{
			0xA4: Select,
			0xB0: ReadBinary,
			0xD6: UpdateBinary,
			0xB2: ReadRecord,
			0xDC: UpdateRecord,
			0x84: GetChallenge,
			0x20: Verify,
		},
	}
	return c, nil
}

// Image is the image the card was built from.
func (c *Card) Image() *Image { return c.image }

// ATR is the card's T=1 answer-to-reset.
func (c *Card) ATR() []byte { return append([]byte(nil), c.atr...) }

// ATRT0 is the T=0-only answer-to-reset that T0 presents.
func (c *Card) ATRT0() []byte { return append([]byte(nil), c.atrT0...) }

// Handle installs h for INS ins, replacing the one there (nil removes it).
// Call Handler(ins) first to keep the previous one for a fallback.
func (c *Card) Handle(ins byte, h Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h == nil {
		delete(c.handlers, ins)
		return
	}
	c.handlers[ins] = h
}

// Handler returns the handler installed for ins, nil if none.
func (c *Card) Handler(ins byte) Handler {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.handlers[ins]
}

// AllowCLA accepts commands of class cla (only 00 by default): any other
// class is answered 6E00 before the dispatch table is consulted. The
// default handlers themselves accept only CLA 00.
func (c *Card) AllowCLA(cla byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.classes[cla] = true
}

// OnReset adds f to what Reset does after clearing the generic state, for
// an extension's own volatile state (session keys...).
func (c *Card) OnReset(f func(*Card)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onReset = append(c.onReset, f)
}

// Do runs f with the card's lock held, to read or change the card from
// outside a handler (tests, a control channel).
func (c *Card) Do(f func(*Card)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

// Reset is power-up: the MF is selected, no EF, no verified PIN, no
// authenticated key, no challenge; the files and the PIN counter are kept.
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.CurrentDF, c.CurrentEF = c.MF, nil
	c.Security.Clear()
	c.Challenge = nil
	for _, f := range c.onReset {
		f(c)
	}
}

// Process answers one raw command APDU (vpcd.Card).
func (c *Card) Process(raw []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return Status(apdu.SWWrongLength).Bytes()
	}
	return c.Dispatch(cmd).Bytes()
}

// Dispatch runs one command through the class check and the dispatch
// table. It assumes the lock is held (it is, inside a handler).
func (c *Card) Dispatch(cmd apdu.Command) apdu.Response {
	if !c.classes[cmd.CLA] {
		return Status(apdu.SWCLANotSupported)
	}
	h := c.handlers[cmd.INS]
	if h == nil {
		return Status(apdu.SWINSNotSupported)
	}
	return h(c, cmd)
}

// Status is a response with a status word and no data.
func Status(sw apdu.StatusWord) apdu.Response { return apdu.Response{SW: sw} }

// OK is a response with data and 9000.
func OK(data []byte) apdu.Response { return apdu.Response{Data: data, SW: apdu.SWOK} }

// SelectDF makes d the current DF, with no current EF.
func (c *Card) SelectDF(d *DF) { c.CurrentDF, c.CurrentEF = d, nil }

// SelectEF makes e the current EF and its parent the current DF.
func (c *Card) SelectEF(e *EF) { c.CurrentDF, c.CurrentEF = e.Parent, e }

// TargetEF is the EF a READ/UPDATE command works on: the current EF when
// sfi is 0, else the EF with that SFI under the current DF, which becomes
// the current EF. It answers 6986 when there is no current EF and 6A82
// when no EF has the SFI.
func (c *Card) TargetEF(sfi byte) (*EF, apdu.StatusWord) {
	if sfi == 0 {
		if c.CurrentEF == nil {
			return nil, apdu.SWCommandNotAllowed
		}
		return c.CurrentEF, apdu.SWOK
	}
	e := c.CurrentDF.EFBySFI(sfi)
	if e == nil {
		return nil, apdu.SWFileNotFound
	}
	c.SelectEF(e)
	return e, apdu.SWOK
}

// Allowed checks an access condition against the security state: 9000, or
// the status word to answer (6982 by default).
func (c *Card) Allowed(a Access) apdu.StatusWord {
	if c.CheckAccess != nil {
		return c.CheckAccess(c, a)
	}
	return DefaultCheckAccess(c, a)
}

// DefaultCheckAccess: free passes; pin needs a verified PIN; key:XX needs
// key XX authenticated; never fails. Failures answer 6982.
func DefaultCheckAccess(c *Card, a Access) apdu.StatusWord {
	switch a.Kind {
	case Free:
		return apdu.SWOK
	case PIN:
		if c.Security.PINVerified {
			return apdu.SWOK
		}
	case Key:
		if c.Security.Authenticated(a.Key) {
			return apdu.SWOK
		}
	}
	return apdu.SWSecurityStatus
}

// NewChallenge draws n random bytes from Rand and remembers them as Challenge.
func (c *Card) NewChallenge(n int) ([]byte, error) {
	r := c.Rand
	if r == nil {
		r = rand.Reader
	}
	ch := make([]byte, n)
	if _, err := io.ReadFull(r, ch); err != nil {
		return nil, err
	}
	c.Challenge = ch
	return append([]byte(nil), ch...), nil
}
