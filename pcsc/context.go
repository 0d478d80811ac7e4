// Package pcsc is the only package in the station that touches PC/SC. It
// wraps github.com/ebfe/scard with classified errors, a reader monitor, card
// connections with explicit share mode and disposition, per-operation
// transactions, and the one transmit loop every command goes through.
//
// Threading rule (pcsc-lite, FreeRDP and ChromeOS all learnt it): a Context
// belongs to one goroutine. The only call made on it from elsewhere is
// Cancel, which is how a blocking wait is interrupted. A Card has a context
// of its own; the only call made on its handle from elsewhere is the
// Disconnect that ends an SCardBeginTransaction given up (Card.Transaction).
package pcsc

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/ebfe/scard"
)

// Context is one PC/SC resource-manager context (SCARDCONTEXT).
type Context struct {
	sc       *scard.Context
	dial     dialer // nil: each card connects on a context of its own (dialOwnContext)
	mu       sync.Mutex
	released bool
}

// Establish opens a context with the smart card service.
func Establish() (*Context, error) {
	sc, err := scard.EstablishContext()
	if err != nil {
		return nil, wrap("establish context", "", err)
	}
	return &Context{sc: sc}, nil
}

// Release ends the context. It is safe to call more than once.
func (c *Context) Release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.released {
		return nil
	}
	c.released = true
	return wrap("release context", "", c.sc.Release())
}

// Cancel interrupts a blocking GetStatusChange on this context; it is the
// one call that may come from another goroutine.
func (c *Context) Cancel() error {
	return wrap("cancel", "", c.sc.Cancel())
}

// Valid reports whether the service still knows this context (it forgets
// every context when pcscd restarts).
func (c *Context) Valid() bool {
	ok, err := c.sc.IsValid()
	return err == nil && ok
}

// Readers lists reader names, sorted. A service with no readers gives an
// empty list and no error: "no readers" is a state, not a failure.
func (c *Context) Readers() ([]string, error) {
	names, err := c.sc.ListReaders()
	if errors.Is(err, scard.ErrNoReadersAvailable) {
		return []string{}, nil
	}
	if err != nil {
		return nil, wrap("list readers", "", err)
	}
	sort.Strings(names)
	return names, nil
}

// ReaderStatus is what a reader reports without connecting to its card.
type ReaderStatus struct {
	Reader      string `json:"reader"`
	CardPresent bool   `json:"card_present"`
	InUse       bool   `json:"in_use"`
	Exclusive   bool   `json:"exclusive"`
	Mute        bool   `json:"mute"`
	ATR         []byte `json:"-"`
}

// Status reads the current state of every named reader in one call.
func (c *Context) Status(readers []string) ([]ReaderStatus, error) {
	if len(readers) == 0 {
		return nil, nil
	}
	rs := make([]scard.ReaderState, len(readers))
	for i, r := range readers {
		rs[i] = scard.ReaderState{Reader: r, CurrentState: scard.StateUnaware}
	}
	if err := c.sc.GetStatusChange(rs, 0); err != nil && !errors.Is(err, scard.ErrTimeout) {
		return nil, wrap("reader status", "", err)
	}
	out := make([]ReaderStatus, len(rs))
	for i, s := range rs {
		out[i] = statusOf(s)
	}
	return out, nil
}

func statusOf(s scard.ReaderState) ReaderStatus {
	st := ReaderStatus{
		Reader:      s.Reader,
		CardPresent: s.EventState&scard.StatePresent != 0 && s.EventState&scard.StateMute == 0,
		InUse:       s.EventState&scard.StateInuse != 0,
		Exclusive:   s.EventState&scard.StateExclusive != 0,
		Mute:        s.EventState&scard.StateMute != 0,
	}
	if s.EventState&scard.StatePresent != 0 && len(s.Atr) > 0 {
		st.ATR = append([]byte(nil), s.Atr...)
	}
	return st
}

// cancelOnDone arranges for SCardCancel when ctx ends; the returned func
// stops that arrangement.
func (c *Context) cancelOnDone(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			_ = c.sc.Cancel()
		case <-done:
		}
	}()
	return func() { close(done); wg.Wait() }
}
