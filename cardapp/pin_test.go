package cardapp_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"ssstation/cardapp"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc/apdu"
)

// Every PIN outcome through the real stack, then the leak check: none of
// the PIN strings used here appears in any captured trace, card log or
// error text.
func TestPINOutcomesAndNoLeaks(t *testing.T) {
	const (
		wrong   = "975310"
		newPIN  = "802468"
		newPIN2 = "913579"
		newPIN3 = "420864"
		initial = "123456"
	)
	img, _ := ssse.Builtin("sample-v3")
	right := img.PIN.Value
	b := newBed(t, "sample-v3") // 3 tries, empty VERIFY reports them
	ctx := context.Background()
	pinOp := func(f func(ctx context.Context, app *cardapp.App) error) error { return b.op(f) }

	tries := func() *cardapp.PINStatus {
		t.Helper()
		var st *cardapp.PINStatus
		if err := pinOp(func(ctx context.Context, app *cardapp.App) (err error) { st, err = app.PINTries(ctx); return }); err != nil {
			t.Fatal(err)
		}
		return st
	}
	verify := func(pin string) error {
		return pinOp(func(ctx context.Context, app *cardapp.App) error { return app.VerifyPIN(ctx, pin) })
	}

	if st := tries(); st.TriesLeft != 3 || st.Blocked {
		t.Fatalf("tries at start: %+v", st)
	}
	if err := verify(right); err != nil {
		t.Fatalf("right PIN: %v", err)
	}
	var wp *cardapp.WrongPIN
	if err := verify(wrong); !errors.As(err, &wp) || wp.Retries != 2 || cardapp.LegacyCode(err) != -51 {
		t.Fatalf("first wrong PIN: %v (code %d, want -51)", err, cardapp.LegacyCode(err))
	}
	if st := tries(); st.TriesLeft != 2 {
		t.Fatalf("tries after one wrong: %+v", st)
	}
	if err := verify(wrong); !errors.As(err, &wp) || wp.Retries != 1 {
		t.Fatalf("second wrong PIN: %v", err)
	}
	if err := verify(wrong); !errors.Is(err, cardapp.ErrPINBlocked) {
		t.Fatalf("third wrong PIN: %v", err)
	}
	if err := verify(right); !errors.Is(err, cardapp.ErrPINBlocked) || cardapp.LegacyCode(err) != -52 {
		t.Fatalf("right PIN on a blocked card: %v (code %d, want -52)", err, cardapp.LegacyCode(err))
	}
	if st := tries(); !st.Blocked {
		t.Fatalf("tries when blocked: %+v", st)
	}

	// Policy, before any APDU is sent.
	policy := []struct {
		name string
		f    func(ctx context.Context, app *cardapp.App) error
		want error
	}{
		{"initial PIN as the new one", func(ctx context.Context, app *cardapp.App) error { return app.ChangePIN(ctx, right, initial, initial) }, cardapp.ErrPINInitial},
		{"entries differ", func(ctx context.Context, app *cardapp.App) error { return app.ChangePIN(ctx, right, newPIN, newPIN2) }, cardapp.ErrPINMismatch},
		{"not digits", func(ctx context.Context, app *cardapp.App) error { return app.ReloadPIN(ctx, "12a456", "") }, cardapp.ErrPINIllegalChars},
		{"too short", func(ctx context.Context, app *cardapp.App) error { return app.ReloadPIN(ctx, "12", "") }, cardapp.ErrPINLength},
		{"same as old", func(ctx context.Context, app *cardapp.App) error { return app.ChangePIN(ctx, newPIN, newPIN, newPIN) }, cardapp.ErrPINSameAsOld},
		// Issue 8 §9: an empty second entry never confirms a PIN.
		{"change, empty confirmation", func(ctx context.Context, app *cardapp.App) error { return app.ChangePIN(ctx, right, newPIN, "") }, cardapp.ErrPINMismatch},
		{"reload, empty confirmation", func(ctx context.Context, app *cardapp.App) error { return app.ReloadPIN(ctx, newPIN, "") }, cardapp.ErrPINMismatch},
		{"activate, empty confirmation", func(ctx context.Context, app *cardapp.App) error {
			_, err := app.Activate(ctx, newPIN, "", nil)
			return err
		}, cardapp.ErrPINMismatch},
		{"initial PIN to transact", func(ctx context.Context, app *cardapp.App) error { return app.VerifyPIN(ctx, initial) }, cardapp.ErrPINInitialNoUse},
	}
	for _, p := range policy {
		before := b.sim.APDUCount()
		err := b.rec.err(b.card.Transaction(ctx, func(ctx context.Context) error {
			app, err := cardapp.NewApp(b.card, b.sim.Profile(), b.opts)
			if err != nil {
				return err
			}
			return p.f(ctx, app)
		}))
		if !errors.Is(err, p.want) {
			t.Fatalf("%s: %v, want %v", p.name, err, p.want)
		}
		if n := b.sim.APDUCount() - before; n != 0 {
			t.Fatalf("%s: %d APDUs reached the card before the policy refused", p.name, n)
		}
	}

	// Unblock resets the try counter only: the PIN stays the holder's
	// (card-reference §9).
	if err := pinOp(func(ctx context.Context, app *cardapp.App) error { return app.UnblockPIN(ctx) }); err != nil {
		t.Fatalf("unblock: %v", err)
	}
	if st := tries(); st.TriesLeft != 3 || st.Blocked {
		t.Fatalf("tries after unblock: %+v", st)
	}
	if b.sim.PIN() != right {
		t.Fatal("unblock changed the PIN")
	}
	if err := verify(right); err != nil {
		t.Fatalf("verify the old PIN after unblock: %v", err)
	}
	if err := pinOp(func(ctx context.Context, app *cardapp.App) error { return app.ChangePIN(ctx, right, newPIN2, newPIN2) }); err != nil {
		t.Fatalf("change: %v", err)
	}
	var wp2 *cardapp.WrongPIN
	if err := pinOp(func(ctx context.Context, app *cardapp.App) error { return app.ChangePIN(ctx, wrong, newPIN3, newPIN3) }); !errors.As(err, &wp2) || wp2.Retries != 2 {
		t.Fatalf("change with a wrong old PIN: %v", err)
	}
	if err := pinOp(func(ctx context.Context, app *cardapp.App) error { return app.ReloadPIN(ctx, newPIN3, newPIN3) }); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if err := verify(newPIN3); err != nil {
		t.Fatalf("verify after reload: %v", err)
	}
	if b.sim.PIN() != newPIN3 {
		t.Fatal("the card's PIN is not the reloaded one")
	}

	// A locked application answers 9303 to everything.
	lb := newBed(t, "locked-v2")
	err := lb.op(func(ctx context.Context, app *cardapp.App) error { return app.VerifyPIN(ctx, right) })
	var sw apdu.StatusWord
	if !errors.Is(err, cardapp.ErrApplicationLocked) || !errors.As(err, &sw) || sw != apdu.SWAppLocked {
		t.Fatalf("locked application: %v", err)
	}

	// The leak check, over everything both cards' tests produced.
	for _, r := range []*recorder{b.rec, lb.rec} {
		if leaks := r.leaks(right, wrong, newPIN, newPIN2, newPIN3, initial); len(leaks) > 0 {
			t.Fatalf("PINs leaked:\n%s", strings.Join(leaks, "\n"))
		}
	}
	if len(b.rec.lines) < 50 {
		t.Fatalf("only %d lines captured: the leak check saw too little", len(b.rec.lines))
	}
	t.Logf("leak check over %d captured lines", len(b.rec.lines)+len(lb.rec.lines))
}

