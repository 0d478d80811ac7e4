package diag_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"ssstation/cardapp/keys"
	psamhost "ssstation/cardapp/keys/psam"
	profiles "ssstation/firmware-profiles"
	simpsam "ssstation/internal/cardsim/psam"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc"
	"ssstation/pcsc/pcsctest"
	"ssstation/station/audit"
	"ssstation/station/config"
	"ssstation/station/diag"
	"ssstation/station/journal"
	"ssstation/station/store"
)

func startSample(t *testing.T, image string) (*pcsctest.VirtualCard, *ssse.Card, *profiles.Set) {
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
	return pcsctest.StartCard(t, sim), sim, set
}

// diag on each shipped profile's virtual card, through pcscd: the right
// profile, the PIN tries where the profile can tell them without spending
// one (and none spent), every file answering, the latency test with every
// GET CHALLENGE answered, the transaction test, the test keys answering,
// and no problem found.
func TestDiagOnEachSampleCard(t *testing.T) {
	for _, c := range []struct {
		image, profile string
		tries          int // -1: the profile cannot tell
	}{
		{"sample-v1", "ss-v1-3des", -1},
		{"sample-v2", "ss-v2-3des-t0", 6},
		{"sample-v3", "ss-v3-sm4", 3},
	} {
		t.Run(c.image, func(t *testing.T) {
			vc, sim, set := startSample(t, c.image)
			pc, err := pcsc.Establish()
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Release()
			triesBefore := sim.Tries()
			var progress []int
			cfg := config.Default()
			cfg.DataDir = t.TempDir()
			rep, err := diag.Run(context.Background(), diag.Options{
				PCSC: pc, Readers: []string{vc.Reader}, Profiles: set,
				Keys: keys.NewTestKeystore(), KeysSource: config.ProviderTest, Config: cfg,
				JournalPath: cfg.DataDir + "/journal.db", StorePath: cfg.StorePath(),
				Latency:  7,
				Progress: func(_ string, done, total int) { progress = append(progress, done) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK {
				t.Fatalf("problems: %v", rep.Problems)
			}
			if len(rep.Readers) != 1 || rep.Readers[0].Card == nil {
				t.Fatalf("readers: %+v", rep.Readers)
			}
			rr := rep.Readers[0]
			card := rr.Card
			if card.Identification == nil || card.Identification.Profile != c.profile {
				t.Fatalf("identification %+v (%s)", card.Identification, card.IdentifyError)
			}
			if card.Identification.Reason == "" || card.ATRDecoded == nil {
				t.Fatalf("no reason or decoded ATR: %+v", card)
			}
			if c.tries < 0 {
				if card.PIN != nil || card.PINNote == "" {
					t.Fatalf("v1 PIN: %+v %q", card.PIN, card.PINNote)
				}
			} else if card.PIN == nil || card.PIN.TriesLeft != c.tries {
				t.Fatalf("PIN %+v %q, want %d tries", card.PIN, card.PINNote, c.tries)
			}
			if sim.Tries() != triesBefore {
				t.Fatalf("diag spent a PIN try: %d -> %d", triesBefore, sim.Tries())
			}
			if len(card.Files) != len(sim.Profile().Files) {
				t.Fatalf("files %+v", card.Files)
			}
			for _, f := range card.Files {
				if !f.Answers || !(strings.HasPrefix(f.Command, "00 A4") || strings.HasPrefix(f.Command, "00 B2")) {
					t.Fatalf("file %+v", f)
				}
			}
			l := card.Latency
			if l == nil || l.N != 7 || l.OK != 7 || l.MinMS <= 0 || l.MinMS > l.MedianMS || l.MedianMS > l.MaxMS {
				t.Fatalf("latency %+v", l)
			}
			if len(progress) != 8 || progress[7] != 7 {
				t.Fatalf("progress %v", progress)
			}
			if card.Transaction == nil || !card.Transaction.OK {
				t.Fatalf("transaction %+v", card.Transaction)
			}
			if rr.Features == nil || rr.Features.PINPad.Any() || rr.Protocol == "" || rr.MaxAPDUData < 255 {
				t.Fatalf("reader %+v", rr)
			}
			if !rep.Keys.Configured || !rep.Keys.TestKeys || len(rep.Keys.Keys) == 0 {
				t.Fatalf("keys %+v", rep.Keys)
			}
			if rep.Journal.State != "absent" || rep.Store.State != "absent" {
				t.Fatalf("journal %+v store %+v", rep.Journal, rep.Store)
			}
			var table bytes.Buffer
			rep.WriteTable(&table)
			for _, want := range []string{c.profile, "median", "all good", "PIN pad         none"} {
				if !strings.Contains(table.String(), want) {
					t.Fatalf("table lacks %q:\n%s", want, table.String())
				}
			}
			if _, err := json.Marshal(rep); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A reader asked for that is not connected, and no key provider: the
// first is a problem found, the second a state reported with its meaning.
func TestDiagReportsProblems(t *testing.T) {
	_, _, set := startSample(t, "sample-v1")
	pc, err := pcsc.Establish()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Release()
	rep, err := diag.Run(context.Background(), diag.Options{PCSC: pc, Readers: []string{"no such reader"}, Profiles: set})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "no such reader") {
		t.Fatalf("problems %v", rep.Problems)
	}
	if rep.Keys.Configured || rep.Keys.Note == "" {
		t.Fatalf("keys %+v", rep.Keys)
	}
	rep, err = diag.Run(context.Background(), diag.Options{ServiceError: context.DeadlineExceeded})
	if err != nil || rep.OK || rep.Service.Reachable {
		t.Fatalf("no service: %+v %v", rep, err)
	}
}

// The configuration is shown without the tokens' hashes.
func TestRedactConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Daemon.Tokens = []config.TokenConfig{{Name: "counter", Role: "counter", Hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Origins: []string{"http://127.0.0.1:8080"}}}
	b, _ := json.Marshal(diag.RedactConfig(cfg))
	if strings.Contains(string(b), "9f86d081") || !strings.Contains(string(b), diag.Removed) || !strings.Contains(string(b), "counter") {
		t.Fatalf("%s", b)
	}
}

// With the keys in a PSAM in the second reader, and the station's files
// present: the PSAM reader is listed with its role, the PSAM is present,
// every key the profiles name answers through it, the card is still
// diagnosed, and the journal and the store (audit chain) are read
// read-only and found sound.
func TestDiagWithPSAMAndStationFiles(t *testing.T) {
	vc, _, set := startSample(t, "sample-v3")
	pv := pcsctest.StartCard(t, simpsam.Builtin())
	pc, err := pcsc.Establish()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Release()
	ctx := context.Background()
	pcard, err := pc.Connect(ctx, pv.Reader, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard})
	if err != nil {
		t.Fatal(err)
	}
	defer pcard.Close()
	prov := psamhost.New(pcard)
	defer prov.Close()

	dir := t.TempDir()
	jpath, spath := filepath.Join(dir, "journal.db"), filepath.Join(dir, "station.db")
	j, err := journal.Open(jpath)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	st, err := store.Open(spath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	al, err := audit.Open(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	seq, err := al.Begin(audit.Begin{TokenName: "counter-1", Role: "counter", Reader: "r0", Operation: "read", OpID: "op1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := al.Complete(seq, audit.End{Outcome: audit.OutcomeDone}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	rep, err := diag.Run(ctx, diag.Options{
		PCSC: pc, Readers: []string{vc.Reader}, PSAMReader: pv.Reader, Profiles: set,
		Keys: prov, KeysSource: config.ProviderPSAM, JournalPath: jpath, StorePath: spath, Latency: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("problems %v", rep.Problems)
	}
	roles := map[string]string{}
	for _, r := range rep.Readers {
		roles[r.Name] = r.Role
	}
	if roles[vc.Reader] != "card" || roles[pv.Reader] != "psam" {
		t.Fatalf("roles %v", roles)
	}
	if rep.Keys.PSAMPresent == nil || !*rep.Keys.PSAMPresent || len(rep.Keys.Keys) == 0 {
		t.Fatalf("keys %+v", rep.Keys)
	}
	for _, k := range rep.Keys.Keys {
		if !k.Answers {
			t.Fatalf("key %+v", k)
		}
	}
	if rep.Journal.State != "ok" || rep.Store.State != "ok" || rep.Store.AuditOK == nil || !*rep.Store.AuditOK || rep.Store.Entries != 2 {
		t.Fatalf("journal %+v store %+v", rep.Journal, rep.Store)
	}
}

// Every reader is diagnosed when none is named; a reader without a card
// is still asked for its attributes and features (direct mode).
func TestDiagEveryReaderAndEmptyOne(t *testing.T) {
	vc, _, set := startSample(t, "sample-v1")
	pc, err := pcsc.Establish()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Release()
	rep, err := diag.Run(context.Background(), diag.Options{PCSC: pc, Profiles: set, Latency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Service.Readers != 2 || len(rep.Readers) != 2 {
		t.Fatalf("%+v", rep)
	}
	for _, r := range rep.Readers {
		switch {
		case r.Name == vc.Reader:
			if r.Card == nil || r.Card.Identification == nil {
				t.Fatalf("card reader %+v", r)
			}
		case r.CardPresent || r.Features == nil || r.Features.PINPad.Any():
			t.Fatalf("empty reader %+v", r)
		}
	}
}
