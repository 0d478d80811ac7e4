package pcsc

import (
	"errors"
	"fmt"

	"github.com/ebfe/scard"
)

// Kind classifies a PC/SC failure by what the caller has to do next.
type Kind int

const (
	KindOther        Kind = iota
	KindCardRemoved       // the card left the reader: wait for a card, and treat any card as a new one
	KindCardReset         // someone reset the card: reconnect, then select the application again
	KindReaderGone        // the reader vanished: drop the handle, wait for the reader to come back
	KindServiceGone       // pcscd stopped or restarted: establish a new context
	KindNoReaders         // the service runs but has no readers
	KindNoCard            // no card in the reader
	KindSharing           // another process holds the card exclusively
	KindCancelled         // SCardCancel, or our own context ended
	KindTimeout           // a wait timed out
	KindUnresponsive      // the card does not answer its reset
	KindProtocol          // the card and reader share no protocol
	KindBusy              // another program held the card (a transaction) longer than the caller would wait
)

var kindNames = map[Kind]string{
	KindOther:        "pc/sc error",
	KindCardRemoved:  "card removed",
	KindCardReset:    "card reset",
	KindReaderGone:   "reader gone",
	KindServiceGone:  "smart card service unavailable",
	KindNoReaders:    "no readers",
	KindNoCard:       "no card in the reader",
	KindSharing:      "card in use by another program",
	KindCancelled:    "cancelled",
	KindTimeout:      "timed out",
	KindUnresponsive: "card does not respond",
	KindProtocol:     "protocol mismatch",
	KindBusy:         "reader busy: another program holds the card",
}

func (k Kind) String() string { return kindNames[k] }

// Sentinels for errors.Is: errors.Is(err, pcsc.ErrCardRemoved).
var (
	ErrCardRemoved  = &Error{Kind: KindCardRemoved}
	ErrCardReset    = &Error{Kind: KindCardReset}
	ErrReaderGone   = &Error{Kind: KindReaderGone}
	ErrServiceGone  = &Error{Kind: KindServiceGone}
	ErrNoReaders    = &Error{Kind: KindNoReaders}
	ErrNoCard       = &Error{Kind: KindNoCard}
	ErrSharing      = &Error{Kind: KindSharing}
	ErrCancelled    = &Error{Kind: KindCancelled}
	ErrTimeout      = &Error{Kind: KindTimeout}
	ErrUnresponsive = &Error{Kind: KindUnresponsive}
	ErrBusy         = &Error{Kind: KindBusy}
)

// Error is a classified PC/SC failure, wrapped with the operation and reader.
type Error struct {
	Op     string // "connect", "transmit", "begin transaction", ...
	Reader string
	Kind   Kind
	Code   scard.Error // the raw PC/SC code, 0 when the error did not come from PC/SC
	Err    error       // an underlying non-PC/SC error (context cancellation)
}

func (e *Error) Error() string {
	s := e.Kind.String()
	if e.Op != "" {
		s = e.Op + ": " + s
	}
	if e.Reader != "" {
		s = fmt.Sprintf("%s (reader %q)", s, e.Reader)
	}
	if e.Code != 0 {
		s = fmt.Sprintf("%s [%s, 0x%08X]", s, e.Code.Error(), uint32(e.Code))
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is matches the sentinels by kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Op == "" && t.Code == 0 && t.Err == nil && t.Kind == e.Kind
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the classification of err, KindOther when it is not a PC/SC error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}

// classify maps a raw PC/SC code onto what the caller must do about it.
func classify(code scard.Error) Kind {
	switch code {
	case scard.ErrRemovedCard, scard.ErrNoSmartcard:
		// pcsc-lite answers SCARD_E_NO_SMARTCARD on a handle whose card left;
		// for a connected handle it means the same as removed.
		return KindCardRemoved
	case scard.ErrResetCard, scard.ErrUnpoweredCard:
		// An unpowered card (pcscd powers a card down after a while
		// unused) needs what a reset one does: reconnect, select again.
		return KindCardReset
	case scard.ErrReaderUnavailable, scard.ErrUnknownReader, scard.ErrReaderUnsupported:
		return KindReaderGone
	case scard.ErrNoService, scard.ErrServiceStopped, scard.ErrInvalidHandle, scard.ErrNoMemory, scard.ErrCommError:
		// A handle becomes invalid when pcscd restarts, and libpcsclite
		// reports SCARD_F_COMM_ERROR when its socket to pcscd breaks in
		// the middle of a call: only a new context helps.
		return KindServiceGone
	case scard.ErrNoReadersAvailable:
		return KindNoReaders
	case scard.ErrSharingViolation:
		return KindSharing
	case scard.ErrCancelled:
		return KindCancelled
	case scard.ErrTimeout:
		return KindTimeout
	case scard.ErrUnresponsiveCard:
		return KindUnresponsive
	case scard.ErrProtoMismatch:
		return KindProtocol
	}
	return KindOther
}

// wrapConnect is wrap for a connection attempt: there "no card" or
// "removed" means the reader is empty (or the card left before the
// connection was made), which is ErrNoCard, not the removal of a card this
// connection was using.
func wrapConnect(op, reader string, err error) error {
	err = wrap(op, reader, err)
	if e, ok := err.(*Error); ok && e.Kind == KindCardRemoved {
		e.Kind = KindNoCard
	}
	return err
}

// wrap turns a raw error from ebfe/scard into *Error; other errors pass through wrapped with op.
func wrap(op, reader string, err error) error {
	if err == nil {
		return nil
	}
	var code scard.Error
	if errors.As(err, &code) {
		return &Error{Op: op, Reader: reader, Kind: classify(code), Code: code}
	}
	return fmt.Errorf("%s: %w", op, err)
}
