package pcsc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ebfe/scard"

	"ssstation/pcsc/apdu"
	"ssstation/pcsc/atr"
)

// ShareMode, Protocol and Disposition are PC/SC's, restated so that no
// caller needs to import ebfe/scard.
type ShareMode = scard.ShareMode
type Protocol = scard.Protocol
type Disposition = scard.Disposition

const (
	ShareShared    = scard.ShareShared
	ShareExclusive = scard.ShareExclusive
	ShareDirect    = scard.ShareDirect

	ProtocolT0  = scard.ProtocolT0
	ProtocolT1  = scard.ProtocolT1
	ProtocolAny = scard.ProtocolAny

	LeaveCard   = scard.LeaveCard
	ResetCard   = scard.ResetCard
	UnpowerCard = scard.UnpowerCard
)

// ProtocolName prints T=0 or T=1.
func ProtocolName(p Protocol) string {
	switch p {
	case ProtocolT0:
		return "T=0"
	case ProtocolT1:
		return "T=1"
	}
	return fmt.Sprintf("protocol %d", uint32(p))
}

// ConnectOptions are explicit on purpose: the share mode and what happens
// to the card when the station lets go are decisions, not defaults.
type ConnectOptions struct {
	Share     ShareMode
	Protocols Protocol
	// OnClose is the disposition when the connection is closed.
	OnClose Disposition
	// Tracer receives every APDU exchanged (sensitive data redacted).
	Tracer Tracer
	// MaxAPDUData is the largest command data field the reader accepts in
	// one APDU. 0 means "ask the reader" (GET_TLV_PROPERTIES); a reader that
	// cannot say gets short APDUs and command chaining. Extended lengths
	// are used only when the card announces them too (its ATR's card
	// capabilities), and never on T=0.
	MaxAPDUData int
	// BusyWait bounds how long Connect, Transaction and a resetting Close
	// wait while another program holds a transaction on the card; 0 means
	// DefaultBusyWait. The context's end stops the wait sooner.
	BusyWait time.Duration
}

// Card is a connection to the card in one reader. It is used by one
// goroutine at a time (the reader's worker).
type Card struct {
	reader string
	opts   ConnectOptions
	dial   dialer

	h         cardHandle
	release   func() // frees the handle's own context once it is disconnected
	atr       []byte
	proto     Protocol
	readerMax int  // the reader's largest data field (255: short only)
	link      link // what the transmit loop may send on this connection

	mu         sync.Mutex
	resetAtEnd bool
	closed     bool
	lost       error // the handle was given up: every later call returns this
}

// Connect connects to the card in reader. It waits while another program
// holds a transaction on the card (pcscd makes a connection wait for it),
// but no longer than ctx and opts.BusyWait allow: then it fails with
// KindBusy.
func (c *Context) Connect(ctx context.Context, reader string, opts ConnectOptions) (*Card, error) {
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: "connect", Reader: reader, Kind: KindCancelled, Err: err}
	}
	if opts.Share == 0 {
		return nil, fmt.Errorf("connect %q: a share mode is required", reader)
	}
	if opts.Protocols == 0 {
		opts.Protocols = ProtocolAny
	}
	if opts.BusyWait <= 0 {
		opts.BusyWait = DefaultBusyWait
	}
	card := &Card{reader: reader, opts: opts, dial: c.dial}
	if card.dial == nil {
		card.dial = dialOwnContext
	}
	if err := card.open(ctx); err != nil {
		return nil, err
	}
	return card, nil
}

