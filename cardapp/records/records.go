// Package records encodes and decodes the SSSE record files' values: each
// record is one simple TLV (tag, length, value), and each value has a type
// (card-reference §2): cn is BCD, left-aligned, padded with F; an is text padded
// with 00 or 20 (card-reference §9), names in GBK; b is binary. The host (reading, personalizing) and
// the virtual card (building its images) share it.
package records

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// Value types.
const (
	TypeBinary  = "b"
	TypeText    = "an"
	TypeNumeric = "cn"
)

// ParseTLV splits one record into its tag and value.
func ParseTLV(rec []byte) (tag byte, value []byte, err error) {
	if len(rec) < 2 {
		return 0, nil, fmt.Errorf("records: record of %d bytes has no tag and length", len(rec))
	}
	n := int(rec[1])
	if 2+n > len(rec) {
		return 0, nil, fmt.Errorf("records: tag %02X announces %d bytes but %d follow", rec[0], n, len(rec)-2)
	}
	return rec[0], rec[2 : 2+n], nil
}

// TLV builds one record.
func TLV(tag byte, value []byte) []byte {
	return append([]byte{tag, byte(len(value))}, value...)
}

// IsBlank reports a value never written: every byte 00, or every byte FF.
func IsBlank(v []byte) bool {
	return all(v, 0x00) || all(v, 0xFF)
}

// all reports whether every byte of v is x. (bytes.Trim is no help: its
// cutset is UTF-8, and "\xFF" would match every invalid byte, GBK text included.)
func all(v []byte, x byte) bool {
	for _, b := range v {
		if b != x {
			return false
		}
	}
	return true
}

// Decode turns a value into text: digits for cn, UTF-8 for an (GBK on the
// card), upper-case hex for b. A blank value decodes to "".
func Decode(typ string, v []byte) (string, error) {
	switch typ {
	case TypeNumeric:
		var sb strings.Builder
		for i, b := range v {
			for j, nib := range []byte{b >> 4, b & 0x0F} {
				if nib == 0x0F {
					// padding: everything after it must be padding too
					rest := v[i:]
					if j == 0 && rest[0] != 0xFF || !all(rest[1:], 0xFF) {
						return "", fmt.Errorf("records: cn value % X has digits after its F padding", v)
					}
					return sb.String(), nil
				}
				if nib > 9 {
					return "", fmt.Errorf("records: cn value % X holds the nibble %X", v, nib)
				}
				sb.WriteByte('0' + nib)
			}
		}
		return sb.String(), nil
	case TypeText:
		t := TrimTextPadding(v)
		if len(t) == 0 {
			return "", nil
		}
		out, err := simplifiedchinese.GBK.NewDecoder().Bytes(t)
		if err != nil {
			return "", fmt.Errorf("records: an value is not GBK text: %w", err)
		}
		return string(out), nil
	case TypeBinary:
		if IsBlank(v) {
			return "", nil
		}
		return fmt.Sprintf("%X", v), nil
	}
	return "", fmt.Errorf("records: unknown type %q", typ)
}

// TrimTextPadding drops the trailing padding of an an value: 0x20 (the
// real 1.00 card in the public Mingwah trace pads names with spaces,
// card-reference §9), 0x00 (other writers, card-reference §2) and 0xFF
// (an erased record). Cutting bytes off the end is safe in GBK: a
// two-byte character's second byte is 0x40..0x7E or 0x80..0xFE, never
// 0x20, 0x00 or 0xFF, so a trailing pad byte is never half a character.
// Trailing spaces typed as part of the text go too: names are trimmed.
func TrimTextPadding(v []byte) []byte {
	end := len(v)
	for end > 0 && (v[end-1] == 0x20 || v[end-1] == 0x00 || v[end-1] == 0xFF) {
		end--
	}
	return v[:end]
}

// ErrTooLong is returned when a value does not fit its field.
var ErrTooLong = errors.New("value too long for its field")

// Encode turns text into a value of exactly length bytes. It never puts
// the value itself in an error (it may be a name or an ID number).
func Encode(typ string, length int, s string) ([]byte, error) {
	out := make([]byte, length)
	switch typ {
	case TypeNumeric:
		if len(s) > 2*length {
			return nil, fmt.Errorf("records: %d digits for a cn field of %d bytes: %w", len(s), length, ErrTooLong)
		}
		for i := range out {
			out[i] = 0xFF
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return nil, fmt.Errorf("records: a cn field holds digits only (character %d is not one)", i+1)
			}
			if i%2 == 0 {
				out[i/2] = (c-'0')<<4 | 0x0F
			} else {
				out[i/2] = out[i/2]&0xF0 | (c - '0')
			}
		}
		return out, nil
	case TypeText:
		if !utf8.ValidString(s) {
			return nil, errors.New("records: text is not valid UTF-8")
		}
		g, err := simplifiedchinese.GBK.NewEncoder().Bytes([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("records: the text has a character GBK cannot encode: %w", ErrNotGBK)
		}
		if len(g) > length {
			return nil, fmt.Errorf("records: %d bytes in GBK for an an field of %d bytes: %w", len(g), length, ErrTooLong)
		}
		copy(out, g)
		return out, nil
	case TypeBinary:
		b, err := parseHex(s)
		if err != nil {
			return nil, err
		}
		if len(b) != length {
			return nil, fmt.Errorf("records: %d bytes for a b field of %d bytes", len(b), length)
		}
		return b, nil
	}
	return nil, fmt.Errorf("records: unknown type %q", typ)
}

// ErrNotGBK is returned for text GBK cannot encode.
var ErrNotGBK = errors.New("not encodable in GBK")

// GBKLen is the length of s in GBK, or an error if GBK cannot encode it.
func GBKLen(s string) (int, error) {
	g, err := simplifiedchinese.GBK.NewEncoder().Bytes([]byte(s))
	if err != nil {
		return 0, ErrNotGBK
	}
	return len(g), nil
}

// SplitGBK cuts s so that its first part takes at most n GBK bytes,
// never inside a character: the name record holds what fits and the name
// extension record the rest.
func SplitGBK(s string, n int) (head, tail string, err error) {
	used := 0
	for i, r := range s {
		l, err := GBKLen(string(r))
		if err != nil {
			return "", "", err
		}
		if used+l > n {
			return s[:i], s[i:], nil
		}
		used += l
	}
	return s, "", nil
}

func parseHex(s string) ([]byte, error) {
	s = strings.ReplaceAll(s, " ", "")
	if len(s)%2 != 0 {
		return nil, errors.New("records: odd number of hex digits")
	}
	out := make([]byte, len(s)/2)
	for i := range out {
		var v byte
		for _, c := range []byte{s[2*i], s[2*i+1]} {
			switch {
			case c >= '0' && c <= '9':
				v = v<<4 | (c - '0')
			case c >= 'a' && c <= 'f':
				v = v<<4 | (c - 'a' + 10)
			case c >= 'A' && c <= 'F':
				v = v<<4 | (c - 'A' + 10)
			default:
				return nil, errors.New("records: not hex")
			}
		}
		out[i] = v
	}
	return out, nil
}
