// Package vpcd is the card side of vsmartcard's virtual reader driver
// (vpcd): a Slot connects to the TCP port of one vpcd reader in pcscd and
// answers its messages with a Card, so that every PC/SC client on the
// machine sees a card in that reader.
//
// Protocol: every message is a 2-byte big-endian length and a payload. A
// 1-byte payload from vpcd is a control (0 power off, 1 power on, 2 reset,
// 4 send the ATR; only 4 is answered); a longer one is a command APDU,
// answered with one message holding the response APDU. Closing the
// connection is a card removal; connecting again is an insertion.
package vpcd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MinOutTime is the least time a removed card stays out before the slot
// connects again, however soon Insert comes: a hand takes longer, and
// pcscd needs it. pcscd's reader thread polls presence every 400 ms and
// only acts on a change from what it saw last; when a card is pulled and
// pcscd then fails to reset it (a transaction ending with a reset), pcscd
// marks the reader empty itself, and a card back before the thread's next
// poll looks unchanged to it: the reader stays "empty" with the card in.
// Two polls and a half rule that out.
const MinOutTime = time.Second

// Card is what a Slot presents to vpcd.
type Card interface {
	ATR() []byte
	// Reset is called on power on, reset and power off (and on every new
	// connection): the card clears its selection and security state.
	Reset()
	// Process answers one raw command APDU with a raw response APDU (data || SW1 SW2).
	Process(cmd []byte) []byte
}

// Control payloads sent by vpcd.
const (
	CtrlPowerOff byte = 0
	CtrlPowerOn  byte = 1
	CtrlReset    byte = 2
	CtrlATR      byte = 4
)

// Stats counts what a Slot did since it was made.
type Stats struct {
	APDUs    uint64 // command APDUs answered (StatusOnce answers included)
	Connects uint64 // connections made to vpcd: insertions as pcscd sees them
	Resets   uint64 // power off, power on and reset controls received
	Dropped  uint64 // APDUs read and never answered (Drop)
}

// Slot is one virtual card in one vpcd reader. Make it with NewSlot; all
// methods are safe for concurrent use.
type Slot struct {
	// Addr is vpcd's address, e.g. "127.0.0.1:35963".
	Addr string
	// Logf, when set (before Run), receives connection events and APDU
	// traces. Data of VERIFY, CHANGE/RELOAD PIN, EXTERNAL and INTERNAL
	// AUTHENTICATE (INS 20, 24, 5E, 82, 88) is never logged: header only.
	Logf func(format string, args ...any)

	wake       chan struct{}
	logHook    atomic.Pointer[func(format string, args ...any)]
	noQuickAck bool // tests only: measure what TCP_QUICKACK saves

	mu           sync.Mutex
	card         Card
	inserted     bool
	conn         net.Conn
	removeAfter  int // answers left before the card is pulled; <0: off
	latency      time.Duration
	swOnce       uint16
	swOnceSet    bool
	drop         bool
	removeDuring int // APDUs before the one whose answer is lost; <0: off
	stats        Stats
}

// NewSlot makes a slot for the vpcd reader at addr, with card inserted:
// Run connects at once.
func NewSlot(addr string, card Card) *Slot {
	return &Slot{Addr: addr, card: card, inserted: true, removeAfter: -1, removeDuring: -1, wake: make(chan struct{}, 1)}
}

// Card returns the card in the slot.
func (s *Slot) Card() Card {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.card
}

// SetCard puts another card in the slot. Call it while the card is removed
// (Remove, then SetCard, then Insert) so the host sees a different card
// inserted; a swap while connected changes the card under the host's feet.
func (s *Slot) SetCard(c Card) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.card = c
}

// Present reports whether the card is inserted: Run keeps it connected to
// vpcd (or keeps trying to) until Remove, RemoveAfter or Drop pull it.
func (s *Slot) Present() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inserted
}

// Connected reports whether the card is connected to vpcd right now.
func (s *Slot) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil
}

// Remove pulls the card: the connection is closed now, and Run waits for
// Insert. Pending RemoveAfter and Drop faults are cancelled.
func (s *Slot) Remove() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked()
}

func (s *Slot) removeLocked() {
	s.inserted = false
	s.removeAfter = -1
	s.removeDuring = -1
	s.drop = false
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}

