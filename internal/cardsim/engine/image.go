package engine

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"ssstation/pcsc/apdu"
)

// Image is a card image: the ATRs, the PIN and the file tree, as read from
// JSON (docs/cardsim.md documents every field). Hex strings may contain
// spaces. An Image is a description only: New builds a fresh card from it,
// so one Image can back any number of independent cards.
type Image struct {
	// Comment is free text, ignored (JSON has no comments).
	Comment string `json:"comment,omitempty"`
	// ATR is the answer-to-reset of the card (T=1, with TCK).
	ATR string `json:"atr"`
	// ATRT0 is the ATR used when the card is wrapped by T0 (T=0 only, no TCK).
	// Optional: when empty, T0 derives one from ATR's historical bytes.
	ATRT0 string    `json:"atr_t0,omitempty"`
	PIN   *PINImage `json:"pin,omitempty"`
	MF    Node      `json:"mf"`
}

// PINImage is the card's PIN.
type PINImage struct {
	Value string `json:"value"` // 1..16 decimal digits
	Tries int    `json:"tries"` // tries before blocking, 1..15
	// Left is the number of tries left at power-up (default: Tries); 0 makes a blocked PIN.
	Left *int `json:"left,omitempty"`
}

// Node is one file in the image: a DF (type "df", or the MF) or an EF (type "ef").
type Node struct {
	Type    string `json:"type,omitempty"`    // "df" or "ef"; the MF may omit it
	Comment string `json:"comment,omitempty"` // ignored
	FID     string `json:"fid,omitempty"`     // 4 hex digits; DF: optional if it has a name
	Name    string `json:"name,omitempty"`    // DF only: the DF name (AID) in hex, for SELECT by name
	FCI     string `json:"fci,omitempty"`     // hex: the exact FCI SELECT returns, instead of the built one

	Children []Node `json:"children,omitempty"` // DF only

	SFI        int      `json:"sfi,omitempty"`         // EF only: short EF identifier 1..30
	Structure  string   `json:"structure,omitempty"`   // EF only: "transparent" (default) or "record"
	Content    string   `json:"content,omitempty"`     // transparent EF: hex content
	Size       int      `json:"size,omitempty"`        // transparent EF: file size; content is padded with 00 up to it
	Records    []string `json:"records,omitempty"`     // record EF: hex records, record 1 first
	RecordSize int      `json:"record_size,omitempty"` // record EF: longest record UPDATE RECORD may write (0: any)
	Read       string   `json:"read,omitempty"`        // free (default), pin, never, key:XX
	Update     string   `json:"update,omitempty"`      // free, pin, never (default), key:XX
}

//go:embed default_image.json
var defaultImageJSON []byte

// DefaultImageJSON is the JSON text of the default image, a starting point
// for writing one's own.
func DefaultImageJSON() []byte { return append([]byte(nil), defaultImageJSON...) }

// DefaultImage is the card used when no image is given: a social security
// card laid out like card-reference §2 (spec version 2.00, fictional holder).
func DefaultImage() *Image {
	img, err := ParseImage(defaultImageJSON)
	if err != nil {
		panic("engine: default image: " + err.Error())
	}
	return img
}

// LoadImage reads and checks an image file.
func LoadImage(path string) (*Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("card image: %w", err)
	}
	img, err := ParseImage(b)
	if err != nil {
		return nil, fmt.Errorf("card image %s: %w", path, err)
	}
	return img, nil
}

// ParseImage decodes and checks an image: unknown fields, bad hex, bad ATRs,
// duplicate FIDs and out-of-range values are errors naming the file at fault.
func ParseImage(b []byte) (*Image, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var img Image
	if err := dec.Decode(&img); err != nil {
		return nil, jsonError(b, err)
	}
	if err := dec.Decode(new(json.RawMessage)); err != io.EOF {
		return nil, errors.New("trailing data after the image object")
	}
	if _, err := img.build(); err != nil {
		return nil, err
	}
	return &img, nil
}

func jsonError(b []byte, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("JSON ends early (an unclosed { [ or string?)")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
		return fmt.Errorf("JSON syntax error on line %d: %v", line, err)
	}
	return fmt.Errorf("JSON: %v", err)
}

// built is an image turned into live objects.
type built struct {
	atr, atrT0 []byte
	pin        *PINState
	mf         *DF
}

