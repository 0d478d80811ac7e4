package engine

import (
	"errors"
	"fmt"
)

// ATRInfo is what ParseATR found in an answer-to-reset (ISO/IEC 7816-3 §8.2).
type ATRInfo struct {
	Protocols  []int  // T values offered, in order; T=0 alone when no TD1
	Historical []byte // historical bytes
	HasTCK     bool
}

// ParseATR checks an ATR against ISO/IEC 7816-3: TS is 3B or 3F, the
// interface bytes announced by T0 and the TDi are all there, the historical
// bytes follow, and TCK is present (and makes the XOR of T0..TCK zero)
// exactly when a protocol other than T=0 is offered.
func ParseATR(atr []byte) (ATRInfo, error) {
	var info ATRInfo
	if len(atr) < 2 {
		return info, errors.New("ATR shorter than TS T0")
	}
	if atr[0] != 0x3B && atr[0] != 0x3F {
		return info, fmt.Errorf("ATR TS is %02X, want 3B (direct) or 3F (inverse)", atr[0])
	}
	if len(atr) > 33 {
		return info, fmt.Errorf("ATR of %d bytes exceeds the maximum of 33", len(atr))
	}
	y := atr[1] >> 4
	k := int(atr[1] & 0x0F)
	i := 2
	needTCK := false
	for level := 1; ; level++ {
		for bit := byte(1); bit <= 4; bit <<= 1 { // TAi, TBi, TCi
			if y&bit != 0 {
				if i >= len(atr) {
					return info, fmt.Errorf("ATR ends inside the interface bytes of level %d", level)
				}
				i++
			}
		}
		if y&8 == 0 {
			break
		}
		if i >= len(atr) {
			return info, fmt.Errorf("ATR ends before TD%d", level)
		}
		td := atr[i]
		i++
		t := int(td & 0x0F)
		// TD1 and TD2 name protocols; T=15 in TD2 and later carries global bytes, not a protocol.
		if !(t == 15 && level >= 2) {
			info.Protocols = appendUnique(info.Protocols, t)
		}
		if t != 0 {
			needTCK = true
		}
		y = td >> 4
	}
	if len(info.Protocols) == 0 {
		info.Protocols = []int{0}
	}
	if i+k > len(atr) {
		return info, fmt.Errorf("ATR announces %d historical bytes but only %d remain", k, len(atr)-i)
	}
	info.Historical = append([]byte(nil), atr[i:i+k]...)
	i += k
	switch rest := len(atr) - i; {
	case needTCK && rest == 0:
		return info, errors.New("ATR offers a protocol other than T=0 but has no TCK")
	case needTCK && rest == 1:
		var x byte
		for _, b := range atr[1:] {
			x ^= b
		}
		if x != 0 {
			return info, fmt.Errorf("ATR TCK is %02X, want %02X", atr[len(atr)-1], atr[len(atr)-1]^x)
		}
		info.HasTCK = true
	case !needTCK && rest != 0:
		return info, fmt.Errorf("ATR offers only T=0 but has %d byte(s) after the historical bytes (no TCK allowed)", rest)
	case rest > 1:
		return info, fmt.Errorf("ATR has %d extra bytes after TCK", rest-1)
	}
	return info, nil
}

// WithTCK returns atr with its TCK byte recomputed and appended, for
// building a T=1 ATR by hand: pass the ATR without TCK.
func WithTCK(atr []byte) []byte {
	var x byte
	for _, b := range atr[1:] {
		x ^= b
	}
	return append(append([]byte(nil), atr...), x)
}

func appendUnique(s []int, v int) []int {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
