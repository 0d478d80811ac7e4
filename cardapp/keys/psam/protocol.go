package psam

import (
	"fmt"

	"ssstation/pcsc/apdu"
)

// The project-defined PSAM command set (docs/psam.md). The host Provider
// builds these commands and the virtual PSAM (internal/cardsim/psam) answers
// them, so both sides share these values.
const (
	// AIDHex is the PSAM application's AID: D156000005 (the SSSE RID family,
	// card-reference §2) followed by ASCII "PSAM". Project-defined.
	AIDHex = "D1560000055053414D"

	// ClaISO is the class of SELECT and READ BINARY; ClaProprietary the
	// class of INIT FOR DESCRYPT and CIPHER DATA (with b5 set, 0x90, for
	// the non-final parts of an ISO/IEC 7816-4 command chain).
	ClaISO         byte = 0x00
	ClaProprietary byte = 0x80
	ClaChaining    byte = 0x10

	InsSelect          byte = 0xA4
	InsReadBinary      byte = 0xB0
	InsInitForDescrypt byte = 0x1A
	InsCipherData      byte = 0xFA

	// CIPHER DATA P1: what to do with the data under the session key.
	CipherEncrypt byte = 0x00 // ECB-encrypt whole blocks
	CipherMAC     byte = 0x05 // data = IV (one block) || message; answer the 4-byte MAC

	// SerialSFI is the short file identifier of the 6-byte (BCD) PSAM
	// serial / terminal number, read with READ BINARY P1 = 0x80|SFI.
	SerialSFI  byte = 0x16
	SerialSize      = 6

	// MaxLevels is the largest number of diversification factors INIT FOR
	// DESCRYPT takes (8 bytes each).
	MaxLevels = 3

	// MaxEncryptData is the most data one Encrypt sends: one short APDU's
	// data field (so the answer also fits one short response).
	MaxEncryptData = apdu.MaxShortData

	// MaxCipherData bounds CIPHER DATA's input (for a MAC: IV + message).
	// More than 255 bytes travel as an ISO/IEC 7816-4 command chain, which
	// the host's transmit loop builds by itself; the virtual PSAM accepts
	// chains up to this size.
	MaxCipherData = 1024
)

var aid = [...]byte{0xD1, 0x56, 0x00, 0x00, 0x05, 0x50, 0x53, 0x41, 0x4D}

// AID returns a copy of the PSAM application's AID (see [AIDHex]).
func AID() []byte { return append([]byte(nil), aid[:]...) }

// SelectCommand is `00 A4 04 00 09 D1560000055053414D`, without Le (no FCI
// wanted). Marked sensitive like every APDU of a PSAM operation, so a trace
// of the PSAM reader shows headers and status words only.
func SelectCommand() apdu.Command {
	return apdu.Command{CLA: ClaISO, INS: InsSelect, P1: 0x04, P2: 0x00, Data: AID(), Sensitive: true, Name: "SELECT PSAM"}
}

// ReadSerialCommand is `00 B0 96 00 06`: the PSAM's serial number.
func ReadSerialCommand() apdu.Command {
	return apdu.Command{CLA: ClaISO, INS: InsReadBinary, P1: 0x80 | SerialSFI, P2: 0x00, Ne: SerialSize, Name: "READ BINARY PSAM serial"}
}

// InitCommand is `80 1A usage index Lc factors...` (no data for no factors).
func InitCommand(usage, index byte, path [][]byte) apdu.Command {
	var data []byte
	for _, f := range path {
		data = append(data, f...)
	}
	return apdu.Command{CLA: ClaProprietary, INS: InsInitForDescrypt, P1: usage, P2: index, Data: data, Sensitive: true, Name: "INIT FOR DESCRYPT"}
}

// CipherCommand is `80 FA p1 00 Lc data Le`.
func CipherCommand(p1 byte, data []byte, ne int) apdu.Command {
	return apdu.Command{CLA: ClaProprietary, INS: InsCipherData, P1: p1, P2: 0x00, Data: data, Ne: ne, Sensitive: true, Name: cipherName(p1), ProprietaryChaining: true}
}

func cipherName(p1 byte) string {
	switch p1 {
	case CipherEncrypt:
		return "CIPHER DATA (encrypt)"
	case CipherMAC:
		return "CIPHER DATA (MAC)"
	}
	return fmt.Sprintf("CIPHER DATA (P1 %02X)", p1)
}
