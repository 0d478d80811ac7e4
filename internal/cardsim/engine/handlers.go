package engine

import "ssstation/pcsc/apdu"

// The default handlers. Each accepts CLA 00 only (6E00 otherwise) and is
// installed by New; an extension may wrap or replace them with Card.Handle.

// wildcardNe reports an Le of 00 (short) or 0000 (extended): "as many as
// there are", which never earns a 6282 warning.
func wildcardNe(ne int) bool { return ne == apdu.MaxShortNe || ne == apdu.MaxExtendedNe }

// Select is SELECT (00 A4).
//
//	P1 00: by FID: no data or 3F00 selects the MF; otherwise a DF or EF
//	       under the current DF, the current DF itself or its parent
//	P1 01: a DF under the current DF, by FID
//	P1 02: an EF (or a DF) under the current DF, by FID
//	P1 03: the parent of the current DF (no data)
//	P1 04: a DF by name (exact match, anywhere in the tree)
//	P2 00 or 04: the FCI is returned when Le is present; P2 0C: no data
//
// Answers: 9000, 6A82 (not found; the selection is unchanged), 6700 (a FID
// that is not 2 bytes, a name that is not 1..16 bytes), 6A86 (P1 or P2).
func Select(c *Card, cmd apdu.Command) apdu.Response {
	if cmd.CLA != 0x00 {
		return Status(apdu.SWCLANotSupported)
	}
	var wantFCI bool
	switch cmd.P2 {
	case 0x00, 0x04:
		wantFCI = cmd.Ne > 0
	case 0x0C:
	default:
		return Status(apdu.SWIncorrectP1P2)
	}
	var df *DF
	var ef *EF
	fid := func() (uint16, bool) {
		if len(cmd.Data) != 2 {
			return 0, false
		}
		return uint16(cmd.Data[0])<<8 | uint16(cmd.Data[1]), true
	}
	switch cmd.P1 {
	case 0x00:
		if len(cmd.Data) == 0 {
			df = c.MF
			break
		}
		id, ok := fid()
		if !ok {
			return Status(apdu.SWWrongLength)
		}
		switch {
		case id == 0x3F00:
			df = c.MF
		case id == c.CurrentDF.FID:
			df = c.CurrentDF
		default:
			df, ef = c.CurrentDF.Child(id)
			if df == nil && ef == nil && c.CurrentDF.Parent != nil && c.CurrentDF.Parent.FID == id {
				df = c.CurrentDF.Parent
			}
		}
	case 0x01, 0x02:
		id, ok := fid()
		if !ok {
			return Status(apdu.SWWrongLength)
		}
		df, ef = c.CurrentDF.Child(id)
		if cmd.P1 == 0x01 {
			ef = nil
		}
	case 0x03:
		if len(cmd.Data) != 0 {
			return Status(apdu.SWWrongLength)
		}
		df = c.CurrentDF.Parent
	case 0x04:
		if len(cmd.Data) < 1 || len(cmd.Data) > 16 {
			return Status(apdu.SWWrongLength)
		}
		df = c.MF.FindName(cmd.Data)
	default:
		return Status(apdu.SWIncorrectP1P2)
	}
	var fci []byte
	switch {
	case ef != nil:
		c.SelectEF(ef)
		fci = EFFCI(ef)
	case df != nil:
		c.SelectDF(df)
		fci = DFFCI(df)
	default:
		return Status(apdu.SWFileNotFound)
	}
	if !wantFCI {
		return Status(apdu.SWOK)
	}
	if len(fci) > cmd.Ne {
		fci = fci[:cmd.Ne]
	}
	return OK(fci)
}

// binaryTarget decodes P1 P2 of READ/UPDATE BINARY: P1 bit 8 set means
// P1 = 100 SFI and P2 the offset, else P1P2 is a 15-bit offset.
func binaryTarget(c *Card, cmd apdu.Command) (*EF, int, apdu.StatusWord) {
	var sfi byte
	var off int
	if cmd.P1&0x80 != 0 {
		if cmd.P1&0x60 != 0 || cmd.P1&0x1F == 0 || cmd.P1&0x1F == 0x1F {
			return nil, 0, apdu.SWIncorrectP1P2
		}
		sfi, off = cmd.P1&0x1F, int(cmd.P2)
	} else {
		off = int(cmd.P1)<<8 | int(cmd.P2)
	}
	ef, sw := c.TargetEF(sfi)
	if sw != apdu.SWOK {
		return nil, 0, sw
	}
	if ef.Structure != Transparent {
		return nil, 0, apdu.SWIncompatibleFileStruct
	}
	return ef, off, apdu.SWOK
}

