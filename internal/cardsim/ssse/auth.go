package ssse

import (
	"crypto/subtle"

	"ssstation/cardapp/keys"
	"ssstation/cardapp/secure"
	"ssstation/internal/cardsim/engine"
	"ssstation/pcsc/apdu"
)

// takeChallenge returns the last challenge and forgets it (one use).
func takeChallenge(e *engine.Card) []byte {
	ch := e.Challenge
	e.Challenge = nil
	return ch
}

// externalAuth is EXTERNAL AUTHENTICATE 00 82 00 kk 10 <16 bytes>.
func (c *Card) externalAuth(e *engine.Card, cmd apdu.Command) apdu.Response {
	ch := takeChallenge(e)
	if cmd.P1 != 0x00 {
		return st(apdu.SWIncorrectP1P2)
	}
	kk := cmd.P2
	name, ok := c.keyByIndex[kk]
	if !ok {
		return st(apdu.SWRefDataNotFound)
	}
	if c.keyTries[kk] <= 0 {
		return st(apdu.SWAuthBlocked)
	}
	if len(cmd.Data) != keys.ExternalAuthDataSize {
		return st(apdu.SWWrongLength)
	}
	if ch == nil {
		return st(apdu.SWConditionsNotSatisfied)
	}
	want, err := keys.EncryptECB(c.alg, c.cardKeys[name], keys.ExternalAuthData(ch))
	if err != nil {
		return st(apdu.SWUnknown)
	}
	if len(want) == len(cmd.Data) && subtle.ConstantTimeCompare(want, cmd.Data) == 1 {
		c.keyTries[kk] = ExternalAuthTries
		e.Security.Authenticate(kk)
		return st(apdu.SWOK)
	}
	c.keyTries[kk]--
	if c.keyTries[kk] <= 0 {
		c.keyTries[kk] = 0
		return st(apdu.SWAuthBlocked)
	}
	return st(retriesSW(c.keyTries[kk]))
}

// internalAuth is INTERNAL AUTHENTICATE 00 88 00 P2 10 <factor 8> <data 8>.
func (c *Card) internalAuth(cmd apdu.Command) apdu.Response {
	if cmd.P1 != 0x00 {
		return st(apdu.SWIncorrectP1P2)
	}
	if cmd.P2 != c.intAuthP2 {
		return st(apdu.SWRefDataNotFound)
	}
	if len(cmd.Data) != 16 {
		return st(apdu.SWWrongLength)
	}
	// The first 8 bytes are the terminal's process factor: SI_3rdCard
	// fills them from GET CHALLENGE values (card-reference §9), so the card
	// takes any 8 bytes. The answer depends on the last 8 only, encrypted
	// with this card's diversified internal-auth key (assumption
	// A-INT-AUTH-FACTOR: what a real card does with the factor is not
	// public).
	in, err := secure.InternalAuthData(c.alg, cmd.Data[8:])
	if err != nil {
		return st(apdu.SWWrongData)
	}
	out, err := keys.EncryptECB(c.alg, c.cardKeys[c.intAuthKey], in)
	if err != nil {
		return st(apdu.SWUnknown)
	}
	if cmd.Ne > 0 && cmd.Ne < len(out) {
		return st(apdu.StatusWord(0x6C00 | uint16(len(out))))
	}
	return engine.OK(out)
}