func (img *Image) build() (*built, error) {
	var out built
	var err error
	if strings.TrimSpace(img.ATR) == "" {
		return nil, errors.New(`"atr" is required`)
	}
	if out.atr, err = apdu.ParseHex(img.ATR); err != nil {
		return nil, fmt.Errorf("atr: %w", err)
	}
	if _, err := ParseATR(out.atr); err != nil {
		return nil, fmt.Errorf("atr: %w", err)
	}
	if strings.TrimSpace(img.ATRT0) != "" {
		if out.atrT0, err = apdu.ParseHex(img.ATRT0); err != nil {
			return nil, fmt.Errorf("atr_t0: %w", err)
		}
		info, err := ParseATR(out.atrT0)
		if err != nil {
			return nil, fmt.Errorf("atr_t0: %w", err)
		}
		if len(info.Protocols) != 1 || info.Protocols[0] != 0 {
			return nil, fmt.Errorf("atr_t0: offers protocols %v, want T=0 only", info.Protocols)
		}
	} else {
		info, _ := ParseATR(out.atr)
		out.atrT0 = T0ATR(info.Historical)
	}
	if img.PIN != nil {
		p := img.PIN
		if l := len(p.Value); l < 1 || l > 16 || strings.Trim(p.Value, "0123456789") != "" {
			return nil, fmt.Errorf("pin.value %q: want 1 to 16 decimal digits", p.Value)
		}
		if p.Tries < 1 || p.Tries > 15 {
			return nil, fmt.Errorf("pin.tries %d: want 1..15", p.Tries)
		}
		left := p.Tries
		if p.Left != nil {
			if *p.Left < 0 || *p.Left > p.Tries {
				return nil, fmt.Errorf("pin.left %d: want 0..tries (%d)", *p.Left, p.Tries)
			}
			left = *p.Left
		}
		out.pin = &PINState{Value: p.Value, MaxTries: p.Tries, Left: left}
	}
	if t := strings.ToLower(img.MF.Type); t != "" && t != "df" {
		return nil, fmt.Errorf("mf: type %q, want df", img.MF.Type)
	}
	mfNode := img.MF
	if mfNode.FID == "" {
		mfNode.FID = "3F00"
	}
	mf, err := buildDF(&mfNode, nil, "mf")
	if err != nil {
		return nil, err
	}
	if mf.FID != 0x3F00 {
		return nil, fmt.Errorf("mf: fid %04X, want 3F00", mf.FID)
	}
	out.mf = mf
	return &out, nil
}

func parseFID(s, where string) (uint16, error) {
	if len(s) != 4 {
		return 0, fmt.Errorf("%s: fid %q: want 4 hex digits", where, s)
	}
	v, err := strconv.ParseUint(s, 16, 16)
	if err != nil {
		return 0, fmt.Errorf("%s: fid %q: want 4 hex digits", where, s)
	}
	switch v {
	case 0x0000, 0xFFFF:
		return 0, fmt.Errorf("%s: fid %04X is reserved", where, v)
	}
	return uint16(v), nil
}

func optHex(s, field, where string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := apdu.ParseHex(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", where, field, err)
	}
	return b, nil
}

func buildDF(n *Node, parent *DF, where string) (*DF, error) {
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"sfi", n.SFI != 0}, {"structure", n.Structure != ""}, {"content", n.Content != ""}, {"size", n.Size != 0},
		{"records", n.Records != nil}, {"record_size", n.RecordSize != 0}, {"read", n.Read != ""}, {"update", n.Update != ""},
	} {
		if f.set {
			return nil, fmt.Errorf("%s: %q is an EF field, not allowed on a DF", where, f.name)
		}
	}
	d := &DF{Parent: parent}
	var err error
	if n.FID != "" {
		if d.FID, err = parseFID(n.FID, where); err != nil {
			return nil, err
		}
		if parent != nil && d.FID == 0x3F00 {
			return nil, fmt.Errorf("%s: fid 3F00 is the MF's", where)
		}
	}
	if d.Name, err = optHex(n.Name, "name", where); err != nil {
		return nil, err
	}
	if len(d.Name) > 16 {
		return nil, fmt.Errorf("%s: name of %d bytes exceeds 16", where, len(d.Name))
	}
	if d.FID == 0 && len(d.Name) == 0 {
		return nil, fmt.Errorf("%s: a DF needs a fid, a name or both", where)
	}
	if d.FCI, err = optHex(n.FCI, "fci", where); err != nil {
		return nil, err
	}
	seen := map[uint16]string{}
	for i := range n.Children {
		c := &n.Children[i]
		label := c.FID
		if label == "" {
			label = c.Name
		}
		cw := fmt.Sprintf("%s/%s", where, label)
		if label == "" {
			cw = fmt.Sprintf("%s/children[%d]", where, i)
		}
		switch strings.ToLower(c.Type) {
		case "df":
			sub, err := buildDF(c, d, cw)
			if err != nil {
				return nil, err
			}
			if sub.FID != 0 {
				if prev, dup := seen[sub.FID]; dup {
					return nil, fmt.Errorf("%s: fid %04X already used by %s", cw, sub.FID, prev)
				}
				seen[sub.FID] = cw
			}
			d.DFs = append(d.DFs, sub)
		case "ef":
			ef, err := buildEF(c, d, cw)
			if err != nil {
				return nil, err
			}
			if prev, dup := seen[ef.FID]; dup {
				return nil, fmt.Errorf("%s: fid %04X already used by %s", cw, ef.FID, prev)
			}
			seen[ef.FID] = cw
			if ef.SFI != 0 && d.EFBySFI(ef.SFI) != nil {
				return nil, fmt.Errorf("%s: sfi %d already used in this DF", cw, ef.SFI)
			}
			d.EFs = append(d.EFs, ef)
		case "":
			return nil, fmt.Errorf(`%s: "type" is required (df or ef)`, cw)
		default:
			return nil, fmt.Errorf("%s: type %q, want df or ef", cw, c.Type)
		}
	}
	return d, nil
}