// ReadBinary is READ BINARY (00 B0). Ne bytes from the offset; an explicit
// Ne beyond the end returns what there is with 6282; Le=00 returns up to
// 256 bytes with 9000. Answers 6986 (no current EF), 6A82 (no EF with the
// SFI), 6981 (record EF), 6982 (access), 6B00 (offset at or past the end),
// 6700 (no Le, or data present).
func ReadBinary(c *Card, cmd apdu.Command) apdu.Response {
	if cmd.CLA != 0x00 {
		return Status(apdu.SWCLANotSupported)
	}
	if len(cmd.Data) > 0 || cmd.Ne == 0 {
		return Status(apdu.SWWrongLength)
	}
	ef, off, sw := binaryTarget(c, cmd)
	if sw != apdu.SWOK {
		return Status(sw)
	}
	if sw := c.Allowed(ef.Read); sw != apdu.SWOK {
		return Status(sw)
	}
	if off >= len(ef.Data) {
		return Status(apdu.SWWrongP1P2)
	}
	rest := len(ef.Data) - off
	n, sw := cmd.Ne, apdu.SWOK
	if n > rest {
		n = rest
		if !wildcardNe(cmd.Ne) {
			sw = 0x6282 // end of file reached before reading Ne bytes
		}
	}
	return apdu.Response{Data: append([]byte(nil), ef.Data[off:off+n]...), SW: sw}
}

// UpdateBinary is UPDATE BINARY (00 D6): writes the data at the offset.
// Answers 6700 (no data, or data running past the end), 6B00 (offset at or
// past the end), and the target errors of ReadBinary.
func UpdateBinary(c *Card, cmd apdu.Command) apdu.Response {
	if cmd.CLA != 0x00 {
		return Status(apdu.SWCLANotSupported)
	}
	if len(cmd.Data) == 0 {
		return Status(apdu.SWWrongLength)
	}
	ef, off, sw := binaryTarget(c, cmd)
	if sw != apdu.SWOK {
		return Status(sw)
	}
	if sw := c.Allowed(ef.Update); sw != apdu.SWOK {
		return Status(sw)
	}
	if off >= len(ef.Data) {
		return Status(apdu.SWWrongP1P2)
	}
	if off+len(cmd.Data) > len(ef.Data) {
		return Status(apdu.SWWrongLength)
	}
	copy(ef.Data[off:], cmd.Data)
	return Status(apdu.SWOK)
}

// recordTarget decodes P1 P2 of READ/UPDATE RECORD in the by-number mode:
// P1 the record number, P2 = SFI<<3 | 100.
func recordTarget(c *Card, cmd apdu.Command) (*EF, apdu.StatusWord) {
	if cmd.P2&0x07 != 0x04 || cmd.P1 == 0x00 || cmd.P1 == 0xFF || cmd.P2>>3 == 0x1F {
		return nil, apdu.SWIncorrectP1P2
	}
	ef, sw := c.TargetEF(cmd.P2 >> 3)
	if sw != apdu.SWOK {
		return nil, sw
	}
	if ef.Structure != Record {
		return nil, apdu.SWIncompatibleFileStruct
	}
	return ef, apdu.SWOK
}

