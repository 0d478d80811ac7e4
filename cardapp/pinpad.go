package cardapp

import (
	"context"
	"errors"
	"fmt"

	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
)

// PIN entry on the reader's own keypad (PC/SC part 10,
// FEATURE_VERIFY_PIN_DIRECT / FEATURE_MODIFY_PIN_DIRECT). The station
// builds the structure from the profile's PIN policy (lengths, BCD, pad
// nibble, the VERIFY and pin_change codings); the reader takes the digits,
// puts them into the APDU and sends it, so the PIN never passes through
// the host. What the host path checks on the digits (the initial PIN is
// not used to transact, the new PIN differs from the initial and the old
// one, two entries agree) the host cannot check here: the reader checks
// the lengths and the confirmation, the card the rest.

// PINPad is a reader whose keypad takes PINs: *pcsc.Card is one.
type PINPad interface {
	PINPad(ctx context.Context) pcsc.PINPadCaps
	VerifyPINDirect(ctx context.Context, s pcsc.VerifyPINStructure) (apdu.StatusWord, error)
	ModifyPINDirect(ctx context.Context, s pcsc.ModifyPINStructure) (apdu.StatusWord, error)
}

// PINPadOptions tune the entry.
type PINPadOptions struct {
	// Digits fixes the PIN length typed on the pad. 0: the profile's when
	// its minimum and maximum agree; otherwise verify lets the reader take
	// min..max digits and set Lc itself (assumption A-PINPAD-VARIABLE-LC),
	// and change refuses (the new PIN's place depends on the old one's
	// length).
	Digits int
	// Timeout is how long the reader waits for the PIN, in seconds (0: 30).
	Timeout byte
	// LangID is the language of the reader's prompts (0: 0x0804, Chinese).
	LangID uint16
}

// PIN pad outcomes the reader reports itself (part 10 §2.5.5): the entry
// never reached the card and no try was spent.
var (
	ErrPINPadTimeout   = errors.New("PIN pad: no PIN was typed in time")
	ErrPINPadCancelled = errors.New("PIN pad: the holder cancelled the entry")
	ErrPINPadMismatch  = errors.New("PIN pad: the two entries of the new PIN differ")
	ErrPINPadRejected  = errors.New("PIN pad: the reader refused the PIN structure")
	ErrPINPadLength    = errors.New("PIN pad: the PIN typed has a length out of the card's range")
	ErrNoPINPad        = pcsc.ErrNoPINPad
)

const (
	defaultPadTimeout = 30
	langChinesePRC    = 0x0804
	// EntryValidationKey: entry ends when the holder presses the
	// validation key (part 10 bEntryValidationCondition 02), as a person
	// typing a PIN of variable length expects.
	entryValidationKey = 0x02
)

// padFormat is the part of the structures the profile decides.
func padFormat(p *profiles.Profile, o PINPadOptions) (pcsc.PINFormat, int, error) {
	pol := p.PIN
	if pol.MinLength < 1 || pol.MaxLength < pol.MinLength || pol.MaxLength > 16 {
		return pcsc.PINFormat{}, 0, fmt.Errorf("profile %s: PIN lengths %d..%d cannot be typed on a PIN pad", p.Name, pol.MinLength, pol.MaxLength)
	}
	digits := o.Digits
	if digits == 0 && pol.MinLength == pol.MaxLength {
		digits = pol.MinLength
	}
	if digits != 0 && (digits < pol.MinLength || digits > pol.MaxLength) {
		return pcsc.PINFormat{}, 0, fmt.Errorf("%w: %d digits, the card takes %d to %d", ErrPINLength, digits, pol.MinLength, pol.MaxLength)
	}
	f := pcsc.PINFormat{
		Timeout: o.Timeout, TimeoutAfterKey: o.Timeout,
		// Bytes as units, PIN at the first data byte, left-justified, BCD:
		// the PIN as VERIFY carries it (card-reference §3).
		FormatString:    pcsc.FormatUnitsBytes | pcsc.FormatBCD,
		EntryValidation: entryValidationKey,
		NumberMessage:   0x01,
		LangID:          o.LangID,
	}
	if f.Timeout == 0 {
		f.Timeout, f.TimeoutAfterKey = defaultPadTimeout, defaultPadTimeout
	}
	if f.LangID == 0 {
		f.LangID = langChinesePRC
	}
	if digits != 0 {
		f.MinDigits, f.MaxDigits = byte(digits), byte(digits)
		f.PINBlockString = byte((digits + 1) / 2) // no length field; block of ceil(n/2) bytes
	} else {
		f.MinDigits, f.MaxDigits = byte(pol.MinLength), byte(pol.MaxLength)
	}
	return f, digits, nil
}