func buildEF(n *Node, parent *DF, where string) (*EF, error) {
	if n.Name != "" || len(n.Children) > 0 {
		return nil, fmt.Errorf("%s: an EF has no name or children", where)
	}
	if n.FID == "" {
		return nil, fmt.Errorf(`%s: "fid" is required for an EF`, where)
	}
	e := &EF{Parent: parent}
	var err error
	if e.FID, err = parseFID(n.FID, where); err != nil {
		return nil, err
	}
	if e.FID == 0x3F00 {
		return nil, fmt.Errorf("%s: fid 3F00 is the MF's", where)
	}
	if n.SFI < 0 || n.SFI > 30 {
		return nil, fmt.Errorf("%s: sfi %d: want 1..30", where, n.SFI)
	}
	e.SFI = byte(n.SFI)
	read, update := n.Read, n.Update
	if read == "" {
		read = "free"
	}
	if update == "" {
		update = "never"
	}
	if e.Read, err = ParseAccess(read); err != nil {
		return nil, fmt.Errorf("%s: read: %w", where, err)
	}
	if e.Update, err = ParseAccess(update); err != nil {
		return nil, fmt.Errorf("%s: update: %w", where, err)
	}
	if e.FCI, err = optHex(n.FCI, "fci", where); err != nil {
		return nil, err
	}
	switch strings.ToLower(n.Structure) {
	case "", "transparent":
		e.Structure = Transparent
		if n.Records != nil || n.RecordSize != 0 {
			return nil, fmt.Errorf("%s: records/record_size on a transparent EF", where)
		}
		content, err := optHex(n.Content, "content", where)
		if err != nil {
			return nil, err
		}
		size := n.Size
		if size == 0 {
			size = len(content)
		}
		if size < 0 || size > 0x7FFF {
			return nil, fmt.Errorf("%s: size %d: want 0..32767", where, n.Size)
		}
		if len(content) > size {
			return nil, fmt.Errorf("%s: content of %d bytes exceeds size %d", where, len(content), size)
		}
		e.Data = make([]byte, size)
		copy(e.Data, content)
	case "record":
		e.Structure = Record
		if n.Content != "" || n.Size != 0 {
			return nil, fmt.Errorf("%s: content/size on a record EF (use records)", where)
		}
		if n.RecordSize < 0 || n.RecordSize > 255 {
			return nil, fmt.Errorf("%s: record_size %d: want 0..255", where, n.RecordSize)
		}
		if len(n.Records) > 254 {
			return nil, fmt.Errorf("%s: %d records exceed 254", where, len(n.Records))
		}
		e.RecordSize = n.RecordSize
		for i, r := range n.Records {
			b, err := apdu.ParseHex(r)
			if err != nil {
				return nil, fmt.Errorf("%s: records[%d] (record %d): %w", where, i, i+1, err)
			}
			if len(b) > 255 {
				return nil, fmt.Errorf("%s: record %d of %d bytes exceeds 255", where, i+1, len(b))
			}
			if e.RecordSize > 0 && len(b) > e.RecordSize {
				return nil, fmt.Errorf("%s: record %d of %d bytes exceeds record_size %d", where, i+1, len(b), e.RecordSize)
			}
			e.Records = append(e.Records, b)
		}
	default:
		return nil, fmt.Errorf("%s: structure %q, want transparent or record", where, n.Structure)
	}
	return e, nil
}

// T0ATR is a T=0-only ATR carrying these historical bytes: 3B 6K 00 00 hist
// (TB1 = 00 no programming voltage, TC1 = 00 no extra guard time; no TD1,
// so T=0 and no TCK).
func T0ATR(hist []byte) []byte {
	if len(hist) > 15 {
		hist = hist[:15]
	}
	return append([]byte{0x3B, 0x60 | byte(len(hist)), 0x00, 0x00}, hist...)
}
