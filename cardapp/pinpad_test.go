package cardapp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"ssstation/cardapp"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
)

// emulatedPad is a PC/SC part 10 PIN pad reader in front of the real card
// (through pcscd): no virtual PIN pad exists, so this fake sits at the pcsc
// interface. It reads the structure from its BYTES, at the offsets part 10
// gives (not from the Go struct), takes the digits "typed" on its keypad,
// formats them as bmFormatString / bmPINBlockString say, writes them over
// the PIN block at the offsets given, and sends the APDU to the card. A
// structure built wrong sends a wrong APDU, and the card says so.
type emulatedPad struct {
	card  *pcsc.Card
	typed []string // the holder's key presses: one entry per PIN asked
	sent  [][]byte // the APDUs sent to the card
}

func (p *emulatedPad) PINPad(context.Context) pcsc.PINPadCaps {
	return pcsc.PINPadCaps{Verify: true, Modify: true}
}

func (p *emulatedPad) next() string {
	s := p.typed[0]
	p.typed = p.typed[1:]
	return s
}

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
func (p *emulatedPad) insert(apduBytes []byte, format, block byte, min, max int, offset int, pin string) ([]byte, apdu.StatusWord) {
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
	d := bcd(pin, out[pos+size-1]&0x0F)
	copy(out[pos:], d)
	return out, 0
}

func (p *emulatedPad) send(ctx context.Context, raw []byte) (apdu.StatusWord, error) {
	p.sent = append(p.sent, raw)
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return pcsc.SWPINPadRejected, nil
	}
	cmd.Sensitive, cmd.Name = true, "PIN PAD"
	resp, err := p.card.Transmit(ctx, cmd)
	return resp.SW, err
}

func (p *emulatedPad) VerifyPINDirect(ctx context.Context, s pcsc.VerifyPINStructure) (apdu.StatusWord, error) {
	b, err := s.Bytes()
	if err != nil {
		return 0, err
	}
	if int(binary.LittleEndian.Uint32(b[15:19])) != len(b)-19 {
		return pcsc.SWPINPadRejected, nil
	}
	ext := binary.LittleEndian.Uint16(b[5:7])
	raw, sw := p.insert(b[19:], b[2], b[3], int(ext>>8), int(ext&0xFF), 0, p.next())
	if sw != 0 {
		return sw, nil
	}
	return p.send(ctx, raw)
}

func (p *emulatedPad) ModifyPINDirect(ctx context.Context, s pcsc.ModifyPINStructure) (apdu.StatusWord, error) {
	b, err := s.Bytes()
	if err != nil {
		return 0, err
	}
	if int(binary.LittleEndian.Uint32(b[20:24])) != len(b)-24 {
		return pcsc.SWPINPadRejected, nil
	}
	ext := binary.LittleEndian.Uint16(b[7:9])
	min, max := int(ext>>8), int(ext&0xFF)
	confirm := b[9]
	raw := b[24:]
	var sw apdu.StatusWord
	if confirm&0x02 != 0 {
		if raw, sw = p.insert(raw, b[2], b[3], min, max, int(b[5]), p.next()); sw != 0 {
			return sw, nil
		}
	}
	newPIN := p.next()
	if confirm&0x01 != 0 && p.next() != newPIN {
		return pcsc.SWPINPadMismatch, nil
	}
	if raw, sw = p.insert(raw, b[2], b[3], min, max, int(b[6]), newPIN); sw != 0 {
		return sw, nil
	}
	return p.send(ctx, raw)
}

func builtinProfile(t *testing.T, name string) *profiles.Profile {
	t.Helper()
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := set.Get(name)
	if !ok {
		t.Fatalf("no profile %s", name)
	}
	return p
}