// PIN reload runs the way SI_3rdCard does it (card-reference §9):
// EXTERNAL AUTHENTICATE 06, SELECT SSSE again, GET CHALLENGE, 84 24 00 01
// 14; the card keeps the authentication across the re-selection, the new
// PIN works, and the session resets the card at the end so the key
// authentication does not outlive the operation.
func TestPINReloadSequence(t *testing.T) {
	for _, image := range []string{"sample-v2", "real-v1-t0"} {
		t.Run(image, func(t *testing.T) {
			const newPIN = "975318"
			b := newBed(t, image)
			resets := b.vc.Slot.Stats().Resets
			b.rec.clear()
			if err := b.op(func(ctx context.Context, app *cardapp.App) error { return app.ReloadPIN(ctx, newPIN, newPIN) }); err != nil {
				t.Fatalf("reload: %v", err)
			}
			var seq []string
			for _, h := range b.rec.headers() {
				if h == "00 C0 00 00" {
					continue // T=0 transport
				}
				seq = append(seq, h)
			}
			i := slices.Index(seq, "00 82 00 06")
			want := []string{"00 82 00 06", "00 A4 04 00", "00 84 00 00", "84 24 00 01"}
			if i < 0 || len(seq) != i+len(want) || !slices.Equal(seq[i:], want) {
				t.Fatalf("reload sent %v, want it to end with %v", seq, want)
			}
			if b.sim.PIN() != newPIN {
				t.Fatal("the card's PIN is not the reloaded one")
			}
			if b.vc.Slot.Stats().Resets == resets {
				t.Fatal("the session did not reset the card after the reload")
			}
			if leaks := b.rec.leaks(newPIN); len(leaks) > 0 {
				t.Fatalf("PIN leaked:\n%s", strings.Join(leaks, "\n"))
			}
		})
	}
}

