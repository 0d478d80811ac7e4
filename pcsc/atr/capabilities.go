package atr

// CompactTLV returns the COMPACT-TLV data objects of the historical bytes
// (ISO/IEC 7816-4 §8.1.1), tag → value, for the two categories that use
// that format: 00 (the last three bytes are a status indicator, not TLV)
// and 80. Other categories, and a malformed list, give nil: nothing in
// them can be trusted to mean what ISO says.
func (a *ATR) CompactTLV() map[byte][]byte {
	h := a.Historical
	if len(h) == 0 {
		return nil
	}
	var body []byte
	switch h[0] {
	case 0x00:
		if len(h) < 4 {
			return nil
		}
		body = h[1 : len(h)-3]
	case 0x80:
		body = h[1:]
	default:
		return nil
	}
	out := map[byte][]byte{}
	for len(body) > 0 {
		tag, n := body[0]>>4, int(body[0]&0x0F)
		if 1+n > len(body) {
			return nil
		}
		if _, dup := out[tag]; !dup {
			out[tag] = append([]byte(nil), body[1:1+n]...)
		}
		body = body[1+n:]
	}
	return out
}

// CardCapabilities is the card-capabilities object (COMPACT-TLV tag 7):
// up to three software function tables. nil when the card does not send it.
func (a *ATR) CardCapabilities() []byte { return a.CompactTLV()[0x7] }

// ExtendedLength reports whether the card announces extended Lc and Le
// fields: bit b7 of the third software function table of its card
// capabilities (ISO/IEC 7816-4 §8.1.1.2.7, table 88). A card that does not
// say so gets short APDUs, which every card takes.
func (a *ATR) ExtendedLength() bool {
	caps := a.CardCapabilities()
	return len(caps) >= 3 && caps[2]&0x40 != 0
}

// CommandChaining reports bit b8 of the same byte: the card announces
// command chaining.
func (a *ATR) CommandChaining() bool {
	caps := a.CardCapabilities()
	return len(caps) >= 3 && caps[2]&0x80 != 0
}
