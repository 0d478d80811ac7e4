package engine

import (
	"bytes"
	"fmt"
	"strings"
)

// AccessKind is what an access condition asks for.
type AccessKind int

const (
	Free  AccessKind = iota // always allowed
	PIN                     // the PIN must have been verified since the last reset
	Key                     // the key Access.Key must have been authenticated since the last reset
	Never                   // never allowed through APDUs
)

// Access is the condition for reading or updating an EF.
type Access struct {
	Kind AccessKind
	Key  byte // for Kind == Key: the key index (e.g. 0A)
}

// ParseAccess reads "free", "pin", "never" or "key:XX" (XX the key index in hex).
func ParseAccess(s string) (Access, error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); {
	case v == "free":
		return Access{Kind: Free}, nil
	case v == "pin":
		return Access{Kind: PIN}, nil
	case v == "never":
		return Access{Kind: Never}, nil
	case strings.HasPrefix(v, "key:"):
		var k byte
		if n, err := fmt.Sscanf(v[4:], "%02x", &k); err != nil || n != 1 || len(v) != 6 {
			return Access{}, fmt.Errorf("access %q: key index must be two hex digits, as in key:0A", s)
		}
		return Access{Kind: Key, Key: k}, nil
	}
	return Access{}, fmt.Errorf("access %q: want free, pin, never or key:XX", s)
}

func (a Access) String() string {
	switch a.Kind {
	case Free:
		return "free"
	case PIN:
		return "pin"
	case Key:
		return fmt.Sprintf("key:%02X", a.Key)
	case Never:
		return "never"
	}
	return fmt.Sprintf("access(%d)", int(a.Kind))
}

// Structure is an EF's structure.
type Structure int

const (
	Transparent Structure = iota // READ/UPDATE BINARY
	Record                       // linear records, READ/UPDATE RECORD, numbered from 1
)

func (s Structure) String() string {
	if s == Record {
		return "record"
	}
	return "transparent"
}

// DF is a dedicated file: the MF or an application. Its fields may be
// changed by handlers (under the card's lock).
type DF struct {
	FID    uint16 // 0 when the DF can be selected by name only
	Name   []byte // DF name (AID), nil if none
	FCI    []byte // the FCI returned by SELECT; nil: built from FID and Name
	Parent *DF    // nil for the MF
	DFs    []*DF
	EFs    []*EF
}

// EF is an elementary file.
type EF struct {
	FID       uint16
	SFI       byte // short EF identifier 1..30, 0 if none
	Structure Structure
	// Data is the content of a transparent EF; its length is the file size.
	Data []byte
	// Records are the records of a record EF, record n at Records[n-1].
	Records [][]byte
	// RecordSize caps the length of a record written by UPDATE RECORD (0: no cap).
	RecordSize int
	Read       Access
	Update     Access
	FCI        []byte // the FCI returned by SELECT; nil: built
	Parent     *DF
}

// Child finds a DF or an EF with this FID directly under d.
func (d *DF) Child(fid uint16) (*DF, *EF) {
	for _, c := range d.DFs {
		if c.FID == fid && fid != 0 {
			return c, nil
		}
	}
	for _, e := range d.EFs {
		if e.FID == fid {
			return nil, e
		}
	}
	return nil, nil
}

// EFBySFI finds the EF with this short identifier directly under d.
func (d *DF) EFBySFI(sfi byte) *EF {
	for _, e := range d.EFs {
		if e.SFI == sfi && sfi != 0 {
			return e
		}
	}
	return nil
}

// FindName finds the DF named name in the tree under d (d included), depth first.
func (d *DF) FindName(name []byte) *DF {
	if len(d.Name) > 0 && bytes.Equal(d.Name, name) {
		return d
	}
	for _, c := range d.DFs {
		if f := c.FindName(name); f != nil {
			return f
		}
	}
	return nil
}

// Path names d for messages: "3F00/DF01", or the name in hex for a DF without FID.
func (d *DF) Path() string {
	var label string
	if d.FID != 0 {
		label = fmt.Sprintf("%04X", d.FID)
	} else {
		label = fmt.Sprintf("%X", d.Name)
	}
	if d.Parent == nil {
		return label
	}
	return d.Parent.Path() + "/" + label
}

// Path names e for messages: "3F00/DF01/EF05".
func (e *EF) Path() string {
	if e.Parent == nil {
		return fmt.Sprintf("%04X", e.FID)
	}
	return fmt.Sprintf("%s/%04X", e.Parent.Path(), e.FID)
}

// Record returns record n (1-based).
func (e *EF) Record(n int) ([]byte, bool) {
	if n < 1 || n > len(e.Records) {
		return nil, false
	}
	return e.Records[n-1], true
}

// FindRecord returns the number of the first record whose first byte is tag
// (the SS convention: each record is one simple TLV), or 0.
func (e *EF) FindRecord(tag byte) int {
	for i, r := range e.Records {
		if len(r) > 0 && r[0] == tag {
			return i + 1
		}
	}
	return 0
}

// SetRecord replaces record n (1-based); it reports false when the record
// does not exist.
func (e *EF) SetRecord(n int, data []byte) bool {
	if n < 1 || n > len(e.Records) {
		return false
	}
	e.Records[n-1] = append([]byte(nil), data...)
	return true
}

// tlv encodes one BER-TLV with a one-byte tag (or two bytes when tag > 0xFF).
func tlv(tag uint16, value []byte) []byte {
	var out []byte
	if tag > 0xFF {
		out = append(out, byte(tag>>8))
	}
	out = append(out, byte(tag))
	switch n := len(value); {
	case n < 0x80:
		out = append(out, byte(n))
	case n <= 0xFF:
		out = append(out, 0x81, byte(n))
	default:
		out = append(out, 0x82, byte(n>>8), byte(n))
	}
	return append(out, value...)
}

// DFFCI is the FCI SELECT returns for d: d.FCI when set, else
// 6F { 83 FID (if any), 84 DF name (if any) }.
func DFFCI(d *DF) []byte {
	if d.FCI != nil {
		return append([]byte(nil), d.FCI...)
	}
	var body []byte
	if d.FID != 0 {
		body = append(body, tlv(0x83, []byte{byte(d.FID >> 8), byte(d.FID)})...)
	}
	if len(d.Name) > 0 {
		body = append(body, tlv(0x84, d.Name)...)
	}
	return tlv(0x6F, body)
}

// EFFCI is the FCI SELECT returns for e: e.FCI when set, else
// 6F { 82 descriptor (01 transparent, 02 linear fixed), 83 FID, 80 size }
// where the size is the content length, or the record count for a record EF.
func EFFCI(e *EF) []byte {
	if e.FCI != nil {
		return append([]byte(nil), e.FCI...)
	}
	desc, size := byte(0x01), len(e.Data)
	if e.Structure == Record {
		desc = 0x02
		size = len(e.Records)
	}
	body := tlv(0x82, []byte{desc})
	body = append(body, tlv(0x83, []byte{byte(e.FID >> 8), byte(e.FID)})...)
	body = append(body, tlv(0x80, []byte{byte(size >> 8), byte(size)})...)
	return tlv(0x6F, body)
}
