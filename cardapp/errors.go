package cardapp

import (
	"errors"
	"fmt"

	"ssstation/cardapp/keys"
	"ssstation/pcsc/apdu"
)

// Typed outcomes of card operations. Each wraps the status word that
// caused it (errors.As to apdu.StatusWord), and none carries a PIN, a key
// or a full ID number in its text.

// WrongPIN is a refused PIN with the tries the card says are left.
type WrongPIN struct{ Retries int }

func (e *WrongPIN) Error() string {
	return fmt.Sprintf("wrong PIN: %d tries left", e.Retries)
}

// Unwrap exposes the 63Cx status word.
func (e *WrongPIN) Unwrap() error { return apdu.StatusWord(0x63C0 | uint16(e.Retries&0x0F)) }

// WrongKey is an external authentication the card refused, with the tries
// left for that key. The station never retries an authentication by itself.
type WrongKey struct {
	KeyIndex byte
	Retries  int
}

func (e *WrongKey) Error() string {
	return fmt.Sprintf("the card refused the authentication with key %02X: %d tries left for that key", e.KeyIndex, e.Retries)
}

func (e *WrongKey) Unwrap() error { return apdu.StatusWord(0x63C0 | uint16(e.Retries&0x0F)) }

// Sentinel outcomes.
var (
	ErrPINBlocked         = errors.New("PIN blocked: too many wrong tries")
	ErrKeyBlocked         = errors.New("authentication key blocked on the card")
	ErrApplicationLocked  = errors.New("social security application permanently locked")
	ErrApplicationBlocked = errors.New("social security application blocked: it must be unblocked first (activation, or a reported loss cleared)")
	ErrCardBlocked        = errors.New("card blocked: every application is refused")
	ErrSecurityStatus     = errors.New("security status not satisfied")
	ErrNotFound           = errors.New("file, record or key not found")
	ErrConditions         = errors.New("conditions of use not satisfied")
	ErrMACRejected        = errors.New("the card rejected the command's MAC")
	ErrNotSupported       = errors.New("not supported by this card's profile")
	ErrUnknownCard        = errors.New("not a known social security card")
	ErrCardNotGenuine     = errors.New("internal authentication failed: the card is not genuine (-21)")
	ErrCardExpired        = errors.New("card expired")
	ErrCardIDMalformed    = errors.New("card identification code malformed")
	// ErrNoReadKey: a record guarded by RKSSSE (EF06 on 3.0 cards) and no key
	// provider to authenticate with; it also matches keys.ErrNoProvider.
	ErrNoReadKey = fmt.Errorf("the card's personal data needs the RKSSSE key: %w", keys.ErrNoProvider)
)

// PIN policy errors, checked before any APDU is sent. Their codes are the
// standard reader interface's (card-reference §7).
var (
	ErrPINIllegalChars = &PolicyError{Code: -41, Msg: "a PIN holds digits only"}
	ErrPINLength       = &PolicyError{Code: -33, Msg: "PIN length out of the card's range"}
	ErrPINMismatch     = &PolicyError{Code: -34, Msg: "the two PIN entries differ"}
	ErrPINInitial      = &PolicyError{Code: -36, Msg: "the new PIN may not be the initial PIN"}
	ErrPINInitialNoUse = &PolicyError{Code: -35, Msg: "the initial PIN cannot be used to transact: the holder must set a PIN first"}
	ErrPINSameAsOld    = &PolicyError{Code: -14, Msg: "the new PIN must differ from the old one"}
	ErrPINMissing      = &PolicyError{Code: -33, Msg: "no PIN given"}
	ErrPINTriesUnknown = &PolicyError{Code: -13, Msg: "this card cannot report its PIN tries without spending one"}
)

// PolicyError is a request refused by the station's own rules, before the card saw it.
type PolicyError struct {
	Code int // the standard interface's error code
	Msg  string
}

func (e *PolicyError) Error() string { return e.Msg }

// UnknownCardError reports a card no profile matches, with its ATR (an ATR
// is not secret: it names the chip, not the holder).
type UnknownCardError struct {
	ATR    []byte
	Reason string
}

func (e *UnknownCardError) Error() string {
	return fmt.Sprintf("not a known social security card (ATR %X): %s", e.ATR, e.Reason)
}

func (e *UnknownCardError) Unwrap() error { return ErrUnknownCard }

// opError wraps err with the operation's name.
func opError(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

// refusal is a card's refusal: what it means for the station, and the
// status word it came as. errors.Is matches both.
type refusal struct {
	kind error
	sw   apdu.StatusWord
}

func (e *refusal) Error() string   { return fmt.Sprintf("%v [SW %04X]", e.kind, uint16(e.sw)) }
func (e *refusal) Unwrap() []error { return []error{e.kind, e.sw} }

func refused(kind error, sw apdu.StatusWord) error { return &refusal{kind: kind, sw: sw} }

// outcome turns a status word into the typed outcome for PIN work.
func pinOutcome(sw apdu.StatusWord) error {
	if n, ok := sw.Retries(); ok {
		if n == 0 {
			// Some cards answer the try that exhausts the counter with 63C0.
			return fmt.Errorf("%w: %w", ErrPINBlocked, &WrongPIN{Retries: 0})
		}
		return &WrongPIN{Retries: n}
	}
	switch sw {
	case apdu.SWOK:
		return nil
	case apdu.SWAuthBlocked:
		return refused(ErrPINBlocked, sw)
	}
	return statusError(sw)
}

// statusError maps the status words every operation shares.
func statusError(sw apdu.StatusWord) error {
	switch sw {
	case apdu.SWOK:
		return nil
	case apdu.SWAppLocked:
		return refused(ErrApplicationLocked, sw)
	case apdu.SWWarningFileInvalidated:
		return refused(ErrApplicationBlocked, sw)
	case apdu.SWFuncNotSupported:
		return refused(ErrCardBlocked, sw)
	case apdu.SWSecurityStatus:
		return refused(ErrSecurityStatus, sw)
	case apdu.SWFileNotFound, apdu.SWRecordNotFound, apdu.SWRefDataNotFound:
		return refused(ErrNotFound, sw)
	case apdu.SWConditionsNotSatisfied:
		return refused(ErrConditions, sw)
	case apdu.SWSMDataIncorrect:
		return refused(ErrMACRejected, sw)
	}
	return sw
}