// padBlock is the PIN block the reader writes the digits over: every
// nibble the profile's pad, so that an odd count ends with it (card-reference §3).
func padBlock(p *profiles.Profile, digits int) []byte {
	b := make([]byte, (digits+1)/2)
	n := p.PIN.Pad & 0x0F
	for i := range b {
		b[i] = n<<4 | n
	}
	return b
}

// VerifyPINPadStructure is the PIN_VERIFY_STRUCTURE for profile p: VERIFY
// 00 20 00 00 with a block of the fixed length (Lc = ceil(n/2), the bytes
// the host path sends for a PIN of n digits), or, for a variable length,
// the bare header for the reader to complete.
func VerifyPINPadStructure(p *profiles.Profile, o PINPadOptions) (pcsc.VerifyPINStructure, error) {
	f, digits, err := padFormat(p, o)
	if err != nil {
		return pcsc.VerifyPINStructure{}, err
	}
	cmd := []byte{0x00, 0x20, 0x00, 0x00}
	if digits != 0 {
		block := padBlock(p, digits)
		cmd = append(append(cmd, byte(len(block))), block...)
	}
	// digits == 0: a case 1 header and a block size of 0: the reader
	// inserts the BCD digits and sets Lc (OpenSC's part10_build_verify_pin_block
	// does the same for BCD PINs); assumption A-PINPAD-VARIABLE-LC.
	return pcsc.VerifyPINStructure{PINFormat: f, APDU: cmd}, nil
}

// ChangePINPadStructure is the PIN_MODIFY_STRUCTURE for profile p: its
// pin_change template (80 5E 01 00 Lc old FF new on the shipped
// profiles) with both PINs of the fixed length, the offsets found in the
// built template, the current PIN asked first and the new one twice.
func ChangePINPadStructure(p *profiles.Profile, o PINPadOptions) (pcsc.ModifyPINStructure, error) {
	t, ok := p.Template(profiles.CmdPINChange)
	if !ok {
		return pcsc.ModifyPINStructure{}, fmt.Errorf("%w: profile %s has no pin_change command", ErrNotSupported, p.Name)
	}
	f, digits, err := padFormat(p, o)
	if err != nil {
		return pcsc.ModifyPINStructure{}, err
	}
	if digits == 0 {
		return pcsc.ModifyPINStructure{}, fmt.Errorf("%w: profile %s takes PINs of %d to %d digits; a PIN pad change needs a fixed length (the new PIN's place depends on the old one's): give the number of digits",
			ErrNotSupported, p.Name, p.PIN.MinLength, p.PIN.MaxLength)
	}
	block := padBlock(p, digits)
	raw, err := t.Build(map[string][]byte{"old": block, "new": block})
	if err != nil {
		return pcsc.ModifyPINStructure{}, err
	}
	oldAt, err := placeOf(t, "old", block)
	if err != nil {
		return pcsc.ModifyPINStructure{}, err
	}
	newAt, err := placeOf(t, "new", block)
	if err != nil {
		return pcsc.ModifyPINStructure{}, err
	}
	if len(raw) < 5 || oldAt < 5 || newAt < 5 || raw[4] != byte(len(raw)-5) {
		return pcsc.ModifyPINStructure{}, fmt.Errorf("profile %s: pin_change %q is not a short case 3 APDU with the PINs in its data", p.Name, t.Text)
	}
	return pcsc.ModifyPINStructure{
		PINFormat: f,
		// Offsets count from the first byte after Lc (part 10 §2.5.3).
		InsertionOffsetOld: byte(oldAt - 5),
		InsertionOffsetNew: byte(newAt - 5),
		ConfirmPIN:         0x03, // current PIN first, new PIN twice
		MsgIndex1:          0x00, MsgIndex2: 0x01, MsgIndex3: 0x02,
		APDU: raw,
	}, nil
}

