package cardapp_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
)

// Without a key provider (none configured, or keys.None) every operation
// that needs one fails with keys.ErrNoProvider before any APDU: not even
// the SELECT or the card id's read reaches the card (counted by the
// virtual card, through pcscd).
func TestKeyOperationsWithoutKeysSendNothing(t *testing.T) {
	const newPIN = "975318"
	req := &cardapp.PersonalizeRequest{
		Holder: cardapp.HolderData{SSN: "111111198101011110", Name: "张三", Gender: "1", Nationality: "01",
			Birthplace: "639900", BirthDate: "19810101"},
		Card: cardapp.CardData{CardType: "1", InitOrg: "410100813475", IssueDate: "20201001",
			ExpiryDate: "20301001", CardNumber: "X00000019"},
	}
	ops := []struct {
		name string
		f    func(ctx context.Context, app *cardapp.App) error
	}{
		{"reload PIN", func(ctx context.Context, app *cardapp.App) error { return app.ReloadPIN(ctx, newPIN, newPIN) }},
		{"unblock PIN", func(ctx context.Context, app *cardapp.App) error { return app.UnblockPIN(ctx) }},
		{"block temporary", func(ctx context.Context, app *cardapp.App) error { return app.Block(ctx, cardapp.BlockTemporary) }},
		{"block permanent", func(ctx context.Context, app *cardapp.App) error { return app.Block(ctx, cardapp.BlockPermanent) }},
		{"block card", func(ctx context.Context, app *cardapp.App) error { return app.Block(ctx, cardapp.BlockCard) }},
		{"unblock application", func(ctx context.Context, app *cardapp.App) error { return app.Unblock(ctx) }},
		{"personalize", func(ctx context.Context, app *cardapp.App) error {
			_, err := app.Personalize(ctx, req, true, nil)
			return err
		}},
		{"lock", func(ctx context.Context, app *cardapp.App) error { _, err := app.Lock(ctx, req, nil); return err }},
		{"activate", func(ctx context.Context, app *cardapp.App) error {
			_, err := app.Activate(ctx, newPIN, newPIN, nil)
			return err
		}},
		{"verify card", func(ctx context.Context, app *cardapp.App) error {
			_, err := app.VerifyCard(ctx, time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
			return err
		}},
	}
	b := newBed(t, "sample-v2")
	for _, prov := range []keys.Provider{nil, keys.None} {
		for _, op := range ops {
			before := b.sim.APDUCount()
			err := b.rec.err(b.card.Transaction(context.Background(), func(ctx context.Context) error {
				app, err := cardapp.NewApp(b.card, b.sim.Profile(), cardapp.Options{Keys: prov})
				if err != nil {
					return err
				}
				return op.f(ctx, app)
			}))
			if !errors.Is(err, keys.ErrNoProvider) {
				t.Errorf("%s with provider %v: %v, want keys.ErrNoProvider", op.name, prov, err)
			}
			if n := b.sim.APDUCount() - before; n != 0 {
				t.Errorf("%s with provider %v: %d APDUs reached the card", op.name, prov, n)
			}
		}
	}
}

// withActivationSteps returns a profile set where profile name's
// activation runs steps.
func withActivationSteps(t *testing.T, set *profiles.Set, name, steps string) *profiles.Profile {
	t.Helper()
	p, ok := set.Get(name)
	if !ok {
		t.Fatalf("no profile %s", name)
	}
	b, err := os.ReadFile(filepath.Join("..", "firmware-profiles", p.SourceFile))
	if err != nil {
		t.Fatal(err)
	}
	const was = "steps: [internal_authenticate, pin_change_from_initial]"
	if !strings.Contains(string(b), was) {
		t.Fatalf("%s: activation steps changed, update this test", p.SourceFile)
	}
	dir := t.TempDir()
	s := strings.Replace(string(b), was, "steps: ["+steps+"]", 1)
	if err := os.WriteFile(filepath.Join(dir, p.SourceFile), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	set2, err := profiles.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	p2, ok := set2.Get(name)
	if !ok || len(p2.Activation.Steps) != 3 {
		t.Fatalf("override of %s not loaded: %+v", name, p2)
	}
	return p2
}

// countHeaders counts the commands whose header starts with prefix.
func countHeaders(hs []string, prefix string) int {
	n := 0
	for _, h := range hs {
		if strings.HasPrefix(h, prefix) {
			n++
		}
	}
	return n
}

// Activation proves the card genuine once: when the profile reads the
// basic information first (iReadCardBas ends with INTERNAL AUTHENTICATE
// when keys are configured), and when the caller read the card on the same
// App before, the internal_authenticate step sends no second one.
func TestActivationAuthenticatesOnce(t *testing.T) {
	const pin = "802468"
	t.Run("read_basic_info step", func(t *testing.T) {
		b := newBed(t, "delivered-v3")
		p := withActivationSteps(t, b.set, b.sim.Profile().Name, "read_basic_info, internal_authenticate, pin_change_from_initial")
		b.rec.clear()
		var res *cardapp.ActivateResult
		err := b.rec.err(b.card.Transaction(context.Background(), func(ctx context.Context) error {
			app, err := cardapp.NewApp(b.card, p, b.opts)
			if err != nil {
				return err
			}
			res, err = app.Activate(ctx, pin, pin, nil)
			return err
		}))
		if err != nil || !res.PINSet {
			t.Fatalf("activate: %+v, %v", res, err)
		}
		hs := b.rec.headers()
		checkOnceBetween(t, hs)
		if b.sim.PIN() != pin {
			t.Fatal("the PIN was not set")
		}
	})
	t.Run("read then activate", func(t *testing.T) {
		b := newBed(t, "delivered-v3")
		b.rec.clear()
		err := b.op(func(ctx context.Context, app *cardapp.App) error {
			info, err := app.ReadBasicInfo(ctx)
			if err != nil {
				return err
			}
			if !info.GenuineChecked {
				t.Error("the read did not check the card genuine")
			}
			_, err = app.Activate(ctx, pin, pin, nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		checkOnceBetween(t, b.rec.headers())
	})
}

// checkOnceBetween asserts one INTERNAL AUTHENTICATE, after every READ
// RECORD and before CHANGE PIN.
func checkOnceBetween(t *testing.T, hs []string) {
	t.Helper()
	ia, lastRead, change := -1, -1, -1
	for i, h := range hs {
		switch {
		case strings.HasPrefix(h, "00 88"):
			ia = i
		case strings.HasPrefix(h, "00 B2"):
			lastRead = i
		case strings.HasPrefix(h, "80 5E"):
			change = i
		}
	}
	if n := countHeaders(hs, "00 88"); n != 1 {
		t.Fatalf("%d INTERNAL AUTHENTICATE sent, want 1: %v", n, hs)
	}
	if lastRead < 0 || !(lastRead < ia && ia < change) {
		t.Fatalf("sequence %v: want the reads, then INTERNAL AUTHENTICATE, then CHANGE PIN", hs)
	}
}
