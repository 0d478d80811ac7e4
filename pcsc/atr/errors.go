package atr

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by Parse and ParseHex wraps exactly
// one of these (or, for an ATR that is both mis-checksummed and followed by
// extra bytes, both ErrBadTCK and ErrTrailing), so callers can branch with
// errors.Is and still get byte-level detail from errors.As on the typed
// errors below.
var (
	ErrEmpty      = errors.New("atr: empty ATR (is a card present?)")
	ErrInvalidHex = errors.New("atr: invalid hex")
	ErrInvalidTS  = errors.New("atr: invalid TS")
	ErrTruncated  = errors.New("atr: truncated")
	ErrTooLong    = errors.New("atr: too long")
	ErrBadTCK     = errors.New("atr: bad TCK")
	ErrTrailing   = errors.New("atr: trailing bytes")
)

// TSError reports an initial character other than 3B or 3F.
type TSError struct {
	TS byte
}

func (e *TSError) Error() string {
	// A UART that samples an inverse-convention card as if it were direct sees
	// TS as 03 (the bit-reversed, inverted 3F). PC/SC readers decode this for
	// us, so seeing 03 usually means raw serial capture: say so, because a
	// technician otherwise has no way to guess it.
	if e.TS == 0x03 {
		return fmt.Sprintf("atr: invalid TS 0x%02X, want 0x3B (direct) or 0x3F (inverse); 0x03 is an inverse-convention TS read without decoding", e.TS)
	}
	return fmt.Sprintf("atr: invalid TS 0x%02X, want 0x3B (direct) or 0x3F (inverse)", e.TS)
}

func (e *TSError) Unwrap() error { return ErrInvalidTS }

// TruncatedError reports an ATR that ends before a byte its own structure
// promises. Byte positions are 1-based with TS as byte 1, matching how ATRs
// are written down in card documentation.
type TruncatedError struct {
	Missing     string // the byte(s) that should follow: "T0", "TA2", "8 historical bytes", "TCK"
	AnnouncedBy string // the byte whose value promised them: "T0", "TD1"; empty for T0 itself
	Len         int    // number of bytes actually received
	note        string // optional human explanation appended to the message
}

func (e *TruncatedError) Error() string {
	var s string
	if e.AnnouncedBy == "" {
		s = fmt.Sprintf("atr: truncated: %s is missing, the ATR ends at byte %d", e.Missing, e.Len)
	} else {
		s = fmt.Sprintf("atr: truncated: %s announces %s but the ATR ends at byte %d", e.AnnouncedBy, e.Missing, e.Len)
	}
	if e.note != "" {
		s += " (" + e.note + ")"
	}
	return s
}

func (e *TruncatedError) Unwrap() error { return ErrTruncated }

// TooLongError reports input longer than the 33 bytes ISO/IEC 7816-3 allows.
type TooLongError struct {
	Len int
}

func (e *TooLongError) Error() string {
	return fmt.Sprintf("atr: too long: %d bytes, ISO/IEC 7816-3 allows at most %d", e.Len, MaxLen)
}

func (e *TooLongError) Unwrap() error { return ErrTooLong }

// TCKError reports a check byte that does not make T0..TCK XOR to zero.
type TCKError struct {
	Expected byte // the TCK the other bytes call for (XOR of T0 .. last historical byte)
	Got      byte // the TCK actually received
}

func (e *TCKError) Error() string {
	return fmt.Sprintf("atr: bad TCK: expected 0x%02X, got 0x%02X", e.Expected, e.Got)
}

func (e *TCKError) Unwrap() error { return ErrBadTCK }

// TrailingError reports bytes after the point where the ATR's own structure
// says it ends.
type TrailingError struct {
	At    int      // 1-based position of the first extra byte
	Extra HexBytes // the extra bytes
	note  string
}

func (e *TrailingError) Error() string {
	s := fmt.Sprintf("atr: %d extra byte(s) after the end of the ATR, starting at byte %d: %s", len(e.Extra), e.At, e.Extra)
	if e.note != "" {
		s += " (" + e.note + ")"
	}
	return s
}

func (e *TrailingError) Unwrap() error { return ErrTrailing }
