// Package atr parses ISO/IEC 7816-3 Answer-To-Reset strings as delivered by
// PC/SC readers.
//
// PC/SC readers have already resolved the transmission convention, so the
// bytes seen here are logical values even for inverse-convention (TS=3F)
// cards; the parser therefore only records the convention and never
// bit-reverses anything.
//
// The parser is strict about structure (a truncated or over-long ATR is an
// error, because it usually means a bad contact or a reader bug worth
// reporting) but lenient about values: RFU codes and out-of-range parameters
// are recorded and flagged in String rather than rejected, since real cards
// ship with them and a technician still needs to see the rest of the ATR.
package atr

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// MaxLen is the longest ATR ISO/IEC 7816-3 allows: TS plus 32 further bytes.
const MaxLen = 33

// Convention is the character-level coding announced by TS.
type Convention int

const (
	// Zero is deliberately not a valid convention so an unparsed ATR value
	// does not masquerade as a direct-convention one.
	_                 Convention = iota
	ConventionDirect             // TS = 3B
	ConventionInverse            // TS = 3F
)

func (c Convention) String() string {
	switch c {
	case ConventionDirect:
		return "direct"
	case ConventionInverse:
		return "inverse"
	}
	return fmt.Sprintf("Convention(%d)", int(c))
}

// MarshalText makes the convention appear as "direct"/"inverse" in JSON.
func (c Convention) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// Protocol is a transmission protocol type T (the low nibble of a TDi byte).
// It is an int rather than a byte so that []Protocol encodes to JSON as an
// array of numbers; encoding/json would turn a slice of a byte-kinded type
// into base64.
type Protocol int

func (p Protocol) String() string { return fmt.Sprintf("T=%d", int(p)) }

// InterfaceGroup holds interface bytes TAi, TBi, TCi and TDi for one i.
// Group 1 is announced by T0, group i+1 by TDi. The Has* flags exist because
// 00 is a meaningful value for every interface byte, so absence cannot be
// encoded in the value itself.
type InterfaceGroup struct {
	Index                      int // i, starting at 1
	HasTA, HasTB, HasTC, HasTD bool
	TA, TB, TC, TD             byte
}

// MarshalJSON emits only the bytes that are present, so JSON consumers see
// {"index":1,"ta":19} instead of parallel flag/value fields.
func (g InterfaceGroup) MarshalJSON() ([]byte, error) {
	type out struct {
		Index int   `json:"index"`
		TA    *byte `json:"ta,omitempty"`
		TB    *byte `json:"tb,omitempty"`
		TC    *byte `json:"tc,omitempty"`
		TD    *byte `json:"td,omitempty"`
	}
	o := out{Index: g.Index}
	if g.HasTA {
		o.TA = &g.TA
	}
	if g.HasTB {
		o.TB = &g.TB
	}
	if g.HasTC {
		o.TC = &g.TC
	}
	if g.HasTD {
		o.TD = &g.TD
	}
	return json.Marshal(o)
}

// SpecificMode is the decoded TA2 byte. Its presence means the card starts
// in specific mode and PPS must not be attempted unless CanChange.
type SpecificMode struct {
	Protocol   Protocol `json:"protocol"`    // the only protocol the card will run
	CanChange  bool     `json:"can_change"`  // bit 8 = 0: a warm reset can switch to negotiable mode
	ImplicitFD bool     `json:"implicit_fd"` // bit 5 = 1: Fi/Di are implicit, TA1 does not apply
}

// T1Params are the T=1 block-protocol parameters, with ISO defaults filled
// in for bytes the card omits.
type T1Params struct {
	IFSC int  `json:"ifsc"` // first TAi (i>2) for T=1; default 32
	BWI  int  `json:"bwi"`  // high nibble of first TBi (i>2) for T=1; default 4
	CWI  int  `json:"cwi"`  // low nibble of the same byte; default 13
	CRC  bool `json:"crc"`  // bit 1 of first TCi (i>2) for T=1: CRC rather than LRC
}

// ATR is a parsed Answer-To-Reset.
type ATR struct {
	Raw        HexBytes         `json:"raw"`
	TS         byte             `json:"ts"`
	Convention Convention       `json:"convention"`
	T0         byte             `json:"t0"`
	Interface  []InterfaceGroup `json:"interface"`
	// Protocols lists each T offered by a TDi, in order of first appearance,
	// without duplicates. T=15 appears when the card sends global interface
	// bytes; it is not a transmission protocol but does make TCK mandatory.
	Protocols  []Protocol `json:"protocols"`
	Historical HexBytes   `json:"historical"`
	TCK        *byte      `json:"tck,omitempty"`
	// TCKValid reports whether the ATR obeys the check-byte rule: TCK is
	// absent because only T=0 is offered, or it is present and T0..TCK XOR
	// to zero. It is false only on the ATR returned alongside ErrBadTCK.
	TCKValid bool `json:"tck_valid"`

	// Fi, Di and FMaxMHz come from TA1, or are the ISO defaults Fd=372,
	// Dd=1, f(max)=5 MHz when TA1 is absent. A value of 0 means TA1 codes an
	// RFU index.
	Fi      int     `json:"fi"`
	Di      int     `json:"di"`
	FMaxMHz float64 `json:"fmax_mhz"`
	// N is the extra guard time integer from TC1 (0 when absent). 255 is
	// special: minimum guard time (12 etu for T=0, 11 etu for T=1).
	N            int           `json:"n"`
	SpecificMode *SpecificMode `json:"specific_mode,omitempty"`
	// WI is the T=0 waiting time integer from TC2 (default 10).
	WI int `json:"wi"`
	// T1 is non-nil exactly when T=1 is offered.
	T1 *T1Params `json:"t1,omitempty"`
}

