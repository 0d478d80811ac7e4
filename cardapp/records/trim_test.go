package records

import (
	"bytes"
	"testing"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// Names on the real 1.00 card are padded with spaces (card-reference §9),
// other writers pad with 00, an erased record is FF: all three trim, and
// no GBK character loses a byte.
func TestTextPaddingTrimmed(t *testing.T) {
	name, _ := simplifiedchinese.GBK.NewEncoder().Bytes([]byte("张三"))
	for _, pad := range []byte{0x20, 0x00, 0xFF} {
		v := append(append([]byte(nil), name...), bytes.Repeat([]byte{pad}, 26)...)
		got, err := Decode(TypeText, v)
		if err != nil || got != "张三" {
			t.Fatalf("pad %02X: %q, %v", pad, got, err)
		}
	}
	// Mixed padding, as a card rewritten by another writer may hold.
	mixed := append(append([]byte(nil), name...), 0x20, 0x00, 0xFF, 0x20)
	if got, err := Decode(TypeText, mixed); err != nil || got != "张三" {
		t.Fatalf("mixed: %q, %v", got, err)
	}
	// Every GBK two-byte character keeps its second byte: none is 20, 00 or FF.
	for lead := 0x81; lead <= 0xFE; lead++ {
		for _, trail := range []byte{0x20, 0x00, 0xFF} {
			if _, err := simplifiedchinese.GBK.NewDecoder().Bytes([]byte{byte(lead), trail}); err == nil {
				dec, _ := simplifiedchinese.GBK.NewDecoder().Bytes([]byte{byte(lead), trail})
				if bytes.ContainsRune(dec, '\uFFFD') {
					continue
				}
				t.Fatalf("%02X %02X decodes as one character %q", lead, trail, dec)
			}
		}
	}
	// All padding is blank.
	if got, err := Decode(TypeText, bytes.Repeat([]byte{0x20}, 30)); err != nil || got != "" {
		t.Fatalf("all spaces: %q, %v", got, err)
	}
}
