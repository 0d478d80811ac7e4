package cardapp_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"ssstation/cardapp"
	"ssstation/cardapp/secure"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc/pcsctest"
)

// hostPIN is the PIN as the host path encodes it for VERIFY (secure.EncodePIN):
// a pad must put exactly these bytes on the wire.
func hostPIN(t *testing.T, pin string) []byte {
	t.Helper()
	b, err := secure.EncodePIN(pin)
	if err != nil {
		t.Fatal(err)
	}
	return b
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
			kp := &pcsctest.Keypad{}
			pad := kp.Pad(b.card)
			opts := cardapp.PINPadOptions{}
			if image == "sample-v3" {
				opts.Digits = len(right)
			}
			run := func(f func(ctx context.Context, app *cardapp.App) error) error { return b.op(f) }
			verify := func(pin string) error {
				kp.Type(pin)
				return run(func(ctx context.Context, app *cardapp.App) error { return app.VerifyPINOnPad(ctx, pad, opts) })
			}
			if err := verify(right); err != nil {
				t.Fatalf("right PIN on the pad: %v", err)
			}
			host := hostPIN(t, right)
			if last := kp.Sent()[len(kp.Sent())-1]; !bytes.Equal(last, append([]byte{0x00, 0x20, 0x00, 0x00, byte(len(host))}, host...)) {
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
			kp.Type(right, newPIN, "802469")
			if err := run(func(ctx context.Context, app *cardapp.App) error { return app.ChangePINOnPad(ctx, pad, opts) }); !errors.Is(err, cardapp.ErrPINPadMismatch) {
				t.Fatalf("mismatched confirmation: %v", err)
			}
			kp.Type(right, newPIN, newPIN)
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
	kp := &pcsctest.Keypad{}
	kp.Type(right)
	pad := kp.Pad(b.card)
	err := b.op(func(ctx context.Context, app *cardapp.App) error {
		return app.VerifyPINOnPad(ctx, pad, cardapp.PINPadOptions{})
	})
	if err != nil {
		t.Fatal(err)
	}
	host := hostPIN(t, right)
	if !bytes.Equal(kp.Sent()[0], append([]byte{0x00, 0x20, 0x00, 0x00, byte(len(host))}, host...)) {
		t.Fatalf("sent % X", kp.Sent()[0])
	}
	kp.Type("123") // shorter than the profile's 4
	err = b.op(func(ctx context.Context, app *cardapp.App) error {
		return app.VerifyPINOnPad(ctx, pad, cardapp.PINPadOptions{})
	})
	if !errors.Is(err, cardapp.ErrPINPadLength) || len(kp.Sent()) != 1 {
		t.Fatalf("3 digits: %v (%d sent)", err, len(kp.Sent()))
	}
}