// Insert puts the card back: Run connects to vpcd again, once the card
// has been out for MinOutTime.
func (s *Slot) Insert() {
	s.mu.Lock()
	s.inserted = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// RemoveAfter answers n more APDUs, then pulls the card before reading the
// next one. n == 0 pulls it now; n < 0 cancels a pending RemoveAfter.
func (s *Slot) RemoveAfter(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case n == 0:
		s.removeLocked()
	case n < 0:
		s.removeAfter = -1
	default:
		s.removeAfter = n
	}
}

// Latency makes the card sleep d before each APDU answer (0: none).
func (s *Slot) Latency(d time.Duration) {
	if d < 0 {
		d = 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// StatusOnce answers the next APDU with sw alone, without passing the
// command to the card.
func (s *Slot) StatusOnce(sw uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.swOnce, s.swOnceSet = sw, true
}

// RemoveDuring lets the card carry out the n-th next APDU (n >= 1) and
// pulls it before the answer leaves: the host never learns whether the
// command took effect. It is the hardest case for resuming an operation.
func (s *Slot) RemoveDuring(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n < 1 {
		s.removeDuring = -1
		return
	}
	s.removeDuring = n
}

// Drop reads the next APDU, never answers it and closes the connection: the
// card vanishes in the middle of a command. The card stays removed until
// Insert.
func (s *Slot) Drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop = true
}

// Stats returns the counters.
func (s *Slot) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Run connects to vpcd and serves it until ctx ends, then returns nil. It
// connects again after Insert, and after vpcd drops the connection while
// the card is inserted; a refused connection (pcscd not up, or restarting)
// is retried every 100-250 ms.
func (s *Slot) Run(ctx context.Context) error {
	if s.wake == nil {
		return errors.New("vpcd: Slot not made with NewSlot")
	}
	if s.Card() == nil {
		return fmt.Errorf("vpcd %s: no card in the slot", s.Addr)
	}
	var dialer net.Dialer
	failing := false
	var outSince time.Time // when the card last left the reader
	for {
		if !s.waitInserted(ctx) {
			return nil
		}
		if !outSince.IsZero() && !sleepCtx(ctx, time.Until(outSince.Add(MinOutTime))) {
			return nil
		}
		conn, err := dialer.DialContext(ctx, "tcp", s.Addr)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				s.logf("vpcd %s: %v; retrying", s.Addr, err)
				failing = true
			}
			if !sleepCtx(ctx, retryDelay()) {
				return nil
			}
			continue
		}
		failing = false
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		s.mu.Lock()
		if !s.inserted {
			s.mu.Unlock()
			_ = conn.Close()
			continue
		}
		s.conn = conn
		s.stats.Connects++
		card := s.card
		s.mu.Unlock()
		card.Reset()
		s.logf("vpcd %s: card inserted", s.Addr)

		err = s.serve(ctx, conn)

		s.mu.Lock()
		if s.conn == conn {
			s.conn = nil
		}
		inserted := s.inserted
		s.mu.Unlock()
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil
		}
		if inserted {
			// vpcd closed on us (pcscd stopped or gave up on the card).
			s.logf("vpcd %s: connection lost (%v); reconnecting", s.Addr, err)
			if !sleepCtx(ctx, retryDelay()) {
				return nil
			}
		} else {
			outSince = time.Now()
			s.logf("vpcd %s: card removed", s.Addr)
		}
	}
}

func (s *Slot) waitInserted(ctx context.Context) bool {
	for {
		s.mu.Lock()
		ins := s.inserted
		s.mu.Unlock()
		if ins {
			return ctx.Err() == nil
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return false
		}
	}
}