// CHANGE PIN leaves no verified PIN behind: the session resets the card
// when the operation ends (sample-v3 reports the verified state on an
// empty VERIFY: 9000 when verified).
func TestChangePINResetsAtEnd(t *testing.T) {
	img, _ := ssse.Builtin("sample-v3")
	b := newBed(t, "sample-v3")
	resets := b.vc.Slot.Stats().Resets
	if err := b.op(func(ctx context.Context, app *cardapp.App) error {
		return app.ChangePIN(ctx, img.PIN.Value, "802468", "802468")
	}); err != nil {
		t.Fatalf("change: %v", err)
	}
	if b.vc.Slot.Stats().Resets == resets {
		t.Fatal("no reset after CHANGE PIN")
	}
	var st *cardapp.PINStatus
	if err := b.op(func(ctx context.Context, app *cardapp.App) (err error) { st, err = app.PINTries(ctx); return }); err != nil {
		t.Fatal(err)
	}
	if st.Verified || st.TriesLeft != 3 {
		t.Fatalf("after CHANGE PIN: %+v, want not verified, 3 tries", st)
	}
	if b.sim.PIN() != "802468" {
		t.Fatal("PIN not changed")
	}
}

// CheckNewPIN, without a card: the second entry must equal the PIN, and an
// empty one never confirms it (issue 8 §9).
func TestCheckNewPINNeedsConfirmation(t *testing.T) {
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := set.Get("ss-v3-sm4")
	if !ok {
		t.Fatal("no ss-v3-sm4 profile")
	}
	for _, c := range []struct {
		pin, confirm string
		want         error
	}{
		{"802468", "802468", nil},
		{"802468", "", cardapp.ErrPINMismatch},
		{"802468", "802469", cardapp.ErrPINMismatch},
		{"", "", cardapp.ErrPINMissing},
		{p.PIN.Initial, p.PIN.Initial, cardapp.ErrPINInitial},
	} {
		err := cardapp.CheckNewPIN(p, c.pin, c.confirm)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("CheckNewPIN(%q, %q) = %v, want %v", c.pin, c.confirm, err, c.want)
		}
	}
}
