package pcsc

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ebfe/scard"

	"ssstation/pcsc/apdu"
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
	// cannot say gets short APDUs and command chaining.
	MaxAPDUData int
}

// Card is a connection to the card in one reader. It is used by one
// goroutine at a time (the reader's worker).
type Card struct {
	pc      *Context
	h       *scard.Card
	reader  string
	opts    ConnectOptions
	atr     []byte
	proto   Protocol
	maxData int

	mu         sync.Mutex
	resetAtEnd bool
	closed     bool
}

// Connect connects to the card in reader.
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
	h, err := c.sc.Connect(reader, opts.Share, opts.Protocols)
	if err != nil {
		return nil, wrap("connect", reader, err)
	}
	card := &Card{pc: c, h: h, reader: reader, opts: opts, proto: h.ActiveProtocol()}
	if st, err := h.Status(); err == nil {
		card.atr = append([]byte(nil), st.Atr...)
	} else {
		_ = h.Disconnect(LeaveCard)
		return nil, wrap("card status", reader, err)
	}
	card.maxData = opts.MaxAPDUData
	if card.maxData == 0 {
		card.maxData = readerMaxAPDUData(h)
	}
	return card, nil
}

// Reader is the name of the reader this card sits in.
func (c *Card) Reader() string { return c.reader }

// ATR is the card's answer to reset as the reader reported it.
func (c *Card) ATR() []byte { return append([]byte(nil), c.atr...) }

// Protocol is the protocol negotiated for this connection.
func (c *Card) Protocol() Protocol { return c.proto }

// SetTracer replaces the APDU trace hook.
func (c *Card) SetTracer(t Tracer) { c.opts.Tracer = t }

// ResetAtEnd asks that the current transaction (or the connection, outside
// one) end with a card reset, so that a verified PIN does not outlive the
// operation that verified it.
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

// Transaction runs body inside one PC/SC transaction. It is meant for one
// operation at a time (read info, verify a PIN): never hold it while a
// person types, since other processes wait on it and some platforms reset
// an idle card after a few seconds.
func (c *Card) Transaction(ctx context.Context, body func(ctx context.Context) error) (err error) {
	if err := ctx.Err(); err != nil {
		return &Error{Op: "begin transaction", Reader: c.reader, Kind: KindCancelled, Err: err}
	}
	if err := c.h.BeginTransaction(); err != nil {
		werr := wrap("begin transaction", c.reader, err)
		if KindOf(werr) != KindCardReset {
			return werr
		}
		// The card was reset since this handle last used it (by us, after
		// a verified PIN, or by someone else): a transaction starts a new
		// operation, which selects from scratch, so reconnecting is safe.
		if rerr := c.Reconnect(LeaveCard); rerr != nil {
			return rerr
		}
		if err := c.h.BeginTransaction(); err != nil {
			return wrap("begin transaction", c.reader, err)
		}
	}
	defer func() {
		disp := LeaveCard
		if c.takeResetAtEnd() {
			disp = ResetCard
		}
		if e := c.h.EndTransaction(disp); e != nil && err == nil {
			// The body succeeded. A card pulled or reset right after it lost
			// its security state with its power, which is all a reset at the
			// end is for; anything else (the service gone) is reported.
			if k := KindOf(wrap("", "", e)); k != KindCardRemoved && k != KindCardReset {
				err = wrap("end transaction", c.reader, e)
			}
		}
	}()
	return body(ctx)
}

// Reconnect re-establishes the connection after a reset or to reset the
// card (init = ResetCard). Everything selected or verified is gone after
// it: the caller selects again.
func (c *Card) Reconnect(init Disposition) error {
	if err := c.h.Reconnect(c.opts.Share, c.opts.Protocols, init); err != nil {
		return wrap("reconnect", c.reader, err)
	}
	c.proto = c.h.ActiveProtocol()
	if st, err := c.h.Status(); err == nil {
		c.atr = append([]byte(nil), st.Atr...)
	}
	return nil
}

// Close disconnects with the disposition given at connect, or a reset when
// ResetAtEnd was asked outside a transaction.
func (c *Card) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	disp := c.opts.OnClose
	if c.takeResetAtEnd() {
		disp = ResetCard
	}
	err := c.h.Disconnect(disp)
	if err != nil && KindOf(wrap("", "", err)) == KindCardRemoved {
		return nil // the card is gone already: nothing left to dispose of
	}
	return wrap("disconnect", c.reader, err)
}

// Control sends a reader control code (SCardControl), e.g. for PIN pads.
func (c *Card) Control(code uint32, in []byte) ([]byte, error) {
	out, err := c.h.Control(code, in)
	return out, wrap("control", c.reader, err)
}

// exchange is one raw command/response pair on the wire, traced.
func (c *Card) exchange(ctx context.Context, cmd apdu.Command, raw []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: "transmit " + cmd.Label(), Reader: c.reader, Kind: KindCancelled, Err: err}
	}
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

// Transmit sends cmd through the transmit loop (GET RESPONSE on 61xx,
// resend on 6Cxx, chaining, caps) and returns the assembled response. A
// non-9000 status word is returned in the Response, not as an error: the
// caller decides what a status word means for its operation.
func (c *Card) Transmit(ctx context.Context, cmd apdu.Command) (apdu.Response, error) {
	return transmit(ctx, c, cmd, c.maxData)
}

// TransmitRaw sends one encoded APDU through the same loop; the technician
// CLI uses it. The bytes are parsed first so that a malformed APDU is
// refused before it reaches the card.
func (c *Card) TransmitRaw(ctx context.Context, raw []byte) (apdu.Response, error) {
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return apdu.Response{}, err
	}
	return c.Transmit(ctx, cmd)
}
