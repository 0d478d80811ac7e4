package engine_test

import (
	"encoding/json"
	"testing"

	"ssstation/internal/cardsim/engine"
	"ssstation/pcsc/apdu"
)

// probeAPDUs are commands every card answers: a status word, whatever the
// image holds (SELECT by name, path and id, reads, a PIN, odd classes,
// malformed lengths).
var probeAPDUs = []string{
	"00A40000023F00", "00A404000F7378312E73682EC9E7BBE1B1A3D5CF", "00A4000002EF05",
	"00A4020002EF06", "00B2010400", "00B2012812", "00B2093020", "00B0000000",
	"00B0800000", "0084000008", "0020000003123456", "00200000", "00C0000000",
	"80CA9F7F00", "00A40400", "FFA4000000", "00B2", "00A4000005EF05",
}

// FuzzParseImage: any bytes either fail to parse with an error or give an
// image that builds a card, answers every probe with at least a status
// word, and survives a JSON round trip unchanged.
func FuzzParseImage(f *testing.F) {
	f.Add(engine.DefaultImageJSON())
	for _, s := range []string{
		`{}`, `{"atr":"3B00","mf":{}}`,
		`{"atr":"3B 88 81 31 FE 45 53 53 43 31 33 44 45 53 90","mf":{"children":[{"type":"ef","fid":"EF05","structure":"record","records":["0102AABB"]}]}}`,
		`{"atr":"3B00","mf":{"children":[{"type":"df","fid":"3F00"}]}}`,
		`{"atr":"3B00","pin":{"value":"123456","tries":3,"left":0},"mf":{}}`,
		`{"atr":"3B00","mf":{}} trailing`,
		`{"atr":"3B00","mf":{"children":[{"type":"ef","fid":"0001","size":70000}]}}`,
	} {
		f.Add([]byte(s))
	}
	probes := make([][]byte, len(probeAPDUs))
	for i, h := range probeAPDUs {
		b, err := apdu.ParseHex(h)
		if err != nil {
			f.Fatal(err)
		}
		probes[i] = b
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := engine.ParseImage(b)
		if err != nil {
			if img != nil {
				t.Fatal("ParseImage returned an image with its error")
			}
			return
		}
		card, err := engine.New(img)
		if err != nil {
			t.Fatalf("an image ParseImage accepted does not build: %v", err)
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
		again, err := json.Marshal(img)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		img2, err := engine.ParseImage(again)
		if err != nil {
			t.Fatalf("a re-encoded image does not parse: %v\n%s", err, again)
		}
		third, _ := json.Marshal(img2)
		if string(third) != string(again) {
			t.Fatalf("JSON round trip changed the image:\n%s\n%s", again, third)
		}
	})
}
