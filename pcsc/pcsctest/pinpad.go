package pcsctest

import (
	"context"
	"encoding/binary"
	"sync"

	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
)

// Keypad is the holder's side of emulated PC/SC part 10 PIN pads: no
// virtual PIN pad exists, so the tests of cardapp and of the daemon put an
// EmulatedPad in front of the real (virtual) card through pcscd. Type sets
// the PINs the holder will key in, one entry per PIN the pad asks for.
type Keypad struct {
	mu    sync.Mutex
	typed []string
	sent  [][]byte // the APDUs the pads sent to the card
}

// Type sets the key presses for the next pad operation(s).
func (k *Keypad) Type(pins ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.typed = append([]string(nil), pins...)
}

// Sent returns the APDUs the pads have sent to the card so far.
func (k *Keypad) Sent() [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([][]byte(nil), k.sent...)
}

// Pad is a pad on this keypad in front of card.
func (k *Keypad) Pad(card *pcsc.Card) *EmulatedPad { return &EmulatedPad{card: card, k: k} }

func (k *Keypad) next() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.typed) == 0 {
		return ""
	}
	s := k.typed[0]
	k.typed = k.typed[1:]
	return s
}

// EmulatedPad is a part 10 PIN pad reader. It reads the structure from its
// BYTES, at the offsets part 10 gives (not from the Go struct), formats the
// typed digits as bmFormatString / bmPINBlockString say, writes them over
// the PIN block at the offsets given, and sends the APDU to the card. A
// structure built wrong sends a wrong APDU, and the card says so.
type EmulatedPad struct {
	card *pcsc.Card
	k    *Keypad
}

// PINPad reports both features.
func (p *EmulatedPad) PINPad(context.Context) pcsc.PINPadCaps {
	return pcsc.PINPadCaps{Verify: true, Modify: true}
}

// bcd packs digits two per byte, the unused nibbles set to pad.
func bcd(digits string, pad byte) []byte {
	b := make([]byte, (len(digits)+1)/2)
	for i := range b {
		b[i] = pad<<4 | pad
	}
	for i := 0; i < len(digits); i++ {
		d := digits[i] - '0'
		if i%2 == 0 {
			b[i/2] = d<<4 | b[i/2]&0x0F
		} else {
			b[i/2] = b[i/2]&0xF0 | d
		}
	}
	return b
}

// insert formats one typed PIN into the APDU the way a part 10 reader does.
func (p *EmulatedPad) insert(apduBytes []byte, format, block byte, min, max, offset int, pin string) ([]byte, apdu.StatusWord) {
	if len(pin) < min || len(pin) > max {
		return nil, pcsc.SWPINPadLength
	}
	if format&0x80 == 0 || format&0x03 != 0x01 || format&0x04 != 0 {
		return nil, pcsc.SWPINPadRejected // this emulator takes byte units, BCD, left-justified
	}
	pos := 5 + offset + int(format>>3&0x0F)
	size := int(block & 0x0F)
	out := append([]byte(nil), apduBytes...)
	if size == 0 { // variable: the reader appends the digits and sets Lc
		if len(out) != 4 {
			return nil, pcsc.SWPINPadRejected
		}
		d := bcd(pin, 0x0F)
		return append(append(out, byte(len(d))), d...), 0
	}
	if pos+size > len(out) || (len(pin)+1)/2 > size {
		return nil, pcsc.SWPINPadRejected
	}
	copy(out[pos:], bcd(pin, out[pos+size-1]&0x0F))
	return out, 0
}

func (p *EmulatedPad) send(ctx context.Context, raw []byte) (apdu.StatusWord, error) {
	p.k.mu.Lock()
	p.k.sent = append(p.k.sent, raw)
	p.k.mu.Unlock()
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return pcsc.SWPINPadRejected, nil
	}
	cmd.Sensitive, cmd.Name = true, "PIN PAD"
	resp, err := p.card.Transmit(ctx, cmd)
	return resp.SW, err
}

// VerifyPINDirect takes one PIN from the keypad into PIN_VERIFY_STRUCTURE's APDU.
func (p *EmulatedPad) VerifyPINDirect(ctx context.Context, s pcsc.VerifyPINStructure) (apdu.StatusWord, error) {
	b, err := s.Bytes()
	if err != nil {
		return 0, err
	}
	if int(binary.LittleEndian.Uint32(b[15:19])) != len(b)-19 {
		return pcsc.SWPINPadRejected, nil
	}
	ext := binary.LittleEndian.Uint16(b[5:7])
	raw, sw := p.insert(b[19:], b[2], b[3], int(ext>>8), int(ext&0xFF), 0, p.k.next())
	if sw != 0 {
		return sw, nil
	}
	return p.send(ctx, raw)
}

// ModifyPINDirect takes the current PIN (when asked), the new one and its
// confirmation (when asked) into PIN_MODIFY_STRUCTURE's APDU.
func (p *EmulatedPad) ModifyPINDirect(ctx context.Context, s pcsc.ModifyPINStructure) (apdu.StatusWord, error) {
	b, err := s.Bytes()
	if err != nil {
		return 0, err
	}
	if int(binary.LittleEndian.Uint32(b[20:24])) != len(b)-24 {
		return pcsc.SWPINPadRejected, nil
	}
	ext := binary.LittleEndian.Uint16(b[7:9])
	min, max := int(ext>>8), int(ext&0xFF)
	confirm, raw := b[9], b[24:]
	var sw apdu.StatusWord
	if confirm&0x02 != 0 {
		if raw, sw = p.insert(raw, b[2], b[3], min, max, int(b[5]), p.k.next()); sw != 0 {
			return sw, nil
		}
	}
	newPIN := p.k.next()
	if confirm&0x01 != 0 && p.k.next() != newPIN {
		return pcsc.SWPINPadMismatch, nil
	}
	if raw, sw = p.insert(raw, b[2], b[3], min, max, int(b[6]), newPIN); sw != 0 {
		return sw, nil
	}
	return p.send(ctx, raw)
}
