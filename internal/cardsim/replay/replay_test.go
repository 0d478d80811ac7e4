package replay_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"ssstation/cardapp"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/replay"
	"ssstation/internal/transcript"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
	"ssstation/pcsc/pcsctest"
)

// traceLog keeps what crossed the reader, for failure messages.
type traceLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *traceLog) trace(ev pcsc.TraceEvent) {
	l.mu.Lock()
	l.lines = append(l.lines, ev.String())
	l.mu.Unlock()
}

func (l *traceLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// The Mingwah replay test (issue 7 §7): the card side of the public real
// 1.00 T=0 card trace (card-reference §9), with fictional data in place of
// the holder's, replayed through vpcd and pcscd; the station identifies
// the card and reads exactly the items the trace reads, and every command
// it sends is one the real card answered.
func TestMingwahReplay(t *testing.T) {
	card, err := replay.Load(filepath.Join("testdata", "mingwah-v1-t0.json"))
	if err != nil {
		t.Fatal(err)
	}
	vc := pcsctest.StartCard(t, card)
	log := &traceLog{}
	_, pc := vc.Connect(t, log.trace)
	if pc.Protocol() != pcsc.ProtocolT0 {
		t.Fatalf("protocol %s, want T=0", pcsc.ProtocolName(pc.Protocol()))
	}
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	var id *cardapp.Identification
	var got map[string]string
	err = pc.Transaction(context.Background(), func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, pc, set, cardapp.Options{})
		if err != nil {
			return err
		}
		id = app.Identification()
		got, err = app.ReadItems(ctx, profiles.ItemCardID, profiles.ItemSpecVersion, profiles.ItemCardNumber,
			profiles.ItemSSN, profiles.ItemName, profiles.ItemGender)
		return err
	})
	if err != nil {
		t.Fatalf("read: %v\ntrace:\n%s\nunmatched: %v", err, log, card.Stats().Headers)
	}
	want := map[string]string{
		profiles.ItemCardID:      "639900D1560000050123456789ABCDEF",
		profiles.ItemSpecVersion: "1.00",
		profiles.ItemCardNumber:  "A39990042",
		profiles.ItemSSN:         "63990019800101123X",
		profiles.ItemName:        "赵钱孙",
		profiles.ItemGender:      "1",
	}
	for item, w := range want {
		if got[item] != w {
			t.Errorf("%s = %q, want %q", item, got[item], w)
		}
	}
	if id == nil || id.SpecVersion != "1.00" || id.AlgorithmFromCard || id.ATRKnown {
		t.Errorf("identification %+v: want spec 1.00, no 9F0C, an ATR no profile knows", id)
	}
	if st := card.Stats(); st.Unmatched != 0 || st.Answered == 0 {
		t.Fatalf("replay: %d answered, %d unmatched %v\ntrace:\n%s", st.Answered, st.Unmatched, st.Headers, log)
	}
	t.Logf("trace (fictional data):\n%s", log)
}

// A command the transcript does not hold answers 6D00 and is counted.
func TestUnmatchedCounted(t *testing.T) {
	tr, err := transcript.Load(filepath.Join("testdata", "mingwah-v1-t0.json"))
	if err != nil {
		t.Fatal(err)
	}
	card, err := replay.New(tr)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct{ cmd, want string }{
		{"00 A4 04 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF", "61 18"},
		{"00 C0 00 00 18", "6F 16 84 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF A5 03 88 01 0B 90 00"},
		// Another Le: the recorded 18 bytes fit Le 00; on T=0 a Le that
		// is neither 00 nor their length answers 6C12.
		{"00 B2 01 28 00", "01 10 63 99 00 D1 56 00 00 05 01 23 45 67 89 AB CD EF 90 00"},
		{"00 B2 01 28 20", "6C 12"},
		// The card number was recorded with Le 0E and 11 bytes back: an
		// exact Le 0B matches it too.
		{"00 B2 07 28 0B", "07 09 41 33 39 39 39 30 30 34 32 90 00"},
		{"00 84 00 00 08", "6D 00"},
		{"00 B2 0B 30 03", "6D 00"},
	}
	for _, s := range steps {
		raw, _ := hex(s.cmd)
		if got := transcript.Hex(card.Process(raw)); got != s.want {
			t.Fatalf("%s: %s, want %s", s.cmd, got, s.want)
		}
	}
	if st := card.Stats(); st.Unmatched != 2 || st.Headers[0] != "00 84 00 00" {
		t.Fatalf("stats %+v", st)
	}
}

func hex(s string) ([]byte, error) { return apdu.ParseHex(s) }
