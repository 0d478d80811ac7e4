package ssse

import (
	"crypto/subtle"
	"strings"

	"ssstation/cardapp/secure"
	"ssstation/internal/cardsim/engine"
	"ssstation/pcsc/apdu"
)

// pinBlock is the PIN as VERIFY carries it: BCD, an odd count padded with
// the profile's pad nibble.
func (c *Card) pinBlock(digits string) []byte {
	b, err := secure.EncodePIN(digits)
	if err != nil {
		return nil
	}
	if len(digits)%2 == 1 {
		b[len(b)-1] = b[len(b)-1]&0xF0 | c.prof.PIN.Pad&0x0F
	}
	return b
}

// decodePIN reads a BCD PIN block (pad nibble only as the last nibble of an
// odd count) and checks the profile's length policy.
func (c *Card) decodePIN(block []byte) (string, bool) {
	var sb strings.Builder
	for i, b := range block {
		for j, n := range []byte{b >> 4, b & 0x0F} {
			last := i == len(block)-1 && j == 1
			switch {
			case n <= 9:
				sb.WriteByte('0' + n)
			case last && n == c.prof.PIN.Pad&0x0F && sb.Len() > 0:
			default:
				return "", false
			}
		}
	}
	return sb.String(), c.pinLengthOK(sb.String())
}

func (c *Card) pinLengthOK(pin string) bool {
	return len(pin) >= c.prof.PIN.MinLength && len(pin) <= c.prof.PIN.MaxLength &&
		strings.Trim(pin, "0123456789") == ""
}

// checkPIN compares a presented PIN block and counts: 9000 (counter reset),
// 63Cx, or 6983 when blocked (already, or by this wrong try).
func (c *Card) checkPIN(e *engine.Card, block []byte) apdu.StatusWord {
	if c.tries <= 0 {
		return apdu.SWAuthBlocked
	}
	if subtle.ConstantTimeCompare(block, c.pinBlock(c.pin)) == 1 {
		c.tries = c.prof.PIN.Tries
		e.Security.PINVerified = true
		return apdu.SWOK
	}
	e.Security.PINVerified = false
	c.tries--
	if c.tries <= 0 {
		c.tries = 0
		return apdu.SWAuthBlocked
	}
	return retriesSW(c.tries)
}

// verify is VERIFY 00 20 00 00 Lc <PIN>.
func (c *Card) verify(e *engine.Card, cmd apdu.Command) apdu.Response {
	if cmd.P1 != 0x00 {
		return st(apdu.SWIncorrectP1P2)
	}
	if cmd.P2 != 0x00 {
		return st(apdu.SWRefDataNotFound)
	}
	if len(cmd.Data) == 0 {
		switch {
		case !c.prof.PIN.RetriesByEmptyVerify:
			return st(apdu.SWWrongLength)
		case c.tries <= 0:
			return st(apdu.SWAuthBlocked)
		case e.Security.PINVerified:
			return st(apdu.SWOK)
		}
		return st(retriesSW(c.tries))
	}
	if len(cmd.Data) > 8 {
		return st(apdu.SWWrongLength)
	}
	return st(c.checkPIN(e, cmd.Data))
}
