package atr

import (
	"fmt"
	"testing"
)

func TestCardCapabilities(t *testing.T) {
	cases := []struct {
		name          string
		atr           string
		caps          string
		extended, chn bool
	}{
		// Category 80, 73 C0 21 C0: b8 and b7
		// of the third byte set (chaining and extended lengths).
		{"category 80, extended", "3B 05 80 73 C0 21 C0", "C021C0", true, true},
		// Category 80, third byte 80: chaining only.
		{"category 80, chaining only", "3B 05 80 73 00 00 80", "000080", false, true},
		// Category 00 with a status indicator: the last three bytes are
		// not TLV, tag 7 before them counts.
		{"category 00", "3B 08 00 73 00 00 40 00 90 00", "000040", true, false},
		// Card capabilities with fewer than three bytes: no third table.
		{"two tables", "3B 04 80 72 00 00", "0000", false, false},
		// The SSSE 1.00 card's T=0 ATR: proprietary historical bytes.
		{"proprietary category", "3B 6D 00 00 00 81 4E 43 23 86 97 15 99 00 BF 7C 7A", "", false, false},
		// Malformed COMPACT-TLV (length past the end): nothing trusted.
		{"malformed", "3B 03 80 73 C0", "", false, false},
	}
	for _, c := range cases {
		a, err := ParseHex(c.atr)
		if a == nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := fmt.Sprintf("%X", a.CardCapabilities()); got != c.caps {
			t.Errorf("%s: CardCapabilities = %s, want %s", c.name, got, c.caps)
		}
		if a.ExtendedLength() != c.extended || a.CommandChaining() != c.chn {
			t.Errorf("%s: ExtendedLength=%v CommandChaining=%v, want %v %v", c.name, a.ExtendedLength(), a.CommandChaining(), c.extended, c.chn)
		}
	}
}
