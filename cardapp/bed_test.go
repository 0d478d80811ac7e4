package cardapp_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc"
	"ssstation/pcsc/pcsctest"
)

const (
	terminalNo = "410100813475"
	deviceNo   = "终端设备号"
)

// recorder keeps everything a test's operations wrote to traces, card
// logs and error texts, for the leak checks, and counts APDUs.
type recorder struct {
	mu     sync.Mutex
	lines  []string
	apdus  int
	getRes int
	sws    []string
}

func (r *recorder) trace(ev pcsc.TraceEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, ev.String())
	if ev.Name == "GET RESPONSE" {
		r.getRes++
	} else {
		r.apdus++
	}
	r.sws = append(r.sws, ev.SW.String())
}

func (r *recorder) logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func (r *recorder) err(err error) error {
	if err != nil {
		r.mu.Lock()
		r.lines = append(r.lines, err.Error())
		r.mu.Unlock()
	}
	return err
}

func (r *recorder) reset() (apdus int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.apdus
	r.apdus, r.getRes, r.sws = 0, 0, nil
	return n
}

// leaks returns the recorded lines that contain any of secrets, in any of
// the forms they travel in (digits, spaced or packed BCD hex).
func (r *recorder) leaks(secrets ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, line := range r.lines {
		packed := strings.ReplaceAll(line, " ", "")
		for _, s := range secrets {
			if s == "" {
				continue
			}
			if strings.Contains(line, s) || strings.Contains(packed, s) {
				out = append(out, fmt.Sprintf("%q contains a secret", line))
			}
		}
	}
	return out
}

type bed struct {
	t    *testing.T
	vc   *pcsctest.VirtualCard
	sim  *ssse.Card
	card *pcsc.Card
	rec  *recorder
	set  *profiles.Set
	opts cardapp.Options
}

// newBed puts a built-in cardsim card into a virtual reader of this
// process's pcscd and connects to it through PC/SC.
func newBed(t *testing.T, image string) *bed {
	t.Helper()
	pcsctest.EnsurePCSCD(t)
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	img, err := ssse.Builtin(image)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := ssse.New(img, set)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	vc := pcsctest.StartCard(t, sim)
	vc.Slot.SetLogf(rec.logf)
	_, card := vc.Connect(t, rec.trace)
	return &bed{t: t, vc: vc, sim: sim, card: card, rec: rec, set: set,
		opts: cardapp.Options{Keys: keys.NewTestKeystore()}}
}

// op runs body in one transaction on an identified card, as the station does.
func (b *bed) op(body func(ctx context.Context, app *cardapp.App) error) error {
	return b.rec.err(b.card.Transaction(context.Background(), func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, b.card, b.set, b.opts)
		if err != nil {
			return err
		}
		return body(ctx, app)
	}))
}

// reconnect opens a new connection after the card was pulled and put back.
func (b *bed) reconnect() {
	b.t.Helper()
	if err := b.vc.WaitPresence(true, 10e9); err != nil {
		b.t.Fatal(err)
	}
	_, b.card = b.vc.Connect(b.t, b.rec.trace)
}
