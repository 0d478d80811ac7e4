package pcsc

import (
	"context"
	"time"

	"github.com/ebfe/scard"
)

// cardHandle is the part of an SCARDHANDLE (ebfe/scard's *Card) the
// package uses. It is the seam where tests put a fake handle that answers
// with the PC/SC codes pcscd cannot be made to produce on demand
// (SCARD_F_COMM_ERROR, SCARD_W_UNPOWERED_CARD, a failed
// SCardEndTransaction).
type cardHandle interface {
	Transmit(cmd []byte) ([]byte, error)
	Status() (*scard.CardStatus, error)
	BeginTransaction() error
	EndTransaction(d scard.Disposition) error
	Reconnect(mode scard.ShareMode, proto scard.Protocol, d scard.Disposition) error
	Disconnect(d scard.Disposition) error
	Control(ioctl uint32, in []byte) ([]byte, error)
	ActiveProtocol() scard.Protocol
}

// dialer makes a connection: a handle and the function that frees what
// the handle needs once it is disconnected.
type dialer func(reader string, share ShareMode, protos Protocol) (h cardHandle, release func(), err error)

// dialOwnContext connects through a resource-manager context of the
// card's own. pcscd makes SCardConnect wait, with no limit, while another
// handle holds a transaction on the reader, and libpcsclite holds the
// context's lock all that time: a connection abandoned on its own context
// leaves the caller's context usable (and releasable) meanwhile.
func dialOwnContext(reader string, share ShareMode, protos Protocol) (cardHandle, func(), error) {
	sc, err := scard.EstablishContext()
	if err != nil {
		return nil, nil, err
	}
	release := func() { _ = sc.Release() }
	h, err := sc.Connect(reader, share, protos)
	if err != nil {
		release()
		return nil, nil, err
	}
	return h, release, nil
}

// DefaultBusyWait is how long Connect, Transaction and a resetting Close
// wait for another program's transaction on the same card to end when the
// caller's context sets no earlier deadline.
const DefaultBusyWait = 10 * time.Second

// abandonGrace bounds how long an abandoned PC/SC call is waited for once
// it has been told to give up (libpcsclite polls a held lock every 100 ms).
const abandonGrace = 2 * time.Second

// bounded runs call, a PC/SC call that may wait on another program, and
// returns its error. When ctx ends or wait passes first, it runs abandon
// (which makes call return, e.g. by disconnecting the handle call waits
// on), waits for call at most abandonGrace, and reports gaveUp with the
// reason (ctx's error, or nil for the bound).
func bounded(ctx context.Context, wait time.Duration, call func() error, abandon func()) (err error, gaveUp bool, why error) {
	done := make(chan error, 1)
	go func() { done <- call() }()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case err := <-done:
		return err, false, nil
	case <-ctx.Done():
		why = ctx.Err()
	case <-timer.C:
	}
	abandon()
	select {
	case <-done:
	case <-time.After(abandonGrace):
	}
	return nil, true, why
}
