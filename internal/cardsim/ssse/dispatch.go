package ssse

import (
	"bytes"

	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/engine"
	"ssstation/pcsc/apdu"
)

// --- dispatch ---

// kind is what a command is, for the state gate.
type kind int

const (
	kUnknown kind = iota
	kSelect
	kReadRecord
	kUpdateRecord
	kReadBinary
	kUpdateBinary
	kGetChallenge
	kExtAuth
	kIntAuth
	kVerify
	kTemplate
)

// builtinINS are the CLA 00 commands, by INS.
var builtinINS = map[byte]kind{
	0xA4: kSelect, 0xB2: kReadRecord, 0xDC: kUpdateRecord, 0xB0: kReadBinary, 0xD6: kUpdateBinary,
	0x84: kGetChallenge, 0x82: kExtAuth, 0x88: kIntAuth, 0x20: kVerify,
}

func st(sw apdu.StatusWord) apdu.Response { return engine.Status(sw) }

func retriesSW(n int) apdu.StatusWord { return apdu.StatusWord(0x63C0 | uint16(n&0x0F)) }

// dispatch is the handler of every INS the card knows; it runs with the
// engine's lock held.
func (c *Card) dispatch(e *engine.Card, cmd apdu.Command) apdu.Response {
	op := c.ops[[4]byte{cmd.CLA, cmd.INS, cmd.P1, cmd.P2}]
	k := kUnknown
	switch {
	case op != nil:
		k = kTemplate
	case cmd.CLA == 0x00:
		k = builtinINS[cmd.INS]
	}
	switch k {
	case kSelect:
		return c.selectCmd(e, cmd)
	case kUnknown:
		if c.opINS[[2]byte{cmd.CLA, cmd.INS}] {
			return st(apdu.SWIncorrectP1P2)
		}
		if cmd.CLA == 0x00 {
			return st(apdu.SWINSNotSupported)
		}
		return st(apdu.SWCLANotSupported)
	}
	if sw := c.gate(k, op); sw != 0 {
		return st(sw)
	}
	switch k {
	case kTemplate:
		return c.runTemplate(e, op, cmd)
	case kReadRecord:
		return c.readRecord(e, cmd)
	case kUpdateRecord:
		return c.updateRecord(e, cmd)
	case kReadBinary:
		return engine.ReadBinary(e, cmd)
	case kUpdateBinary:
		if !c.personalizing() {
			return st(apdu.SWConditionsNotSatisfied)
		}
		r := engine.UpdateBinary(e, cmd)
		if r.SW == apdu.SWOK && c.state == StateBlank {
			c.state = StatePersonalized
		}
		return r
	case kGetChallenge:
		return engine.GetChallenge(e, cmd)
	case kExtAuth:
		return c.externalAuth(e, cmd)
	case kIntAuth:
		return c.internalAuth(cmd)
	case kVerify:
		return c.verify(e, cmd)
	}
	return st(apdu.SWINSNotSupported)
}

// gate is the life cycle's answer to a command before it runs, 0 to let it
// run. SELECT has its own rules (selectCmd).
func (c *Card) gate(k kind, op *tplOp) apdu.StatusWord {
	switch c.state {
	case StateCardBlocked:
		return apdu.SWFuncNotSupported
	case StateBlockedPermanent:
		if k == kIntAuth {
			return 0
		}
		return apdu.SWAppLocked
	case StateTransportLocked, StateBlockedTemporary:
		// A temporarily blocked application can still be read (a counter
		// identifies a card reported lost, or a delivered card before
		// activation) and authenticated; PIN work and writes are refused.
		// Assumption A-BLOCKED-READ (docs/firmware-profiles.md).
		switch {
		case k == kGetChallenge, k == kIntAuth, k == kExtAuth, k == kSelect, k == kReadRecord, k == kReadBinary:
			return 0
		case op != nil:
			switch op.name {
			case profiles.CmdApplicationUnblock, profiles.CmdApplicationBlockTemporary,
				profiles.CmdApplicationBlockPermanent, profiles.CmdCardBlock:
				return 0
			}
		}
		return apdu.SWConditionsNotSatisfied
	}
	return 0
}

// personalizing reports a state in which personalization writes are allowed.
func (c *Card) personalizing() bool {
	return c.state == StateBlank || c.state == StatePersonalized
}

func (c *Card) selectCmd(e *engine.Card, cmd apdu.Command) apdu.Response {
	if c.state == StateCardBlocked {
		return st(apdu.SWFuncNotSupported)
	}
	isMF := cmd.P1 == 0x00 && (len(cmd.Data) == 0 || bytes.Equal(cmd.Data, []byte{0x3F, 0x00}))
	isApp := cmd.P1 == 0x04 && bytes.Equal(cmd.Data, c.prof.Select.SSSEAID)
	switch {
	case isMF:
		r := engine.Select(e, cmd)
		if r.SW == apdu.SWOK {
			c.mfSelected = true
			e.Security.Clear()
		}
		return r
	case isApp:
		if c.prof.Select.MFFirst && !c.mfSelected {
			return st(apdu.SWFileNotFound)
		}
		if c.state == StateBlockedPermanent {
			return st(apdu.SWAppLocked)
		}
		// Selecting the application again keeps its security state: the
		// public PIN reload authenticates with key 06, selects SSSE again,
		// then sends 84 24 (SI_3rdCard, card-reference §9). Leaving it for
		// the MF (or a reset) clears it.
		r := engine.Select(e, cmd)
		if r.SW != apdu.SWOK {
			return r
		}
		if c.state == StateTransportLocked || c.state == StateBlockedTemporary {
			r.SW = apdu.SWWarningFileInvalidated
		}
		return r
	}
	if sw := c.gate(kSelect, nil); sw != 0 {
		return st(sw)
	}
	r := engine.Select(e, cmd)
	if r.SW == apdu.SWOK && e.CurrentEF != nil {
		// SELECT EF answers 90 00 and no FCI, whatever Le: the real 1.00
		// card in the Mingwah trace does (card-reference §9).
		r.Data = nil
	}
	return r
}