// open makes (or remakes) the connection.
func (c *Card) open(ctx context.Context) error {
	type result struct {
		h       cardHandle
		release func()
		err     error
	}
	ch := make(chan result, 1)
	go func() {
		h, rel, err := c.dial(c.reader, c.opts.Share, c.opts.Protocols)
		ch <- result{h, rel, err}
	}()
	timer := time.NewTimer(c.opts.BusyWait)
	defer timer.Stop()
	var r result
	var why error
	select {
	case r = <-ch:
	case <-ctx.Done():
		why = ctx.Err()
	case <-timer.C:
		why = fmt.Errorf("gave up after %s", c.opts.BusyWait)
	}
	if why != nil {
		// SCardCancel does not reach SCardConnect: let the connection
		// finish in the background and let go of it then.
		go func() {
			if r := <-ch; r.err == nil {
				_ = r.h.Disconnect(LeaveCard)
				r.release()
			}
		}()
		return &Error{Op: "connect", Reader: c.reader, Kind: KindBusy, Err: why}
	}
	if r.err != nil {
		return wrapConnect("connect", c.reader, r.err)
	}
	st, err := r.h.Status()
	if err != nil {
		_ = r.h.Disconnect(LeaveCard)
		r.release()
		return wrapConnect("card status", c.reader, err)
	}
	c.h, c.release = r.h, r.release
	c.proto = r.h.ActiveProtocol()
	c.atr = append([]byte(nil), st.Atr...)
	c.readerMax = c.opts.MaxAPDUData
	if c.readerMax == 0 {
		c.readerMax = readerMaxAPDUData(r.h)
	}
	c.setLink()
	return nil
}

// setLink decides the APDU encoding: extended lengths only when the reader
// and the card both take them, and never on T=0 (whose TPDUs have a
// one-byte length).
func (c *Card) setLink() {
	c.link = link{t0: c.proto == ProtocolT0, maxData: apdu.MaxShortData}
	if !c.link.t0 && c.readerMax > apdu.MaxShortData && cardTakesExtended(c.atr) {
		c.link.maxData = c.readerMax
	}
}

func cardTakesExtended(raw []byte) bool {
	a, _ := atr.Parse(raw) // a bad TCK still leaves the historical bytes readable
	return a != nil && a.ExtendedLength()
}

// Reader is the name of the reader this card sits in.
func (c *Card) Reader() string { return c.reader }

// MaxAPDUData is the largest command data field one APDU carries on this
// connection (setLink): 255 unless the reader and the card both take
// extended lengths. Longer data is chained. The apdu verb uses it to refuse
// what it cannot send as typed.
func (c *Card) MaxAPDUData() int { return c.link.maxData }

// ATR is the card's answer to reset as the reader reported it.
func (c *Card) ATR() []byte { return append([]byte(nil), c.atr...) }

// Protocol is the protocol negotiated for this connection.
func (c *Card) Protocol() Protocol { return c.proto }

// ResetAtEnd asks that the current transaction (or the connection, outside
// one) end with a card reset, so that a verified PIN (or a PIN just
// changed) does not outlive the operation that used it.
func (c *Card) ResetAtEnd() {
	c.mu.Lock()
	c.resetAtEnd = true
	c.mu.Unlock()
}

func (c *Card) takeResetAtEnd() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.resetAtEnd
	c.resetAtEnd = false
	return r
}

// usable returns the reason the connection cannot be used any more.
func (c *Card) usable(op string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("%s (reader %q): the connection is closed", op, c.reader)
	}
	return c.lost
}

// lose gives up the handle for good: it is disconnected already, or will
// be by the time a caller could use it again.
func (c *Card) lose(err error) {
	c.mu.Lock()
	if c.lost == nil {
		c.lost = err
	}
	c.mu.Unlock()
}

// Transaction runs body inside one PC/SC transaction. It is meant for one
// operation at a time (read info, verify a PIN): never hold it while a
// person types, since other processes wait on it and some platforms reset
// an idle card after a few seconds.
//
// Waiting for another program's transaction is bounded by ctx and
// BusyWait (KindBusy). SCardCancel does not interrupt
// SCardBeginTransaction; libpcsclite polls the reader's lock every 100 ms
// and stops when its handle is gone, so the wait is ended by disconnecting
// the handle, which leaves this Card unusable: close it and connect again.
func (c *Card) Transaction(ctx context.Context, body func(ctx context.Context) error) (err error) {
	if err := ctx.Err(); err != nil {
		return &Error{Op: "begin transaction", Reader: c.reader, Kind: KindCancelled, Err: err}
	}
	if err := c.usable("begin transaction"); err != nil {
		return err
	}
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.end(&err)
	return body(ctx)
}

