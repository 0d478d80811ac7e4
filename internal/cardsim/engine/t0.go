package engine

import (
	"bytes"
	"sync"

	"ssstation/internal/cardsim/vpcd"
	"ssstation/pcsc/apdu"
)

// T0Card makes any vpcd.Card answer like a T=0 card, whose transport cannot
// carry both command data and response data in one exchange nor tell the
// host how much to expect:
//
//   - A command with data and Le (a case 4 TPDU) is refused with 6700, as
//     a strict T=0 card or reader does: a T=0 TPDU carries command data or
//     response data, never both (ISO/IEC 7816-3 §12.2), so a T=0 host sends
//     case 4 as case 3. So is an extended-length TPDU (P3 is one byte).
//   - A command with data (case 3): the inner card runs it as case 4
//     (Le 00 added); if it returns data, the answer is 61xx
//     (xx bytes available, 00 for 256) and the data waits for GET RESPONSE
//     (00 C0 00 00 Le), which returns min(Le, left) bytes with 61yy while
//     more remains and the inner card's status word with the last part. A
//     GET RESPONSE whose Le exceeds what is left (Le not 00) answers 6Cxx.
//   - A command without data and with Le (case 2): when the inner card
//     returns data whose length differs from Le (and Le is not 00), the
//     answer is 6Cxx with the right length; the same command resent with
//     Le = xx returns the held data.
//   - Anything else passes through. Any other command discards held data,
//     as on a real card; GET RESPONSE with nothing held answers 6985.
type T0Card struct {
	inner vpcd.Card
	atr   []byte

	mu      sync.Mutex
	pending []byte          // data waiting for GET RESPONSE
	final   apdu.StatusWord // status word after the last GET RESPONSE
	resend  *apdu.Command   // the case 2 command answered 6Cxx
	held    apdu.Response   // its answer, returned when resent with the right Le
	mode    byte            // 0 nothing held, 'R' GET RESPONSE data, 'C' 6Cxx data
}

// T0 wraps a card as a T=0 card. Its ATR is inner's ATRT0() when inner has
// that method (an engine Card: the image's atr_t0), else a T=0 ATR built
// from the historical bytes of inner's ATR.
func T0(inner vpcd.Card) *T0Card {
	var atr []byte
	if a, ok := inner.(interface{ ATRT0() []byte }); ok {
		atr = a.ATRT0()
	} else {
		info, _ := ParseATR(inner.ATR())
		atr = T0ATR(info.Historical)
	}
	return &T0Card{inner: inner, atr: atr}
}

var _ vpcd.Card = (*T0Card)(nil)

// Inner returns the wrapped card.
func (t *T0Card) Inner() vpcd.Card { return t.inner }

// ATR is the T=0-only ATR.
func (t *T0Card) ATR() []byte { return append([]byte(nil), t.atr...) }

// Reset drops held data and resets the inner card.
func (t *T0Card) Reset() {
	t.mu.Lock()
	t.clear()
	t.mu.Unlock()
	t.inner.Reset()
}

func (t *T0Card) clear() {
	t.pending, t.resend, t.held, t.mode, t.final = nil, nil, apdu.Response{}, 0, 0
}

// moreSW is 61xx for n bytes available (00 meaning 256).
func moreSW(n int) apdu.StatusWord { return apdu.StatusWord(0x6100 | uint16(min(n, 256)&0xFF)) }

func wrongLeSW(n int) apdu.StatusWord { return apdu.StatusWord(0x6C00 | uint16(n&0xFF)) }

// Process answers one raw command APDU the T=0 way.
func (t *T0Card) Process(raw []byte) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		t.clear()
		return t.inner.Process(raw)
	}
	if cmd.CLA == 0x00 && cmd.INS == 0xC0 {
		return t.getResponse(cmd).Bytes()
	}
	if t.mode == 'C' && t.resend != nil && len(cmd.Data) == 0 && cmd.Ne == len(t.held.Data) &&
		cmd.CLA == t.resend.CLA && cmd.INS == t.resend.INS && cmd.P1 == t.resend.P1 && cmd.P2 == t.resend.P2 {
		r := t.held
		t.clear()
		return r.Bytes()
	}
	t.clear()

	if len(raw) > 5 && raw[4] == 0 {
		return Status(apdu.SWWrongLength).Bytes() // extended lengths: not a T=0 TPDU
	}
	if len(cmd.Data) > 0 {
		if cmd.Ne != 0 {
			return Status(apdu.SWWrongLength).Bytes()
		}
		cmd.Ne = apdu.MaxShortNe
		if b, err := cmd.Bytes(); err == nil {
			raw = b
		}
		r, err := apdu.ParseResponse(t.inner.Process(raw))
		if err != nil || len(r.Data) == 0 {
			return r.Bytes()
		}
		t.pending, t.final, t.mode = append([]byte(nil), r.Data...), r.SW, 'R'
		return Status(moreSW(len(r.Data))).Bytes()
	}

	out := t.inner.Process(raw)
	if cmd.Ne == 0 || cmd.Ne == apdu.MaxShortNe || cmd.Ne == apdu.MaxExtendedNe {
		return out
	}
	r, err := apdu.ParseResponse(out)
	if err != nil || len(r.Data) == 0 || len(r.Data) == cmd.Ne || len(r.Data) > 256 {
		return out
	}
	if sw1 := r.SW.SW1(); sw1 != 0x90 && sw1 != 0x62 && sw1 != 0x63 {
		return out
	}
	held := apdu.Response{Data: append([]byte(nil), r.Data...), SW: r.SW}
	if r.SW == 0x6282 {
		// "end reached before Ne bytes" no longer applies once Le is exact.
		held.SW = apdu.SWOK
	}
	c := cmd
	t.resend, t.held, t.mode = &c, held, 'C'
	return Status(wrongLeSW(len(r.Data))).Bytes()
}

func (t *T0Card) getResponse(cmd apdu.Command) apdu.Response {
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return Status(apdu.SWIncorrectP1P2)
	}
	if t.mode != 'R' || len(t.pending) == 0 {
		t.clear()
		return Status(apdu.SWConditionsNotSatisfied)
	}
	if len(cmd.Data) > 0 || cmd.Ne == 0 {
		return Status(apdu.SWWrongLength)
	}
	n := cmd.Ne
	if n > len(t.pending) {
		if n != apdu.MaxShortNe && n != apdu.MaxExtendedNe {
			return Status(wrongLeSW(len(t.pending)))
		}
		n = len(t.pending)
	}
	chunk := bytes.Clone(t.pending[:n])
	t.pending = t.pending[n:]
	if len(t.pending) > 0 {
		return apdu.Response{Data: chunk, SW: moreSW(len(t.pending))}
	}
	sw := t.final
	t.clear()
	return apdu.Response{Data: chunk, SW: sw}
}
