// Package apdu holds ISO/IEC 7816-4 command and response APDUs and status
// words as values. It has no PC/SC dependency, so the host side (pcsc,
// cardapp) and the virtual card (cardsim) share one encoder and one parser.
package apdu

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Limits of the encodings (ISO/IEC 7816-4 §5.1).
const (
	MaxShortData    = 255
	MaxShortNe      = 256
	MaxExtendedData = 65535
	MaxExtendedNe   = 65536
)

// Command is one command APDU. Ne is the number of response bytes expected:
// 0 means no Le field (case 1 or 3); a positive value is encoded as Le, with
// 256 (short) and 65536 (extended) encoded as 00 / 0000.
type Command struct {
	CLA, INS, P1, P2 byte
	Data             []byte
	Ne               int

	// Sensitive marks a command whose data is a PIN or key material: every
	// trace replaces its data (and the response data) with a length-only
	// placeholder, so that no log or transcript ever holds it.
	Sensitive bool

	// Name is a short label for traces and errors ("SELECT SSSE", "VERIFY").
	Name string

	// ProprietaryChaining declares that the card takes ISO/IEC 7816-4
	// command chaining (CLA b5) under this command's proprietary class (b8
	// set), as the PSAM's CIPHER DATA does. ISO gives b5 of a proprietary
	// class no meaning, so the transmit loop never assumes it: without this
	// declaration, data that does not fit in one APDU under a proprietary
	// class is refused, not chained.
	ProprietaryChaining bool
}

// Extended reports whether the command needs the extended length encoding.
func (c Command) Extended() bool {
	return len(c.Data) > MaxShortData || c.Ne > MaxShortNe
}

// Validate reports a command that cannot be encoded at all.
func (c Command) Validate() error {
	if len(c.Data) > MaxExtendedData {
		return fmt.Errorf("apdu: %d data bytes exceed the maximum of %d", len(c.Data), MaxExtendedData)
	}
	if c.Ne < 0 || c.Ne > MaxExtendedNe {
		return fmt.Errorf("apdu: Ne %d out of range 0..%d", c.Ne, MaxExtendedNe)
	}
	return nil
}

// Bytes encodes the command, choosing the short form whenever it fits.
func (c Command) Bytes() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	out := make([]byte, 0, 4+3+len(c.Data)+3)
	out = append(out, c.CLA, c.INS, c.P1, c.P2)
	if !c.Extended() {
		if len(c.Data) > 0 {
			out = append(out, byte(len(c.Data)))
			out = append(out, c.Data...)
		}
		if c.Ne > 0 {
			out = append(out, byte(c.Ne)) // 256 encodes as 00
		}
		return out, nil
	}
	if len(c.Data) > 0 {
		out = append(out, 0, byte(len(c.Data)>>8), byte(len(c.Data)))
		out = append(out, c.Data...)
		if c.Ne > 0 {
			out = append(out, byte(c.Ne>>8), byte(c.Ne)) // 65536 encodes as 0000
		}
	} else if c.Ne > 0 {
		out = append(out, 0, byte(c.Ne>>8), byte(c.Ne))
	}
	return out, nil
}

// Header is the four-byte command header, for traces and errors.
func (c Command) Header() string {
	return fmt.Sprintf("%02X %02X %02X %02X", c.CLA, c.INS, c.P1, c.P2)
}

// Label names the command for errors: its Name, or its header.
func (c Command) Label() string {
	if c.Name != "" {
		return c.Name
	}
	return "APDU " + c.Header()
}

// Parse errors are distinct so a CLI can say what is wrong before anything is sent.
var (
	ErrTooShort    = errors.New("apdu: a command needs at least 4 header bytes")
	ErrLcMismatch  = errors.New("apdu: Lc does not match the number of data bytes")
	ErrBadEncoding = errors.New("apdu: malformed length fields")
)

// ParseCommand decodes an encoded command APDU (any of the seven cases of
// ISO/IEC 7816-4 §5.1), rejecting an Lc that disagrees with the data.
func ParseCommand(b []byte) (Command, error) {
	if len(b) < 4 {
		return Command{}, ErrTooShort
	}
	c := Command{CLA: b[0], INS: b[1], P1: b[2], P2: b[3]}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
		return c, nil
	case len(body) == 1: // case 2 short
		c.Ne = int(body[0])
		if c.Ne == 0 {
			c.Ne = MaxShortNe
		}
		return c, nil
	case body[0] != 0: // case 3 or 4 short
		lc := int(body[0])
		switch len(body) {
		case 1 + lc:
			c.Data = append([]byte(nil), body[1:]...)
		case 2 + lc:
			c.Data = append([]byte(nil), body[1:1+lc]...)
			c.Ne = int(body[1+lc])
			if c.Ne == 0 {
				c.Ne = MaxShortNe
			}
		default:
			return Command{}, fmt.Errorf("%w: Lc=%d (0x%02X) but %d bytes follow it", ErrLcMismatch, lc, lc, len(body)-1)
		}
		return c, nil
	}
	// Extended: body starts with 00.
	if len(body) == 3 { // case 2 extended
		c.Ne = int(body[1])<<8 | int(body[2])
		if c.Ne == 0 {
			c.Ne = MaxExtendedNe
		}
		return c, nil
	}
	if len(body) < 3 {
		return Command{}, fmt.Errorf("%w: %d length bytes after the header", ErrBadEncoding, len(body))
	}
	lc := int(body[1])<<8 | int(body[2])
	if lc == 0 {
		return Command{}, fmt.Errorf("%w: extended Lc of zero", ErrBadEncoding)
	}
	rest := body[3:]
	switch len(rest) {
	case lc:
		c.Data = append([]byte(nil), rest...)
	case lc + 2:
		c.Data = append([]byte(nil), rest[:lc]...)
		c.Ne = int(rest[lc])<<8 | int(rest[lc+1])
		if c.Ne == 0 {
			c.Ne = MaxExtendedNe
		}
	default:
		return Command{}, fmt.Errorf("%w: extended Lc=%d but %d bytes follow it", ErrLcMismatch, lc, len(rest))
	}
	return c, nil
}

// ParseHex parses hex digits (spaces, colons and a 0x prefix allowed) into bytes,
// with errors that name the problem rather than the offset alone.
func ParseHex(s string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', ':', '-':
			return -1
		}
		return r
	}, s)
	clean = strings.TrimPrefix(strings.TrimPrefix(clean, "0x"), "0X")
	if len(clean)%2 != 0 {
		return nil, fmt.Errorf("hex %q has an odd number of digits (%d)", abbreviate(s), len(clean))
	}
	b, err := hex.DecodeString(clean)
	if err != nil {
		return nil, fmt.Errorf("hex %q: %w", abbreviate(s), err)
	}
	return b, nil
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// Response is a response APDU: data and the status word.
type Response struct {
	Data []byte
	SW   StatusWord
}

// ParseResponse splits a raw response into data and SW1 SW2.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 2 {
		return Response{}, fmt.Errorf("apdu: response of %d bytes has no status word", len(b))
	}
	n := len(b) - 2
	return Response{Data: b[:n:n], SW: StatusWord(uint16(b[n])<<8 | uint16(b[n+1]))}, nil
}

// Bytes encodes the response as data followed by SW1 SW2.
func (r Response) Bytes() []byte {
	out := make([]byte, 0, len(r.Data)+2)
	out = append(out, r.Data...)
	return append(out, r.SW.SW1(), r.SW.SW2())
}

// Err is nil on success and the status word as an error otherwise.
func (r Response) Err() error {
	if r.SW.OK() {
		return nil
	}
	return r.SW
}