func (c *Card) begin(ctx context.Context) error {
	err := c.beginOnce(ctx)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindCardReset {
		return err
	}
	// The card was reset (or powered down) since this handle last used
	// it (by us, after a verified PIN, or by someone else): a transaction
	// starts a new operation, which selects from scratch, so reconnecting
	// is safe. An unpowered card is powered up by a reset.
	init := LeaveCard
	if e.Code == scard.ErrUnpoweredCard {
		init = ResetCard
	}
	if rerr := c.Reconnect(init); rerr != nil {
		return rerr
	}
	return c.beginOnce(ctx)
}

func (c *Card) beginOnce(ctx context.Context) error {
	h := c.h
	err, gaveUp, why := bounded(ctx, c.opts.BusyWait, h.BeginTransaction, func() { _ = h.Disconnect(LeaveCard) })
	if gaveUp {
		if why == nil {
			why = fmt.Errorf("gave up after %s", c.opts.BusyWait)
		}
		e := &Error{Op: "begin transaction", Reader: c.reader, Kind: KindBusy, Err: why}
		c.lose(e)
		return e
	}
	return wrap("begin transaction", c.reader, err)
}

// end ends the transaction. A reset asked for is never lost: when
// SCardEndTransaction fails (pcsc-lite then keeps the reader locked to
// this handle), the handle is disconnected with the disposition asked for
// and the connection made again, unless the card was removed: then the
// Card reports the removal to every later call.
func (c *Card) end(errp *error) {
	disp := LeaveCard
	if c.takeResetAtEnd() {
		disp = ResetCard
	}
	e := c.h.EndTransaction(disp)
	if e == nil {
		return
	}
	werr := wrap("end transaction", c.reader, e)
	k := KindOf(werr)
	if k == KindCardRemoved {
		disp = LeaveCard // no card to reset
	}
	_ = c.h.Disconnect(disp)
	if c.release != nil {
		c.release()
	}
	c.h, c.release = nil, nil
	if k == KindCardRemoved {
		// Never connect again behind the caller's back after a removal:
		// the card now in the reader may be another one.
		c.lose(werr)
	} else if oerr := c.open(context.Background()); oerr != nil {
		c.lose(oerr)
	}
	if *errp != nil {
		return
	}
	// The body succeeded. A card pulled or reset right after it lost its
	// security state with its power, which is all a reset at the end is
	// for; anything else (the service gone) is reported.
	if k != KindCardRemoved && k != KindCardReset {
		*errp = werr
	}
}

// Reconnect re-establishes the connection after a reset or to reset the
// card (init = ResetCard). Everything selected or verified is gone after
// it: the caller selects again.
func (c *Card) Reconnect(init Disposition) error {
	if err := c.usable("reconnect"); err != nil {
		return err
	}
	if err := c.h.Reconnect(c.opts.Share, c.opts.Protocols, init); err != nil {
		return wrap("reconnect", c.reader, err)
	}
	c.proto = c.h.ActiveProtocol()
	if st, err := c.h.Status(); err == nil {
		c.atr = append([]byte(nil), st.Atr...)
	}
	c.setLink()
	return nil
}