// The v1 profile (6 digits, F pad) gives these structures, byte for byte:
// the APDU in them is exactly what the host path sends for a 6-digit PIN.
func TestPINPadStructuresForV1Profile(t *testing.T) {
	p := builtinProfile(t, "ss-v1-3des")
	v, err := cardapp.VerifyPINPadStructure(p, cardapp.PINPadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := v.Bytes()
	want := []byte{
		0x1E, 0x1E, // bTimerOut, bTimerOut2: 30 s
		0x81,       // bmFormatString: bytes, position 0, left-justified, BCD
		0x03,       // bmPINBlockString: no length field, 3-byte block
		0x00,       // bmPINLengthFormat
		0x06, 0x06, // wPINMaxExtraDigit: 6..6
		0x02,       // bEntryValidationCondition: validation key
		0x01,       // bNumberMessage
		0x04, 0x08, // wLangId 0x0804
		0x00,             // bMsgIndex
		0x00, 0x00, 0x00, // bTeoPrologue
		0x08, 0x00, 0x00, 0x00, // ulDataLength
		0x00, 0x20, 0x00, 0x00, 0x03, 0xFF, 0xFF, 0xFF, // VERIFY, PIN block of F
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("verify structure\n got % X\nwant % X", got, want)
	}
	m, err := cardapp.ChangePINPadStructure(p, cardapp.PINPadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = m.Bytes()
	want = []byte{
		0x1E, 0x1E, 0x81, 0x03, 0x00,
		0x00,       // bInsertionOffsetOld: first data byte
		0x04,       // bInsertionOffsetNew: after the old PIN and FF
		0x06, 0x06, // wPINMaxExtraDigit
		0x03,       // bConfirmPIN: current PIN, new PIN twice
		0x02, 0x01, // bEntryValidationCondition, bNumberMessage
		0x04, 0x08, // wLangId
		0x00, 0x01, 0x02, // bMsgIndex1..3
		0x00, 0x00, 0x00, // bTeoPrologue
		0x0C, 0x00, 0x00, 0x00, // ulDataLength 12
		0x80, 0x5E, 0x01, 0x00, 0x07, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("modify structure\n got % X\nwant % X", got, want)
	}
}

// A variable-length profile: verify leaves Lc to the reader, a fixed
// length gives that block, change without a fixed length is refused, and
// a length out of the policy is refused before anything is built.
func TestPINPadStructuresForVariableLength(t *testing.T) {
	p := builtinProfile(t, "ss-v3-sm4") // 4..16 digits
	v, err := cardapp.VerifyPINPadStructure(p, cardapp.PINPadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.PINBlockString != 0 || v.MinDigits != 4 || v.MaxDigits != 16 || !bytes.Equal(v.APDU, []byte{0x00, 0x20, 0x00, 0x00}) {
		t.Fatalf("%+v", v)
	}
	v, err = cardapp.VerifyPINPadStructure(p, cardapp.PINPadOptions{Digits: 7})
	if err != nil {
		t.Fatal(err)
	}
	if v.PINBlockString != 4 || !bytes.Equal(v.APDU, []byte{0x00, 0x20, 0x00, 0x00, 0x04, 0xFF, 0xFF, 0xFF, 0xFF}) {
		t.Fatalf("%+v", v)
	}
	if _, err := cardapp.ChangePINPadStructure(p, cardapp.PINPadOptions{}); !errors.Is(err, cardapp.ErrNotSupported) {
		t.Fatalf("change without a fixed length: %v", err)
	}
	if _, err := cardapp.VerifyPINPadStructure(p, cardapp.PINPadOptions{Digits: 17}); !errors.Is(err, cardapp.ErrPINLength) {
		t.Fatalf("17 digits: %v", err)
	}
}

// Through pcscd: the PIN typed on the (emulated) pad reaches the real
// virtual card inside the APDU the structure carries; the card accepts the
// right PIN, counts a wrong one, changes the PIN, and the reader's own
// outcomes come back typed. The host never held a PIN: the test's pad
// holds the key presses.
func TestPINPadVerifyAndChangeOnVirtualCard(t *testing.T) {
	for _, image := range []string{"sample-v1", "sample-v3"} {
		t.Run(image, func(t *testing.T) {
			img, _ := ssse.Builtin(image)
			right := img.PIN.Value
			b := newBed(t, image)
			pad := &emulatedPad{card: b.card}
			opts := cardapp.PINPadOptions{}
			if image == "sample-v3" {
				opts.Digits = len(right)
			}
			run := func(f func(ctx context.Context, app *cardapp.App) error) error { return b.op(f) }
			verify := func(pin string) error {
				pad.typed = []string{pin}
				return run(func(ctx context.Context, app *cardapp.App) error { return app.VerifyPINOnPad(ctx, pad, opts) })
			}
			if err := verify(right); err != nil {
				t.Fatalf("right PIN on the pad: %v", err)
			}
			host := bcd(right, 0x0F)
			if last := pad.sent[len(pad.sent)-1]; !bytes.Equal(last, append([]byte{0x00, 0x20, 0x00, 0x00, byte(len(host))}, host...)) {
				t.Fatalf("the pad sent % X, the host path sends the same PIN as 00 20 00 00 %02X % X", last, len(host), host)
			}
			wrong := "975310"
			if wrong == right {
				t.Fatal("the sample PIN is the test's wrong PIN")
			}
			var wp *cardapp.WrongPIN
			if err := verify(wrong); !errors.As(err, &wp) || wp.Retries != b.sim.Tries() {
				t.Fatalf("wrong PIN: %v (card tries %d)", err, b.sim.Tries())
			}
			if err := verify(right[:len(right)-1]); !errors.Is(err, cardapp.ErrPINPadLength) {
				t.Fatalf("short PIN: %v", err)
			}
			newPIN := "802468"
			if len(right) != 6 {
				t.Fatalf("sample PIN of %d digits", len(right))
			}
			pad.typed = []string{right, newPIN, "802469"}
			if err := run(func(ctx context.Context, app *cardapp.App) error { return app.ChangePINOnPad(ctx, pad, opts) }); !errors.Is(err, cardapp.ErrPINPadMismatch) {
				t.Fatalf("mismatched confirmation: %v", err)
			}
			pad.typed = []string{right, newPIN, newPIN}
			if err := run(func(ctx context.Context, app *cardapp.App) error { return app.ChangePINOnPad(ctx, pad, opts) }); err != nil {
				t.Fatalf("change on the pad: %v", err)
			}
			if b.sim.PIN() != newPIN {
				t.Fatal("the card's PIN did not change")
			}
			if err := verify(newPIN); err != nil {
				t.Fatalf("new PIN: %v", err)
			}
			if leaks := b.rec.leaks(right, newPIN, wrong); len(leaks) > 0 {
				t.Fatalf("PINs in traces or errors: %v", leaks)
			}
		})
	}
}

// A reader without a PIN pad is refused before the card is touched.
func TestPINPadRefusedWithoutPad(t *testing.T) {
	b := newBed(t, "sample-v1")
	err := b.op(func(ctx context.Context, app *cardapp.App) error {
		return app.VerifyPINOnPad(ctx, b.card, cardapp.PINPadOptions{})
	})
	if !errors.Is(err, cardapp.ErrNoPINPad) {
		t.Fatalf("vpcd reader: %v", err)
	}
}

// A variable-length profile (4..16 digits): the reader is left to insert
// the digits and set Lc (block size 0). With a reader that does so, the
// APDU is the host path's for the PIN's own length, and the card takes it.
func TestPINPadVariableLengthVerify(t *testing.T) {
	img, _ := ssse.Builtin("sample-v3")
	right := img.PIN.Value
	b := newBed(t, "sample-v3")
	pad := &emulatedPad{card: b.card, typed: []string{right}}
	err := b.op(func(ctx context.Context, app *cardapp.App) error {
		return app.VerifyPINOnPad(ctx, pad, cardapp.PINPadOptions{})
	})
	if err != nil {
		t.Fatal(err)
	}
	host := bcd(right, 0x0F)
	if !bytes.Equal(pad.sent[0], append([]byte{0x00, 0x20, 0x00, 0x00, byte(len(host))}, host...)) {
		t.Fatalf("sent % X", pad.sent[0])
	}
	pad.typed = []string{"123"} // shorter than the profile's 4
	err = b.op(func(ctx context.Context, app *cardapp.App) error {
		return app.VerifyPINOnPad(ctx, pad, cardapp.PINPadOptions{})
	})
	if !errors.Is(err, cardapp.ErrPINPadLength) || len(pad.sent) != 1 {
		t.Fatalf("3 digits: %v (%d sent)", err, len(pad.sent))
	}
}
