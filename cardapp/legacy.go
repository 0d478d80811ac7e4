package cardapp

import (
	"context"
	"errors"

	"ssstation/cardapp/keys"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
)

// Appendix A codes of the standard reader interface (card-reference §7):
// what counter software expects from iReadCardBas and the PIN calls.
const (
	CodeOK             = 0
	CodeWrongCardType  = -1
	CodeNoCard         = -2
	CodeNotPowered     = -3
	CodeNoAnswer       = -4
	CodeReaderConnect  = -11
	CodeNotSupported   = -13
	CodeBadParameter   = -14
	CodeCardIDMalform  = -20
	CodeNotGenuine     = -21
	CodeEntryCancelled = -31
	CodeEntryTimeout   = -32
	CodeWrongPIN       = -51
	CodePINLocked      = -52
	CodeNoPSAM         = -2201
	CodeAlgorithm      = -2202
	CodeNoRKSSSE       = -2203
)

// LegacyCode is the standard interface's negative code for the outcome of
// an operation (card-reference §7, appendix A): 0 for nil, the appendix's
// code where one names the failure, and otherwise minus the card's status
// word read as a decimal number (6A82 gives −27266, 9303 gives −37635). An
// error that carries neither (a bug, a bad file) is −4, "the card does not
// answer", the closest the appendix has to "failed".
//
// The daemon returns it as legacy_code; `sscard info --ireadcardbas`
// prints it and --json carries it as code.
func LegacyCode(err error) int {
	if err == nil {
		return CodeOK
	}
	var pe *PolicyError
	if errors.As(err, &pe) {
		return pe.Code
	}
	// PIN outcomes first: they also wrap their 63Cx / 6983 status word.
	if errors.Is(err, ErrPINBlocked) {
		return CodePINLocked
	}
	var wp *WrongPIN
	if errors.As(err, &wp) {
		// SI_3rdCard maps any 63xx on VERIFY to −51 (card-reference §4).
		return CodeWrongPIN
	}
	switch {
	case errors.Is(err, ErrKeyBlocked):
		// EXTERNAL AUTHENTICATE answered 6983: the key's counter is spent.
		return -int(apdu.SWAuthBlocked)
	case errors.Is(err, ErrCardNotGenuine):
		return CodeNotGenuine
	case errors.Is(err, ErrNoReadKey):
		return CodeNoRKSSSE
	case errors.Is(err, keys.ErrNoProvider):
		return CodeNoPSAM
	case errors.Is(err, ErrUnknownCard):
		return CodeWrongCardType
	case errors.Is(err, ErrCardIDMalformed):
		return CodeCardIDMalform
	case errors.Is(err, pcsc.ErrNoCard), errors.Is(err, pcsc.ErrCardRemoved):
		return CodeNoCard
	case errors.Is(err, pcsc.ErrUnresponsive), errors.Is(err, pcsc.ErrTimeout):
		return CodeNoAnswer
	case errors.Is(err, pcsc.ErrReaderGone), errors.Is(err, pcsc.ErrServiceGone), errors.Is(err, pcsc.ErrNoReaders):
		return CodeReaderConnect
	case errors.Is(err, pcsc.ErrCancelled), errors.Is(err, context.Canceled):
		return CodeEntryCancelled
	case errors.Is(err, context.DeadlineExceeded):
		return CodeEntryTimeout
	}
	var sw apdu.StatusWord
	if errors.As(err, &sw) && sw != apdu.SWOK {
		return -int(sw)
	}
	return CodeNoAnswer
}

// Card states as `sscard info`, verify-card and the daemon report them
// (the `state` field of --json).
const (
	StateActive        = "active"                // personalized, in date, application usable
	StateBlank         = "blank"                 // not personalized: no holder on it
	StateExpired       = "expired"               // past its expiry date
	StateBlockedTemp   = "app_blocked_temporary" // SELECT SSSE answers 6283: loss reported, or not yet released
	StateBlockedPerm   = "app_blocked_permanent" // SELECT SSSE answers 9303
	StateCardBlocked   = "card_blocked"          // every application refused (6A81)
	StateNotIdentified = "unknown"               // no answer tells (no card, not an SSSE card, a failure)
)

// StateOf names the card state an operation's error reveals, or
// StateNotIdentified when it reveals none: a permanently blocked
// application refuses SELECT with 9303, so there is no BasicInfo to carry it.
func StateOf(err error) string {
	switch {
	case err == nil:
		return StateNotIdentified
	case errors.Is(err, ErrApplicationLocked):
		return StateBlockedPerm
	case errors.Is(err, ErrCardBlocked):
		return StateCardBlocked
	case errors.Is(err, ErrApplicationBlocked):
		return StateBlockedTemp
	}
	return StateNotIdentified
}