// ReadRecord is READ RECORD (00 B2 nn 04, or nn SFI<<3|04) by number.
// Other P2 modes (record by tag, P2=00, is the SS engine's) answer 6A86.
// An Ne shorter than the record answers 6Cxx with the record length.
// Answers 6A83 (no such record), 6986, 6A82, 6981, 6982, 6700 (no Le).
func ReadRecord(c *Card, cmd apdu.Command) apdu.Response {
	if cmd.CLA != 0x00 {
		return Status(apdu.SWCLANotSupported)
	}
	if len(cmd.Data) > 0 || cmd.Ne == 0 {
		return Status(apdu.SWWrongLength)
	}
	ef, sw := recordTarget(c, cmd)
	if sw != apdu.SWOK {
		return Status(sw)
	}
	if sw := c.Allowed(ef.Read); sw != apdu.SWOK {
		return Status(sw)
	}
	rec, ok := ef.Record(int(cmd.P1))
	if !ok {
		return Status(apdu.SWRecordNotFound)
	}
	if cmd.Ne < len(rec) {
		return Status(apdu.StatusWord(0x6C00 | uint16(len(rec)&0xFF)))
	}
	return OK(append([]byte(nil), rec...))
}

// UpdateRecord is UPDATE RECORD (00 DC nn 04): replaces record nn, which
// must exist (6A83). Data longer than the EF's record_size answers 6700.
func UpdateRecord(c *Card, cmd apdu.Command) apdu.Response {
	if cmd.CLA != 0x00 {
		return Status(apdu.SWCLANotSupported)
	}
	if len(cmd.Data) == 0 || len(cmd.Data) > 255 {
		return Status(apdu.SWWrongLength)
	}
	ef, sw := recordTarget(c, cmd)
	if sw != apdu.SWOK {
		return Status(sw)
	}
	if sw := c.Allowed(ef.Update); sw != apdu.SWOK {
		return Status(sw)
	}
	if _, ok := ef.Record(int(cmd.P1)); !ok {
		return Status(apdu.SWRecordNotFound)
	}
	if ef.RecordSize > 0 && len(cmd.Data) > ef.RecordSize {
		return Status(apdu.SWWrongLength)
	}
	ef.SetRecord(int(cmd.P1), cmd.Data)
	return Status(apdu.SWOK)
}

// GetChallenge is GET CHALLENGE (00 84 00 00 Le) with Le 04, 08 or 10:
// Ne random bytes, remembered in Card.Challenge. Answers 6A86 (P1P2 not
// 0000), 6700 (another Le, or data).
func GetChallenge(c *Card, cmd apdu.Command) apdu.Response {
	if cmd.CLA != 0x00 {
		return Status(apdu.SWCLANotSupported)
	}
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return Status(apdu.SWIncorrectP1P2)
	}
	if len(cmd.Data) > 0 {
		return Status(apdu.SWWrongLength)
	}
	switch cmd.Ne {
	case 4, 8, 16:
	default:
		return Status(apdu.SWWrongLength)
	}
	ch, err := c.NewChallenge(cmd.Ne)
	if err != nil {
		return Status(apdu.SWUnknown)
	}
	return OK(ch)
}

// Verify is VERIFY (00 20 00 00 Lc PIN-block): the PIN as BCD, an odd
// digit count padded with F. 9000 (and the PIN counts as verified until
// reset; the try counter is restored), 63Cx (wrong PIN, x tries left; the
// verified state is lost), 6983 (blocked). Without data it answers 9000
// when verified already, else 63Cx with the tries left (6983 if blocked).
// 6A88 when the card has no PIN or P2 is not 00, 6A86 when P1 is not 00,
// 6700 when the block is longer than 8 bytes.
func Verify(c *Card, cmd apdu.Command) apdu.Response {
	if cmd.CLA != 0x00 {
		return Status(apdu.SWCLANotSupported)
	}
	if cmd.P1 != 0x00 {
		return Status(apdu.SWIncorrectP1P2)
	}
	if cmd.P2 != 0x00 || c.PIN == nil {
		return Status(apdu.SWRefDataNotFound)
	}
	if len(cmd.Data) == 0 {
		switch {
		case c.Security.PINVerified:
			return Status(apdu.SWOK)
		case c.PIN.Blocked():
			return Status(apdu.SWAuthBlocked)
		}
		return Status(apdu.StatusWord(0x63C0 | uint16(c.PIN.Left&0x0F)))
	}
	if len(cmd.Data) > 8 {
		return Status(apdu.SWWrongLength)
	}
	sw := c.PIN.Check(cmd.Data)
	c.Security.PINVerified = sw == apdu.SWOK
	return Status(sw)
}
