package ssse

import (
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/engine"
	"ssstation/pcsc/apdu"
)

// Records on this card. READ RECORD addresses a record three ways
// (ISO/IEC 7816-4 P2 coding: bits 8..4 the SFI, 00000 the current EF;
// bits 3..1 the mode):
//
//   - 00 B2 nn (SFI<<3|04): record number nn;
//   - 00 B2 tt (SFI<<3|00): the first record whose identifier (tag) is tt,
//     the way the public readers read (the Mingwah trace's 00 B2 01 28 12,
//     00 B2 08 30 14; card-reference §9);
//   - 00 B2 tt 00: the same in the current EF.
//
// An SFI selects its EF as the current one. The numbers are this card's
// (CardQuirks.RecordNumbers), the identifiers the profile's tags.

// recordTarget decodes P1 P2 of READ/UPDATE RECORD. byID allows the
// identifier mode (READ RECORD only). It answers the file, the profile
// record and the record's number on this card.
func (c *Card) recordTarget(e *engine.Card, cmd apdu.Command, byID bool) (*efInfo, profiles.Record, int, apdu.StatusWord) {
	none := func(sw apdu.StatusWord) (*efInfo, profiles.Record, int, apdu.StatusWord) {
		return nil, profiles.Record{}, 0, sw
	}
	sfi, mode := cmd.P2>>3, cmd.P2&0x07
	switch {
	case sfi == 0x1F:
		return none(apdu.SWIncorrectP1P2)
	case mode == 0x04:
		if cmd.P1 == 0x00 || cmd.P1 == 0xFF {
			return none(apdu.SWIncorrectP1P2)
		}
	case mode == 0x00 && byID:
	default:
		// 001 last, 010 next, 011 previous occurrence: every identifier
		// occurs once in an SSSE file, and no public reader uses them.
		return none(apdu.SWIncorrectP1P2)
	}
	ef, sw := e.TargetEF(sfi)
	if sw != apdu.SWOK {
		return none(sw)
	}
	info := c.files[ef.FID]
	if info == nil || info.prof == nil || info.prof.Kind != "record" || ef.Parent != e.MF.DFs[0] {
		return none(apdu.SWIncompatibleFileStruct)
	}
	for _, r := range info.prof.Records {
		n := info.number(r)
		if mode == 0x00 && r.Tag == cmd.P1 || mode == 0x04 && n == int(cmd.P1) {
			if rec, ok := ef.Record(n); ok && rec != nil {
				return info, r, n, apdu.SWOK
			}
		}
	}
	return none(apdu.SWRecordNotFound)
}

// allowed checks a profile access condition against the security state.
func (c *Card) allowed(e *engine.Card, a profiles.Access) apdu.StatusWord {
	switch a.Kind {
	case profiles.AccessFree:
		return apdu.SWOK
	case profiles.AccessKey:
		if e.Security.Authenticated(a.Key) {
			return apdu.SWOK
		}
	case profiles.AccessPIN:
		if e.Security.PINVerified {
			return apdu.SWOK
		}
	}
	return apdu.SWSecurityStatus
}

// readRecord is READ RECORD: the record's whole TLV.
func (c *Card) readRecord(e *engine.Card, cmd apdu.Command) apdu.Response {
	if len(cmd.Data) > 0 || cmd.Ne == 0 {
		return st(apdu.SWWrongLength)
	}
	info, r, n, sw := c.recordTarget(e, cmd, true)
	if sw != apdu.SWOK {
		return st(sw)
	}
	acc := info.prof.Read
	if r.Read != nil {
		acc = *r.Read
	}
	if sw := c.allowed(e, acc); sw != apdu.SWOK {
		return st(sw)
	}
	rec, _ := info.ef.Record(n)
	if cmd.Ne < len(rec) {
		return st(apdu.StatusWord(0x6C00 | uint16(len(rec)&0xFF)))
	}
	return engine.OK(append([]byte(nil), rec...))
}

// updateRecord is UPDATE RECORD by number, while blank or personalized.
func (c *Card) updateRecord(e *engine.Card, cmd apdu.Command) apdu.Response {
	if !c.personalizing() {
		return st(apdu.SWConditionsNotSatisfied)
	}
	if len(cmd.Data) == 0 {
		return st(apdu.SWWrongLength)
	}
	info, r, n, sw := c.recordTarget(e, cmd, false)
	if sw != apdu.SWOK {
		return st(sw)
	}
	if sw := c.allowed(e, info.prof.Write); sw != apdu.SWOK {
		return st(sw)
	}
	if len(cmd.Data) != r.Length+2 {
		return st(apdu.SWWrongLength)
	}
	if cmd.Data[0] != r.Tag || int(cmd.Data[1]) != r.Length {
		return st(apdu.SWWrongData)
	}
	info.ef.SetRecord(n, cmd.Data)
	if c.state == StateBlank {
		c.state = StatePersonalized
	}
	return st(apdu.SWOK)
}