// Close disconnects with the disposition given at connect, or a reset when
// ResetAtEnd was asked outside a transaction. pcscd makes a resetting
// disconnect wait for another program's transaction: Close waits at most
// BusyWait, and the reset then happens in the background when that
// program lets go (the error says so).
func (c *Card) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	h, release := c.h, c.release
	if h == nil {
		return nil // lost and never remade: nothing left to dispose of
	}
	disp := c.opts.OnClose
	if c.takeResetAtEnd() {
		disp = ResetCard
	}
	done := make(chan error, 1)
	go func() {
		err := h.Disconnect(disp)
		if release != nil {
			release()
		}
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(c.opts.BusyWait):
		return &Error{Op: "disconnect", Reader: c.reader, Kind: KindBusy,
			Err: fmt.Errorf("gave up after %s; the card is disposed of when the other program lets go", c.opts.BusyWait)}
	}
	if err != nil && KindOf(wrap("", "", err)) == KindCardRemoved {
		return nil // the card is gone already: nothing left to dispose of
	}
	c.mu.Lock()
	lost := c.lost
	c.mu.Unlock()
	if lost != nil {
		return nil // the handle was given up already; its disconnect has no news
	}
	return wrap("disconnect", c.reader, err)
}

// Control sends a reader control code (SCardControl), e.g. for PIN pads.
func (c *Card) Control(code uint32, in []byte) ([]byte, error) {
	if err := c.usable("control"); err != nil {
		return nil, err
	}
	out, err := c.h.Control(code, in)
	return out, wrap("control", c.reader, err)
}

// exchange is one raw command/response pair on the wire, traced. It does
// not look at ctx: the loop decides when a command may still be abandoned.
func (c *Card) exchange(ctx context.Context, cmd apdu.Command, raw []byte) ([]byte, error) {
	var start time.Time
	if c.opts.Tracer != nil {
		start = time.Now()
	}
	resp, err := c.h.Transmit(raw)
	if err != nil || len(resp) < 2 {
		err = c.diagnose("transmit "+cmd.Label(), err)
		resp = nil
	}
	if c.opts.Tracer != nil {
		c.opts.Tracer(newTraceEvent(c.reader, cmd, raw, resp, time.Since(start), err))
	}
	return resp, err
}

// diagnose classifies a failed exchange. pcscd reports a card pulled in
// the middle of a command as a generic failure (SCARD_E_NOT_TRANSACTED,
// or an empty answer from the driver): only the reader's state tells a
// removed card from a sick one, so it is asked, for up to a second, while
// the reader's polling notices the change.
func (c *Card) diagnose(op string, err error) error {
	var first *Error
	if err != nil {
		first, _ = wrap(op, c.reader, err).(*Error)
		if first != nil && first.Kind != KindOther {
			return first
		}
	}
	deadline := time.Now().Add(time.Second)
	for {
		st, serr := c.h.Status()
		switch {
		case serr != nil:
			if e, ok := wrap(op, c.reader, serr).(*Error); ok && e.Kind != KindOther {
				return e
			}
		case st.State&scard.Absent != 0 || st.State&scard.Present == 0:
			return &Error{Op: op, Reader: c.reader, Kind: KindCardRemoved}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if first != nil {
		return first
	}
	return &Error{Op: op, Reader: c.reader, Kind: KindUnresponsive, Err: fmt.Errorf("the reader returned no status word")}
}

// rawTransmitter is the seam between the transmit loop and the wire, so the
// loop is tested against scripted cards as well as the real stack.
type rawTransmitter interface {
	exchange(ctx context.Context, cmd apdu.Command, raw []byte) ([]byte, error)
}

// Transmit sends cmd through the transmit loop (T=0 encoding, GET RESPONSE
// on 61xx, resend on 6Cxx, chaining, caps) and returns the assembled
// response. A non-9000 status word is returned in the Response, not as an
// error: the caller decides what a status word means for its operation.
// ctx is checked before the command's first APDU only.
func (c *Card) Transmit(ctx context.Context, cmd apdu.Command) (apdu.Response, error) {
	if err := ctx.Err(); err != nil {
		return apdu.Response{}, &Error{Op: "transmit " + cmd.Label(), Reader: c.reader, Kind: KindCancelled, Err: err}
	}
	if err := c.usable("transmit " + cmd.Label()); err != nil {
		return apdu.Response{}, err
	}
	return transmit(ctx, c, cmd, c.link)
}