// placeOf finds where placeholder name lands in the built template: the
// template is built twice, with the PIN block and with its complement, and
// the first differing byte is the placeholder's.
func placeOf(t profiles.Template, name string, block []byte) (int, error) {
	other := make([]byte, len(block))
	for i := range block {
		other[i] = ^block[i]
	}
	a := map[string][]byte{"old": block, "new": block}
	b := map[string][]byte{"old": block, "new": block}
	b[name] = other
	ra, err := t.Build(a)
	if err != nil {
		return 0, err
	}
	rb, err := t.Build(b)
	if err != nil {
		return 0, err
	}
	for i := range ra {
		if i < len(rb) && ra[i] != rb[i] {
			return i, nil
		}
	}
	return 0, fmt.Errorf("template %s has no {%s}", t.Name, name)
}

// VerifyPINOnPad has the holder type the PIN on the reader's keypad and the
// reader send VERIFY. Outcomes as VerifyPIN's, plus the reader's own
// (ErrPINPadTimeout, ErrPINPadCancelled, ...). The card is reset when the
// operation ends, as after any PIN.
func (a *App) VerifyPINOnPad(ctx context.Context, pad PINPad, o PINPadOptions) error {
	return onPad(ctx, a, "verify PIN on the PIN pad", pad.PINPad(ctx).Verify,
		func() (pcsc.VerifyPINStructure, error) { return VerifyPINPadStructure(a.p, o) }, pad.VerifyPINDirect)
}

// ChangePINOnPad has the holder type the current PIN and the new one
// twice on the reader's keypad, and the reader send the profile's CHANGE PIN.
func (a *App) ChangePINOnPad(ctx context.Context, pad PINPad, o PINPadOptions) error {
	return onPad(ctx, a, "change PIN on the PIN pad", pad.PINPad(ctx).Modify,
		func() (pcsc.ModifyPINStructure, error) { return ChangePINPadStructure(a.p, o) }, pad.ModifyPINDirect)
}

// onPad is the one shape of a PIN-pad operation: the reader must offer the
// feature, the structure is built from the profile before any APDU, the
// application is selected (and must not be blocked), then the reader
// carries the PIN; the card is reset at the end whatever the outcome.
func onPad[S any](ctx context.Context, a *App, op string, offered bool, build func() (S, error),
	send func(context.Context, S) (apdu.StatusWord, error)) error {
	if !offered {
		return opError(op, ErrNoPINPad)
	}
	s, err := build()
	if err != nil {
		return opError(op, err)
	}
	if err := a.selectApp(ctx); err != nil {
		return opError(op, err)
	}
	if a.blocked {
		return opError(op, ErrApplicationBlocked)
	}
	sw, err := send(ctx, s)
	a.resetAtEnd()
	if err != nil {
		return opError(op, err)
	}
	return opError(op, padOutcome(sw))
}

// padOutcome maps the reader's own status words, then the card's.
func padOutcome(sw apdu.StatusWord) error {
	switch sw {
	case pcsc.SWPINPadTimeout:
		return ErrPINPadTimeout
	case pcsc.SWPINPadCancelled:
		return ErrPINPadCancelled
	case pcsc.SWPINPadMismatch:
		return ErrPINPadMismatch
	case pcsc.SWPINPadLength:
		return ErrPINPadLength
	case pcsc.SWPINPadRejected:
		return ErrPINPadRejected
	}
	return pinOutcome(sw)
}
