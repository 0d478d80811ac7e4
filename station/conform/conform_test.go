package conform_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
	"ssstation/pcsc/pcsctest"
	"ssstation/station/conform"
)

type bed struct {
	vc   *pcsctest.VirtualCard
	sim  *ssse.Card
	set  *profiles.Set
	card *pcsc.Card
	wire *conform.Wire
}

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
	vc := pcsctest.StartCard(t, sim)
	w := &conform.Wire{}
	_, card := vc.Connect(t, w.Trace)
	return &bed{vc: vc, sim: sim, set: set, card: card, wire: w}
}

func (b *bed) run(t *testing.T, o conform.Options) *conform.Report {
	t.Helper()
	o.Card, o.Wire = b.card, b.wire
	if o.Profile == nil {
		o.Profile = b.sim.Profile()
	}
	var rep *conform.Report
	err := b.card.Transaction(context.Background(), func(ctx context.Context) (err error) {
		rep, err = conform.Run(ctx, o)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// conform passes on every sample card, with the test keys (EXTERNAL and
// INTERNAL AUTHENTICATE included) and without keys (the key-guarded
// records then refused as the profile expects); every check carries the
// bytes sent and the wire, and no PIN try is spent.
func TestConformPassesOnEverySampleCard(t *testing.T) {
	for _, image := range []string{"sample-v1", "sample-v2", "sample-v3", "real-v1-t0"} {
		for _, withKeys := range []bool{true, false} {
			name := image + "/keys"
			if !withKeys {
				name = image + "/no-keys"
			}
			t.Run(name, func(t *testing.T) {
				b := newBed(t, image)
				o := conform.Options{}
				if withKeys {
					o.Keys = keys.NewTestKeystore()
				}
				tries := b.sim.Tries()
				var progress int
				o.Progress = func(done, total int, name string) { progress++ }
				rep := b.run(t, o)
				var table bytes.Buffer
				rep.WriteTable(&table, true)
				if !rep.OK || rep.Summary.Fail != 0 {
					t.Fatalf("not conforming:\n%s", table.String())
				}
				if rep.Summary.Pass < 5 || progress != len(rep.Checks)+1 {
					t.Fatalf("summary %+v, progress %d", rep.Summary, progress)
				}
				seen := map[string]bool{}
				for _, c := range rep.Checks {
					seen[strings.Fields(c.Name)[0]] = true
					if c.Verdict == conform.Pass && (c.Command == "" || c.Expected == "" || c.Got == "" || len(c.Wire) < 2) {
						t.Fatalf("check without its bytes: %+v", c)
					}
				}
				for _, want := range []string{"SELECT", "READ", "GET"} {
					if !seen[want] {
						t.Fatalf("no %s check:\n%s", want, table.String())
					}
				}
				if withKeys && !seen["INTERNAL"] {
					t.Fatalf("no INTERNAL AUTHENTICATE with keys:\n%s", table.String())
				}
				if b.sim.Tries() != tries {
					t.Fatalf("a PIN try was spent: %d -> %d", tries, b.sim.Tries())
				}
				holder := b.sim.Image().Holder
				for _, secret := range []string{holder.SSN, holder.Name} {
					if secret != "" && strings.Contains(table.String(), secret) {
						t.Fatalf("holder data in the report")
					}
				}
				js, _ := json.Marshal(rep)
				if holder.SSN != "" && strings.Contains(string(js), holder.SSN) {
					t.Fatal("SSN in the JSON report")
				}
				if testing.Verbose() && image == "sample-v3" && withKeys {
					t.Logf("\n%s", table.String())
				}
			})
		}
	}
}

// One deliberately wrong answer (the control channel's sw-once fault,
// armed just before the command goes out): conform names that command,
// and only that one.
func TestConformNamesTheWrongAnswer(t *testing.T) {
	for _, target := range []string{"READ RECORD " + profiles.ItemExpiryDate, "GET CHALLENGE", "SELECT SSSE"} {
		t.Run(target, func(t *testing.T) {
			b := newBed(t, "sample-v2")
			o := conform.Options{Keys: keys.NewTestKeystore()}
			o.Progress = func(done, total int, name string) {
				if name == target {
					b.vc.Slot.StatusOnce(uint16(apdu.SWRecordNotFound))
				}
			}
			rep := b.run(t, o)
			if rep.OK || len(rep.Failed) != 1 || rep.Failed[0] != target {
				var table bytes.Buffer
				rep.WriteTable(&table, false)
				t.Fatalf("failed %v, want [%s]:\n%s", rep.Failed, target, table.String())
			}
			for _, c := range rep.Checks {
				if c.Name == target && (c.SW != "6A83" || !strings.Contains(c.Detail, "6A83")) {
					t.Fatalf("the failed check does not show the answer: %+v", c)
				}
			}
		})
	}
}

// The profile of another card OS: conform tells which commands disagree
// (here the spec version and the algorithm of a v3 card checked against v2).
func TestConformWithTheWrongProfile(t *testing.T) {
	b := newBed(t, "sample-v3")
	p, _ := b.set.Get("ss-v2-3des-t0")
	rep := b.run(t, conform.Options{Profile: p})
	if rep.OK {
		t.Fatal("a v3 card conforms to the v2 profile")
	}
	joined := strings.Join(rep.Failed, ",")
	if !strings.Contains(joined, "SELECT SSSE") {
		t.Fatalf("failed %v", rep.Failed)
	}
}

// The write-side checks: refused on a personalized card (nothing written),
// and on a blank card the card is written, read back, and left unlocked.
func TestConformDestructive(t *testing.T) {
	raw, err := os.ReadFile("../../demo/holder-v2.json")
	if err != nil {
		t.Fatal(err)
	}
	holder, err := cardapp.DecodeRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	b := newBed(t, "sample-v2")
	rep := b.run(t, conform.Options{Keys: keys.NewTestKeystore(), Destructive: true, Holder: holder})
	if rep.OK || !strings.Contains(strings.Join(rep.Failed, ","), "blank card check") {
		t.Fatalf("personalized card: failed %v", rep.Failed)
	}
	for _, c := range rep.Checks {
		if strings.HasPrefix(c.Name, "personalize") && c.Verdict != conform.Skip {
			t.Fatalf("wrote a personalized card: %+v", c)
		}
	}

	b = newBed(t, "blank-v2")
	rep = b.run(t, conform.Options{Keys: keys.NewTestKeystore(), Destructive: true, Holder: holder})
	var table bytes.Buffer
	rep.WriteTable(&table, false)
	if !rep.OK {
		t.Fatalf("blank card:\n%s", table.String())
	}
	if b.sim.State() == ssse.StateFinalized {
		t.Fatal("conformance locked the card")
	}
	if strings.Contains(table.String(), holder.Holder.SSN) {
		t.Fatal("holder SSN in the report")
	}
}

// A card image with one deliberately wrong record (spec version 2.01 on a
// card of the 2.00 profile): conform names that READ RECORD, and only it.
func TestConformNamesTheWrongRecordOfACardImage(t *testing.T) {
	pcsctest.EnsurePCSCD(t)
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	img, err := ssse.Builtin("sample-v2")
	if err != nil {
		t.Fatal(err)
	}
	img.SpecVersion = "2.01"
	sim, err := ssse.New(img, set)
	if err != nil {
		t.Fatal(err)
	}
	vc := pcsctest.StartCard(t, sim)
	w := &conform.Wire{}
	_, card := vc.Connect(t, w.Trace)
	b := &bed{vc: vc, sim: sim, set: set, card: card, wire: w}
	rep := b.run(t, conform.Options{Keys: keys.NewTestKeystore()})
	want := "READ RECORD " + profiles.ItemSpecVersion
	if rep.OK || len(rep.Failed) != 1 || rep.Failed[0] != want {
		t.Fatalf("failed %v, want [%s]", rep.Failed, want)
	}
	for _, c := range rep.Checks {
		if c.Name == want && !strings.Contains(c.Detail, `"2.01"`) {
			t.Fatalf("%+v", c)
		}
	}
}

// The card pulled in the middle: the command that met the removal fails,
// says the checks after it were not run, and no more is sent.
func TestConformStopsWhenTheCardIsPulled(t *testing.T) {
	b := newBed(t, "sample-v1")
	target := "READ RECORD " + profiles.ItemName
	o := conform.Options{Progress: func(done, total int, name string) {
		if name == target {
			b.vc.Slot.Remove()
		}
	}}
	rep := b.run(t, o)
	last := rep.Checks[len(rep.Checks)-1]
	if rep.OK || last.Name != target || last.Verdict != conform.Fail || !strings.Contains(last.Detail, "not run") {
		t.Fatalf("last check %+v, failed %v", last, rep.Failed)
	}
}
