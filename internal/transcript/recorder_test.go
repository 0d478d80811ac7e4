package transcript_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	"ssstation/cardapp/records"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/replay"
	"ssstation/internal/cardsim/ssse"
	"ssstation/internal/transcript"
	"ssstation/pcsc"
	"ssstation/pcsc/pcsctest"
)

// fullRead identifies the card and reads everything, as `sscard info
// --full` does.
func fullRead(t *testing.T, s cardapp.Session, card *pcsc.Card, opts cardapp.Options) *cardapp.BasicInfo {
	t.Helper()
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	var info *cardapp.BasicInfo
	err = card.Transaction(context.Background(), func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, s, set, opts)
		if err != nil {
			return err
		}
		info, err = app.ReadFullInfo(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// Record a session with a card through pcscd, redact it, replay the
// redacted transcript through pcscd: the same read flow decodes it, with
// fictional values of the same shape in place of every personal one, no
// personal value is left in the file, PIN and key data are masked, and no
// command goes unmatched.
func TestRecordRedactReplay(t *testing.T) {
	for _, name := range []string{"real-v1-t0", "sample-v2"} {
		t.Run(name, func(t *testing.T) {
			img, err := ssse.Builtin(name)
			if err != nil {
				t.Fatal(err)
			}
			sim, err := ssse.New(img, nil)
			if err != nil {
				t.Fatal(err)
			}
			vc := pcsctest.StartCard(t, sim)
			rec := transcript.NewRecorder()
			_, card := vc.Connect(t, rec.Trace)
			orig := fullRead(t, rec.Session(card), card, cardapp.Options{Keys: keys.NewTestKeystore()})
			if !orig.GenuineChecked {
				t.Fatal("the recorded flow did not prove the card genuine: no INTERNAL AUTHENTICATE to mask")
			}
			tr, err := rec.Transcript(card.ATR(), card.Protocol(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var file bytes.Buffer
			if err := tr.Encode(&file); err != nil {
				t.Fatal(err)
			}
			text := file.String()

			// No personal value survives, in text or in hex.
			nameGBK, _ := records.Encode(records.TypeText, mustGBKLen(t, img.Holder.Name), img.Holder.Name)
			for _, secret := range []string{
				img.Holder.SSN, hexOf([]byte(img.Holder.SSN)), hexOf(nameGBK), img.CardNumber,
				hexOf([]byte(img.CardNumber)), hexOf(sim.CardID()[8:]), hexOf(bcdDate(img.Holder.BirthDate)),
			} {
				if strings.Contains(text, secret) || strings.Contains(strings.ReplaceAll(text, " ", ""), strings.ReplaceAll(secret, " ", "")) {
					t.Errorf("the transcript holds %q", secret)
				}
			}
			// PIN and key data: INTERNAL AUTHENTICATE masked, both ways.
			masked := 0
			for i, e := range tr.Exchanges {
				if !strings.HasPrefix(e.Command, "00 88") {
					continue
				}
				masked++
				if strings.Trim(strings.ReplaceAll(e.Command[15:], " ", ""), "0") != "" {
					t.Errorf("INTERNAL AUTHENTICATE data not masked: %+v", e)
				}
				switch {
				case e.Masked == transcript.MaskedBoth:
				case e.Masked == transcript.MaskedCommand && strings.HasPrefix(e.Response, "61 ") && i+1 < len(tr.Exchanges):
					// T=0: the answer came by GET RESPONSE.
					if g := tr.Exchanges[i+1]; g.Masked == "" || strings.Trim(strings.ReplaceAll(g.Response, " ", ""), "0") != "9" {
						t.Errorf("INTERNAL AUTHENTICATE answer not masked: %+v", g)
					}
				default:
					t.Errorf("INTERNAL AUTHENTICATE not masked: %+v", e)
				}
			}
			if masked == 0 {
				t.Fatalf("no INTERNAL AUTHENTICATE recorded:\n%s", text)
			}

			// Replay it.
			back, err := transcript.Decode(strings.NewReader(text))
			if err != nil {
				t.Fatal(err)
			}
			rc, err := replay.New(back)
			if err != nil {
				t.Fatal(err)
			}
			rvc := pcsctest.StartCard(t, rc)
			_, rcard := rvc.Connect(t, nil)
			got := fullRead(t, rcard, rcard, cardapp.Options{})
			if st := rc.Stats(); st.Unmatched != 0 {
				t.Fatalf("replay: %d unmatched %v\n%s", st.Unmatched, st.Headers, text)
			}
			// Fictional, of the same shape, consistent.
			ssn := got.SSN
			if len(ssn) != 18 || ssn == img.Holder.SSN || !strings.HasPrefix(ssn, "639900") || transcript.CheckDigit(ssn[:17]) != ssn[17] {
				t.Errorf("SSN %q: want a fictional 639900 number with a valid check digit", ssn)
			}
			if (ssn[16]-'0')%2 != (img.Holder.SSN[16]-'0')%2 {
				t.Errorf("SSN %q changed the gender digit's parity", ssn)
			}
			if got.Holder.BirthDate != ssn[6:14] || got.Holder.Birthplace != "639900" {
				t.Errorf("birth %s in %s, SSN %s: not consistent", got.Holder.BirthDate, got.Holder.Birthplace, ssn)
			}
			if n, _ := records.GBKLen(got.Name); got.Name == img.Holder.Name || n != mustGBKLen(t, img.Holder.Name) {
				t.Errorf("name %q: want fictional text of %d GBK bytes", got.Name, mustGBKLen(t, img.Holder.Name))
			}
			if got.CardNumber == img.CardNumber || len(got.CardNumber) != len(img.CardNumber) || got.CardNumber[0] != img.CardNumber[0] {
				t.Errorf("card number %q for %q", got.CardNumber, img.CardNumber)
			}
			if got.CardID == orig.CardID || got.CardID[:6] != "639900" || got.CardID[6:16] != orig.CardID[6:16] {
				t.Errorf("card id %s for %s", got.CardID, orig.CardID)
			}
			// What is not personal is as recorded.
			if got.SpecVersion != orig.SpecVersion || got.ExpiryDate != orig.ExpiryDate || got.Holder.Gender != orig.Holder.Gender || got.Profile != orig.Profile {
				t.Errorf("replayed %+v, recorded %+v", got, orig)
			}
		})
	}
}

// The ATR's copies of the card identification code (region, serial) are
// replaced with the fictional code's bytes.
func TestRedactATR(t *testing.T) {
	tr, err := transcript.Load(filepath.Join("..", "cardsim", "replay", "testdata", "mingwah-v1-t0.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := transcript.Redact(tr, &transcript.Fictional{Region: "110100"}); err != nil {
		t.Fatal(err)
	}
	ex, _ := tr.Parse()
	id := ex[2].Response[2:18]
	if !bytes.HasPrefix(id, []byte{0x11, 0x01, 0x00, 0xD1, 0x56, 0x00, 0x00, 0x05}) {
		t.Fatalf("card id % X", id)
	}
	want := "3B 6D 00 00 00 81 00 88 43 86 65 11 01 " + hexOf(id[8:12])
	if tr.ATR != want {
		t.Fatalf("ATR %s, want %s", tr.ATR, want)
	}
}

func hexOf(b []byte) string { return transcript.Hex(b) }

func mustGBKLen(t *testing.T, s string) int {
	n, err := records.GBKLen(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func bcdDate(d string) []byte {
	b, _ := records.Encode(records.TypeNumeric, 4, d)
	return b
}
