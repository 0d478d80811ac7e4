package ssse_test

import (
	"encoding/json"
	"testing"

	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc/apdu"
)

// FuzzParseImage: any bytes either fail to parse or give an SSSE image
// that survives a JSON round trip; when it builds a card (New checks it
// against its profile), the card answers every probe with a status word,
// through the T=0 transport where the profile has one.
func FuzzParseImage(f *testing.F) {
	for _, name := range ssse.BuiltinNames() {
		b, err := ssse.BuiltinJSON(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{}`, `{"profile":"ss-v2-3des-t0"}`, `{"profile":"no-such-profile","state":"active"}`,
		`{"profile":"ss-v1-3des","state":"blank"} {}`, `{"profile":"ss-v3-sm4","state":"nonsense"}`,
	} {
		f.Add([]byte(s))
	}
	var probes [][]byte
	for _, h := range []string{
		"00A404000F7378312E73682EC9E7BBE1B1A3D5CF", "00A4000002EF05", "00A4020002EF06",
		"00B2010400", "00B2012812", "00B2093020", "00B2070000", "0084000008", "00C0000018",
		"0020000003123456", "805E0100071234560FF65432", "0088000010" + "00112233445566778899AABBCCDDEEFF",
		"0082000A10" + "00112233445566778899AABBCCDDEEFF", "00A40000023F00", "00B2", "841E000004AABBCCDD",
	} {
		b, err := apdu.ParseHex(h)
		if err != nil {
			f.Fatal(err)
		}
		probes = append(probes, b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := ssse.ParseImage(b)
		if err != nil {
			if img != nil {
				t.Fatal("ParseImage returned an image with its error")
			}
			return
		}
		again, err := json.Marshal(img)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		img2, err := ssse.ParseImage(again)
		if err != nil {
			t.Fatalf("a re-encoded image does not parse: %v\n%s", err, again)
		}
		if third, _ := json.Marshal(img2); string(third) != string(again) {
			t.Fatalf("JSON round trip changed the image:\n%s\n%s", again, third)
		}
		card, err := ssse.New(img, nil)
		if err != nil {
			return // checks against the profile are New's: an error is an answer
		}
		if len(card.ATR()) < 2 {
			t.Fatalf("ATR % X", card.ATR())
		}
		for _, p := range probes {
			if r := card.Process(p); len(r) < 2 {
				t.Fatalf("Process(% X) = % X: no status word", p, r)
			}
		}
		card.Reset()
		if r := card.Process(probes[0]); len(r) < 2 {
			t.Fatalf("SELECT after reset: % X", r)
		}
	})
}
