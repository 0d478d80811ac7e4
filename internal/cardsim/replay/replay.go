// Package replay is a virtual card that answers from a transcript
// (internal/transcript): a recorded session with a real card, played back
// through vpcd and pcscd so that the station's flows can be run against
// it as a regression test (cardsim --replay FILE).
//
// Matching. A command is looked for from just after the last answered
// exchange to the end of the transcript, then from its start (so a flow
// recorded twice, or a re-run after a reset, still matches). An exchange
// matches when its class, instruction, P1, P2 and data are the command's:
//
//   - exactly, bytes for bytes; or
//   - with another Le, when the recorded answer fits it: a recorded 6Cxx
//     never matches a different Le; otherwise the recorded data must be no
//     longer than the new Le (Le 00: any). On a T=0 transcript a Le that
//     is neither 00 nor the recorded data's length is answered 6Cxx with
//     that length, as the real T=0 card would (ISO/IEC 7816-3), and the
//     resend with the right Le gets the data;
//   - for an exchange whose command data was masked (a PIN, a key
//     cryptogram), on the header and Lc alone.
//
// A command that matches nothing answers 6D00 (the transcript has no such
// command) and is counted: Unmatched, and "unmatched=" in the control
// channel's stats. A replay test asserts zero.
package replay

import (
	"bytes"
	"fmt"
	"sync"

	"ssstation/internal/cardsim/vpcd"
	"ssstation/internal/transcript"
	"ssstation/pcsc/apdu"
)

// SWUnmatched answers a command the transcript does not hold.
const SWUnmatched = apdu.SWINSNotSupported

// Card is a replay card. It implements vpcd.Card and is safe for
// concurrent use.
type Card struct {
	atr []byte
	t0  bool
	ex  []transcript.Parsed

	mu        sync.Mutex
	next      int // where the next search starts
	answered  int
	unmatched []string // headers of the unmatched commands, for diagnostics
	logf      func(format string, args ...any)
}

var _ vpcd.Card = (*Card)(nil)

// New makes a replay card from a checked transcript.
func New(t *transcript.Transcript) (*Card, error) {
	ex, err := t.Parse()
	if err != nil {
		return nil, err
	}
	atr, err := t.ATRBytes()
	if err != nil {
		return nil, err
	}
	if len(ex) == 0 {
		return nil, transcript.ErrEmpty
	}
	return &Card{atr: atr, t0: t.Protocol == transcript.T0, ex: ex}, nil
}

// Load makes a replay card from a transcript file.
func Load(path string) (*Card, error) {
	t, err := transcript.Load(path)
	if err != nil {
		return nil, err
	}
	c, err := New(t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// SetLogf logs each unmatched command's header (never its data).
func (c *Card) SetLogf(f func(format string, args ...any)) {
	c.mu.Lock()
	c.logf = f
	c.mu.Unlock()
}

// ATR is the recorded ATR.
func (c *Card) ATR() []byte { return append([]byte(nil), c.atr...) }

// Reset is power-up. The transcript position is kept: a recorded session
// spans the resets the host asked for.
func (c *Card) Reset() {}

// Process answers one command from the transcript.
func (c *Card) Process(raw []byte) []byte {
	cmd, err := apdu.ParseCommand(raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		n := len(c.ex)
		for k := 0; k < n; k++ {
			i := (c.next + k) % n
			if resp, ok := c.match(c.ex[i], raw, cmd); ok {
				c.next = i + 1
				c.answered++
				return resp
			}
		}
	}
	hdr := fmt.Sprintf("% X", raw[:min(4, len(raw))])
	c.unmatched = append(c.unmatched, hdr)
	if c.logf != nil {
		c.logf("replay: no recorded exchange for %s (%d bytes)", hdr, len(raw))
	}
	return []byte{0x6D, 0x00} // SWUnmatched
}

// match tries one recorded exchange.
func (c *Card) match(e transcript.Parsed, raw []byte, cmd apdu.Command) ([]byte, bool) {
	r := e.Command
	if r.CLA != cmd.CLA || r.INS != cmd.INS || r.P1 != cmd.P1 || r.P2 != cmd.P2 {
		return nil, false
	}
	if e.Masked {
		if len(r.Data) != len(cmd.Data) {
			return nil, false
		}
	} else if !bytes.Equal(r.Data, cmd.Data) {
		return nil, false
	}
	resp := append([]byte(nil), e.Response...)
	if bytes.Equal(e.Raw, raw) || e.Masked && r.Ne == cmd.Ne {
		return resp, true
	}
	// Another Le.
	data, sw1 := resp[:len(resp)-2], resp[len(resp)-2]
	if sw1 == 0x6C || cmd.Ne == 0 && len(data) > 0 {
		return nil, false
	}
	want := cmd.Ne
	if want == apdu.MaxShortNe || want == apdu.MaxExtendedNe {
		return resp, true
	}
	if c.t0 && want != len(data) && len(data) > 0 {
		return []byte{0x6C, byte(len(data))}, true
	}
	if len(data) > want {
		return nil, false
	}
	return resp, true
}

// Stats is what the replay did.
type Stats struct {
	Answered  int      // commands answered from the transcript
	Unmatched int      // commands the transcript does not hold (answered 6D00)
	Headers   []string // their headers, in order
}

// Stats returns the counters.
func (c *Card) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Answered: c.answered, Unmatched: len(c.unmatched), Headers: append([]string(nil), c.unmatched...)}
}

// Unmatched is the number of commands the transcript did not hold.
func (c *Card) Unmatched() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.unmatched)
}