func retryDelay() time.Duration {
	return 100*time.Millisecond + time.Duration(rand.IntN(150))*time.Millisecond
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

var errPulled = errors.New("card pulled")

// serve runs the message loop on one connection until it fails, ctx ends or
// a fault pulls the card.
func (s *Slot) serve(ctx context.Context, conn net.Conn) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	qa := newQuickAck(conn)
	var hdr [2]byte
	for {
		if !s.noQuickAck {
			qa.arm()
		}
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return err
		}
		msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(conn, msg); err != nil {
			return err
		}
		switch len(msg) {
		case 0:
			continue
		case 1:
			if err := s.control(conn, msg[0]); err != nil {
				return err
			}
			continue
		}

		s.mu.Lock()
		if s.drop {
			s.drop = false
			s.stats.Dropped++
			s.inserted = false
			s.removeAfter = -1
			s.mu.Unlock()
			s.logf("vpcd %s: > %s (dropped: closing without an answer)", s.Addr, traceCmd(msg))
			return errPulled
		}
		card, lat := s.card, s.latency
		swOnce, injected := s.swOnce, s.swOnceSet
		s.swOnceSet = false
		s.stats.APDUs++
		pullAfter, loseAnswer := false, false
		if s.removeDuring > 0 {
			s.removeDuring--
			if s.removeDuring == 0 {
				s.removeDuring = -1
				loseAnswer = true
			}
		}
		if s.removeAfter > 0 {
			s.removeAfter--
			if s.removeAfter == 0 {
				s.removeAfter = -1
				pullAfter = true
			}
		}
		s.mu.Unlock()

		var resp []byte
		if injected {
			resp = []byte{byte(swOnce >> 8), byte(swOnce)}
		} else {
			resp = card.Process(msg)
		}
		if lat > 0 && !sleepCtx(ctx, lat) {
			return ctx.Err()
		}
		if loseAnswer {
			s.mu.Lock()
			s.inserted = false
			s.removeAfter = -1
			s.mu.Unlock()
			s.logf("vpcd %s: > %s (carried out; the card is pulled before its answer leaves)", s.Addr, traceCmd(msg))
			return errPulled
		}
		if s.Logf != nil || s.logHook.Load() != nil {
			note := ""
			if injected {
				note = " (injected)"
			}
			s.logf("vpcd %s: > %s", s.Addr, traceCmd(msg))
			s.logf("vpcd %s: < %s%s", s.Addr, traceResp(msg, resp), note)
		}
		if err := writeMsg(conn, resp); err != nil {
			return err
		}
		if pullAfter {
			s.mu.Lock()
			s.inserted = false
			s.mu.Unlock()
			s.logf("vpcd %s: pulling the card (remove-after)", s.Addr)
			return errPulled
		}
	}
}

func (s *Slot) control(conn net.Conn, c byte) error {
	s.mu.Lock()
	card := s.card
	if c != CtrlATR {
		s.stats.Resets++
	}
	s.mu.Unlock()
	switch c {
	case CtrlPowerOff, CtrlPowerOn, CtrlReset:
		card.Reset()
	case CtrlATR:
		return writeMsg(conn, card.ATR())
	default:
		s.logf("vpcd %s: unknown control %02X ignored", s.Addr, c)
	}
	return nil
}

func writeMsg(w io.Writer, payload []byte) error {
	if len(payload) > 0xFFFF {
		return fmt.Errorf("vpcd: message of %d bytes is too long", len(payload))
	}
	buf := make([]byte, 2+len(payload))
	binary.BigEndian.PutUint16(buf, uint16(len(payload)))
	copy(buf[2:], payload)
	_, err := w.Write(buf)
	return err
}

func (s *Slot) logf(format string, args ...any) {
	if f := s.logHook.Load(); f != nil {
		(*f)(format, args...)
		return
	}
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// SetLogf replaces the log hook while the slot runs (Logf may only be set
// before Run).
func (s *Slot) SetLogf(f func(format string, args ...any)) {
	s.logHook.Store(&f)
}

// Sensitive reports whether a command with this INS carries a PIN, a key
// cryptogram, an authentication result or a holder's personal data:
// VERIFY (20), CHANGE REFERENCE DATA / PIN reload (24), CHANGE or RELOAD
// PIN (5E), EXTERNAL AUTHENTICATE (82), INTERNAL AUTHENTICATE (88), the
// PSAM's INIT FOR DESCRYPT (1A) and CIPHER DATA (FA), and READ / UPDATE
// RECORD (B2, DC), whose data is names and ID numbers. Traces show their
// header and status word only.
func Sensitive(ins byte) bool {
	switch ins {
	case 0x20, 0x24, 0x5E, 0x82, 0x88, 0x1A, 0xFA, 0xB2, 0xDC:
		return true
	}
	return false
}

func traceCmd(cmd []byte) string {
	if len(cmd) >= 4 && Sensitive(cmd[1]) {
		return fmt.Sprintf("% X [%d bytes hidden]", cmd[:4], len(cmd)-4)
	}
	return fmt.Sprintf("% X", cmd)
}

func traceResp(cmd, resp []byte) string {
	if len(cmd) >= 4 && Sensitive(cmd[1]) && len(resp) > 2 {
		return fmt.Sprintf("[%d bytes hidden] % X", len(resp)-2, resp[len(resp)-2:])
	}
	return strings.TrimSpace(fmt.Sprintf("% X", resp))
}