// Conversion tables from ISO/IEC 7816-3:2006 tables 7 and 8; 0 marks RFU.
var (
	fiTable   = [16]int{372, 372, 558, 744, 1116, 1488, 1860, 0, 0, 512, 768, 1024, 1536, 2048, 0, 0}
	fMaxTable = [16]float64{4, 5, 6, 8, 12, 16, 20, 0, 0, 5, 7.5, 10, 15, 20, 0, 0}
	diTable   = [16]int{0, 1, 2, 4, 8, 16, 32, 64, 12, 20, 0, 0, 0, 0, 0, 0}
)

// Defaults that apply when the corresponding interface byte is absent.
const (
	defaultFi   = 372
	defaultDi   = 1
	defaultFMax = 5
	defaultWI   = 10
	defaultIFSC = 32
	defaultBWI  = 4
	defaultCWI  = 13
)

// ParseHex parses an ATR written as hex, in any case, optionally split by
// spaces, colons or other whitespace ("3B 68 00", "3b:68:00", "3B6800").
func ParseHex(s string) (*ATR, error) {
	b, err := decodeHex(s)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Parse decodes an ATR. It never retains b.
//
// When the ATR is structurally complete but fails the TCK check or is
// followed by extra bytes, Parse returns the decoded ATR together with the
// error (wrapping ErrBadTCK and/or ErrTrailing), because a technician
// diagnosing a card still wants to see what it sent. In that case Raw holds
// only the bytes the structure accounts for. For every other error the ATR
// is nil.
func Parse(b []byte) (*ATR, error) {
	if len(b) == 0 {
		return nil, ErrEmpty
	}
	if len(b) > MaxLen {
		return nil, &TooLongError{Len: len(b)}
	}

	a := &ATR{TS: b[0], Interface: []InterfaceGroup{}}
	switch b[0] {
	case 0x3B:
		a.Convention = ConventionDirect
	case 0x3F:
		a.Convention = ConventionInverse
	default:
		return nil, &TSError{TS: b[0]}
	}
	if len(b) < 2 {
		return nil, &TruncatedError{Missing: "T0", Len: len(b)}
	}
	a.T0 = b[1]
	pos := 2

	// Walk the TD chain. Every iteration either consumes at least one byte
	// or stops, and len(b) <= MaxLen, so this terminates on any input.
	y := a.T0 >> 4
	announcer := "T0"
	tckBy := "" // the first TDi that offers a T other than 0, for error text
	var tckProto Protocol
	for i := 1; y != 0; i++ {
		g := InterfaceGroup{Index: i}
		for bit, name := range [4]string{"TA", "TB", "TC", "TD"} {
			if y&(1<<bit) == 0 {
				continue
			}
			if pos >= len(b) {
				return nil, &TruncatedError{Missing: fmt.Sprintf("%s%d", name, i), AnnouncedBy: announcer, Len: len(b)}
			}
			v := b[pos]
			pos++
			switch bit {
			case 0:
				g.HasTA, g.TA = true, v
			case 1:
				g.HasTB, g.TB = true, v
			case 2:
				g.HasTC, g.TC = true, v
			case 3:
				g.HasTD, g.TD = true, v
			}
		}
		a.Interface = append(a.Interface, g)
		if !g.HasTD {
			break
		}
		t := Protocol(g.TD & 0x0F)
		if !slices.Contains(a.Protocols, t) {
			a.Protocols = append(a.Protocols, t)
		}
		if t != 0 && tckBy == "" {
			tckBy, tckProto = fmt.Sprintf("TD%d", i), t
		}
		y = g.TD >> 4
		announcer = fmt.Sprintf("TD%d", i)
	}
	if len(a.Protocols) == 0 {
		// Without TD1 the card offers only T=0 (ISO/IEC 7816-3 §8.2.3).
		a.Protocols = []Protocol{0}
	}

	k := int(a.T0 & 0x0F)
	if have := len(b) - pos; have < k {
		return nil, &TruncatedError{
			Missing:     fmt.Sprintf("%d historical bytes", k),
			AnnouncedBy: "T0",
			Len:         len(b),
			note:        fmt.Sprintf("only %d present", have),
		}
	}
	a.Historical = slices.Clone(b[pos : pos+k])
	if a.Historical == nil {
		a.Historical = HexBytes{}
	}
	pos += k

	var errs []error
	if tckBy != "" {
		if pos >= len(b) {
			return nil, &TruncatedError{
				Missing:     "TCK",
				AnnouncedBy: tckBy,
				Len:         len(b),
				note:        fmt.Sprintf("offering %s makes the check byte mandatory", tckProto),
			}
		}
		tck := b[pos]
		a.TCK = &tck
		expected := xor(b[1:pos])
		a.TCKValid = expected == tck
		if !a.TCKValid {
			errs = append(errs, &TCKError{Expected: expected, Got: tck})
		}
		pos++
	} else {
		a.TCKValid = true
	}

	if pos < len(b) {
		te := &TrailingError{At: pos + 1, Extra: slices.Clone(b[pos:])}
		// Some T=0-only cards send a TCK anyway. Recognising that saves the
		// technician from suspecting the reader.
		if tckBy == "" && len(te.Extra) == 1 && xor(b[1:]) == 0 {
			te.note = "it is a valid TCK, but a T=0-only ATR must not send one"
		}
		errs = append(errs, te)
	}

	a.Raw = slices.Clone(b[:pos])
	a.derive()

	switch len(errs) {
	case 0:
		return a, nil
	case 1:
		return a, errs[0]
	default:
		return a, errors.Join(errs...)
	}
}

func xor(b []byte) byte {
	var x byte
	for _, c := range b {
		x ^= c
	}
	return x
}

// derive fills the convenience fields from the interface groups so callers
// (reader drivers, the CLI) do not each re-implement ISO's defaulting rules.
func (a *ATR) derive() {
	a.Fi, a.Di, a.FMaxMHz = defaultFi, defaultDi, defaultFMax
	a.WI = defaultWI
	if g := a.group(1); g != nil {
		if g.HasTA {
			a.Fi = fiTable[g.TA>>4]
			a.FMaxMHz = fMaxTable[g.TA>>4]
			a.Di = diTable[g.TA&0x0F]
		}
		if g.HasTC {
			a.N = int(g.TC)
		}
	}
	if g := a.group(2); g != nil {
		if g.HasTA {
			a.SpecificMode = &SpecificMode{
				Protocol:   Protocol(g.TA & 0x0F),
				CanChange:  g.TA&0x80 == 0,
				ImplicitFD: g.TA&0x10 != 0,
			}
		}
		if g.HasTC {
			a.WI = int(g.TC)
		}
	}
	if slices.Contains(a.Protocols, 1) {
		p := &T1Params{IFSC: defaultIFSC, BWI: defaultBWI, CWI: defaultCWI}
		if v, _, ok := a.firstSpecific(1, 0); ok {
			p.IFSC = int(v)
		}
		if v, _, ok := a.firstSpecific(1, 1); ok {
			p.BWI, p.CWI = int(v>>4), int(v&0x0F)
		}
		if v, _, ok := a.firstSpecific(1, 2); ok {
			p.CRC = v&0x01 != 0
		}
		a.T1 = p
	}
}

// group returns interface group i, or nil if the ATR has no such group.
func (a *ATR) group(i int) *InterfaceGroup {
	if i < 1 || i > len(a.Interface) {
		return nil
	}
	return &a.Interface[i-1]
}

// groupProtocol reports which protocol's specific bytes group i carries.
// Groups 1 and 2 are global (ok=false); for i>2 it is the T in TD(i-1).
func (a *ATR) groupProtocol(i int) (Protocol, bool) {
	if i <= 2 {
		return 0, false
	}
	prev := a.group(i - 1)
	if prev == nil || !prev.HasTD {
		return 0, false
	}
	return Protocol(prev.TD & 0x0F), true
}

// firstSpecific finds the first TA (which=0), TB (1) or TC (2) with i>2
// specific to protocol t. ISO defines only the first such byte per protocol;
// later ones carry no standard meaning, so callers must not take "any".
func (a *ATR) firstSpecific(t Protocol, which int) (v byte, index int, ok bool) {
	for i := 3; i <= len(a.Interface); i++ {
		p, specific := a.groupProtocol(i)
		if !specific || p != t {
			continue
		}
		g := a.group(i)
		switch which {
		case 0:
			if g.HasTA {
				return g.TA, i, true
			}
		case 1:
			if g.HasTB {
				return g.TB, i, true
			}
		case 2:
			if g.HasTC {
				return g.TC, i, true
			}
		}
	}
	return 0, 0, false
}

// Match reports whether atr equals pattern on every bit set in mask, the
// ATR-matching convention of PC/SC reader and card databases. All three
// slices must have the same length; otherwise it reports false, since a
// length mismatch is itself a non-match (and a short mask must not silently
// match everything).
func Match(atr, pattern, mask []byte) bool {
	if len(atr) != len(pattern) || len(atr) != len(mask) {
		return false
	}
	for i := range atr {
		if atr[i]&mask[i] != pattern[i]&mask[i] {
			return false
		}
	}
	return true
}
