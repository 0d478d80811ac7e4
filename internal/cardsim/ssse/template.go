package ssse

import (
	"bytes"

	"ssstation/cardapp/keys"
	"ssstation/cardapp/secure"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/engine"
	"ssstation/pcsc/apdu"
)

// precondition is the life cycle condition of a template command (6985 when not met).
func (c *Card) precondition(name string) bool {
	switch name {
	case profiles.CmdApplicationBlockTemporary:
		switch c.state {
		case StateActive, StateFinalized, StateBlockedTemporary, StateTransportLocked:
			return true
		}
		return false
	case profiles.CmdApplicationBlockPermanent:
		return c.state != StateBlank
	case profiles.CmdApplicationUnblock:
		switch c.state {
		case StateActive, StateBlockedTemporary, StateTransportLocked:
			return true
		}
		return false
	case profiles.CmdFinalize:
		return c.state == StatePersonalized
	}
	return true
}

// runTemplate runs one of the profile's command templates.
func (c *Card) runTemplate(e *engine.Card, op *tplOp, cmd apdu.Command) apdu.Response {
	var ch []byte
	if op.hasMAC {
		ch = takeChallenge(e)
	}
	data := cmd.Data
	if op.lc >= 0 && len(data) != op.lc || op.hasMAC && len(data) < secure.MACSize || len(data) == 0 {
		return st(apdu.SWWrongLength)
	}
	if op.t.Auth != "" {
		idx, ok := c.prof.Crypto.Keys[op.t.Auth]
		if !ok || !e.Security.Authenticated(byte(idx)) {
			return st(apdu.SWSecurityStatus)
		}
	}
	if op.hasMAC && ch == nil {
		return st(apdu.SWConditionsNotSatisfied)
	}
	if !c.precondition(op.name) {
		return st(apdu.SWConditionsNotSatisfied)
	}
	payload := data
	if op.hasMAC {
		iv, err := secure.IV(c.alg, ch)
		if err != nil {
			return st(apdu.SWConditionsNotSatisfied) // a challenge of another length than 8
		}
		in, err := secure.MACInput(cmd.CLA, cmd.INS, cmd.P1, cmd.P2, data)
		if err != nil {
			return st(apdu.SWWrongLength)
		}
		ok, err := keys.VerifyMAC(c.alg, c.cardKeys[op.t.MACKey], iv, in, data[len(data)-secure.MACSize:])
		if err != nil || !ok {
			return st(apdu.SWSMDataIncorrect)
		}
		payload = data[:len(data)-secure.MACSize]
	}

	switch op.name {
	case profiles.CmdPINChange:
		i := bytes.Index(payload, op.sep)
		if i < 1 {
			return st(apdu.SWWrongData)
		}
		if c.tries <= 0 {
			return st(apdu.SWAuthBlocked)
		}
		newPIN, ok := c.decodePIN(payload[i+len(op.sep):])
		if !ok {
			return st(apdu.SWWrongData)
		}
		if sw := c.checkPIN(e, payload[:i]); sw != apdu.SWOK {
			return st(sw)
		}
		c.pin = newPIN
		return st(apdu.SWOK)
	case profiles.CmdPINUnblock:
		// PIN UNBLOCK "only resets the try counter, it does not change the
		// PIN" (SI_3rdCard GWI_SSSE_SC.cpp, card-reference §9). A template
		// that still carries a PIN block has it checked for shape only.
		if op.enc && len(payload) != secure.PINBlockSize {
			return st(apdu.SWWrongLength)
		}
		c.tries = c.prof.PIN.Tries
		e.Security.PINVerified = false
		return st(apdu.SWOK)
	case profiles.CmdPINReload, profiles.CmdPINReloadByKey:
		var newPIN string
		if op.enc {
			if len(payload) != secure.PINBlockSize {
				return st(apdu.SWWrongLength)
			}
			block, err := keys.DecryptECB(c.alg, c.cardKeys[op.t.EncKey], payload)
			if err != nil {
				return st(apdu.SWWrongData)
			}
			if newPIN, err = secure.ParsePINBlock(block); err != nil || !c.pinLengthOK(newPIN) {
				return st(apdu.SWWrongData)
			}
		} else {
			var ok bool
			if newPIN, ok = c.decodePIN(payload); !ok {
				return st(apdu.SWWrongData)
			}
		}
		c.pin = newPIN
		c.tries = c.prof.PIN.Tries
		e.Security.PINVerified = false
		return st(apdu.SWOK)
	case profiles.CmdApplicationBlockTemporary:
		switch c.state {
		case StateFinalized:
			c.state = StateTransportLocked
		case StateActive:
			c.state = StateBlockedTemporary
		}
	case profiles.CmdApplicationBlockPermanent:
		c.state = StateBlockedPermanent
	case profiles.CmdApplicationUnblock:
		c.state = StateActive
	case profiles.CmdCardBlock:
		c.state = StateCardBlocked
	case profiles.CmdFinalize:
		// FINALIZE is a named assumption (A-CMD-FINALIZE): no public SSSE
		// end-of-personalization command exists; the coding and this
		// transition are the profile's, modelled on GlobalPlatform SET
		// STATUS, unchanged until a public source says otherwise.
		c.state = StateFinalized
	default:
		return st(apdu.SWINSNotSupported)
	}
	return st(apdu.SWOK)
}
