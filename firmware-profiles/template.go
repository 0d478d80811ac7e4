package profiles

import (
	"fmt"
	"sort"
	"strings"
)

// Template is a command whose coding is unconfirmed or profile-dependent:
// hex bytes with {placeholders}, e.g. "84 1E 00 00 04 {mac}".
//
// Placeholders and the size of the value Build wants for each:
//
//	{mac}             4 bytes, the MAC computed by the key holder
//	{lc}              computed by Build: the number of bytes after it
//	{pin}             1..8 bytes, a PIN as BCD padded with the pin.pad nibble
//	{old}             1..8 bytes, the old PIN, likewise
//	{new}             1..8 bytes, the new PIN, likewise
//	{cryptogram16}    16 bytes from the key holder
//	{enc_pin_block16} 16 bytes, an encrypted PIN block from the key holder
type Template struct {
	Name   string
	Text   string // the template as written
	Source string // where the coding comes from ("assumption: ..." when unconfirmed)
	MACKey string // the holder key (Crypto.HolderKeys) that computes {mac}
	EncKey string // the holder key that computes {cryptogram16} or {enc_pin_block16}
	Auth   string // a role in Crypto.Keys: EXTERNAL AUTHENTICATE with it first
	Note   string

	parts []tplPart
}

type tplPart struct {
	lit []byte
	ph  string
}

// placeholderSize gives the fixed size of a placeholder's value, 0 for 1..8 bytes.
var placeholderSize = map[string]int{
	"mac": 4, "lc": 1, "pin": 0, "old": 0, "new": 0,
	"cryptogram16": 16, "enc_pin_block16": 16,
}

const maxPINBytes = 8

// PlaceholderNames lists the placeholders templates may use, sorted.
func PlaceholderNames() []string {
	names := make([]string, 0, len(placeholderSize))
	for n := range placeholderSize {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ParseTemplate parses a template text. Rules: hex byte pairs and
// {placeholders}, spaces anywhere between items; the first 4 items are literal
// bytes (CLA INS P1 P2); a 5th item is the literal Lc or {lc}; a placeholder
// appears at most once; a literal Lc matches the data length when every
// placeholder after it has a fixed size, and is not used with variable ones.
func ParseTemplate(text string) (Template, error) {
	parts, err := parseTemplate(text)
	if err != nil {
		return Template{}, err
	}
	return Template{Text: text, parts: parts}, nil
}

func parseTemplate(text string) ([]tplPart, error) {
	var parts []tplPart
	seen := map[string]bool{}
	nbytes := 0 // bytes so far, fixed-size placeholders included
	variable := false
	lcAt := -1 // part index of {lc} or literal Lc
	s := text
	for len(s) > 0 {
		c := s[0]
		switch {
		case c == ' ' || c == '\t':
			s = s[1:]
		case c == '{':
			end := strings.IndexByte(s, '}')
			if end < 0 {
				return nil, fmt.Errorf("unterminated placeholder %q", s)
			}
			name := s[1:end]
			s = s[end+1:]
			size, ok := placeholderSize[name]
			if !ok {
				return nil, fmt.Errorf("unknown placeholder {%s} (known: %s)", name, strings.Join(PlaceholderNames(), ", "))
			}
			if seen[name] {
				return nil, fmt.Errorf("placeholder {%s} appears twice", name)
			}
			seen[name] = true
			if nbytes < 4 {
				return nil, fmt.Errorf("placeholder {%s} inside the header: CLA INS P1 P2 must be literal bytes", name)
			}
			if name == "lc" {
				if nbytes != 4 || variable {
					return nil, fmt.Errorf("{lc} must be the 5th byte")
				}
				lcAt = len(parts)
			}
			parts = append(parts, tplPart{ph: name})
			if size == 0 {
				variable = true
			}
			nbytes += size
		case isHex(c):
			if len(s) < 2 || !isHex(s[1]) {
				return nil, fmt.Errorf("odd hex digit %q: bytes are two hex digits", s[:1])
			}
			b := unhex(c)<<4 | unhex(s[1])
			s = s[2:]
			if nbytes == 4 && !variable {
				lcAt = len(parts)
			}
			parts = append(parts, tplPart{lit: []byte{b}})
			nbytes++
		default:
			return nil, fmt.Errorf("invalid character %q", c)
		}
	}
	if nbytes < 4 || variable && nbytes < 5 {
		return nil, fmt.Errorf("too short: a command needs CLA INS P1 P2")
	}
	if lcAt >= 0 && parts[lcAt].ph == "" {
		lc := int(parts[lcAt].lit[0])
		if variable {
			return nil, fmt.Errorf("literal Lc %02X with a variable-length placeholder: use {lc}", lc)
		}
		rest := nbytes - 5
		if rest > 0 && lc != rest && lc != rest-1 {
			return nil, fmt.Errorf("literal Lc %02X does not match the %d data bytes after it", lc, rest)
		}
	}
	return parts, nil
}

// MACLast reports whether the template ends with {mac}.
func (t Template) MACLast() bool {
	parts := t.parts
	if parts == nil {
		parts, _ = parseTemplate(t.Text)
	}
	return len(parts) > 0 && parts[len(parts)-1].ph == "mac"
}

// Placeholders lists the template's placeholders in order.
func (t Template) Placeholders() []string {
	parts := t.parts
	if parts == nil {
		parts, _ = parseTemplate(t.Text)
	}
	var out []string
	for _, p := range parts {
		if p.ph != "" {
			out = append(out, p.ph)
		}
	}
	return out
}

// Build fills the placeholders with vals and returns the APDU. {lc} is
// computed (the number of bytes after it) and must not be given. A value for
// a placeholder the template lacks, a missing value, or a value of the wrong
// size is an error.
func (t Template) Build(vals map[string][]byte) ([]byte, error) {
	parts := t.parts
	if parts == nil {
		var err error
		if parts, err = parseTemplate(t.Text); err != nil {
			return nil, fmt.Errorf("template %s: %w", t.Name, err)
		}
	}
	used := map[string]bool{}
	for _, p := range parts {
		if p.ph != "" {
			used[p.ph] = true
		}
	}
	for k := range vals {
		if k == "lc" {
			return nil, fmt.Errorf("template %s: {lc} is computed, not given", t.Name)
		}
		if !used[k] {
			return nil, fmt.Errorf("template %s: unknown placeholder {%s}", t.Name, k)
		}
	}
	var out []byte
	lcPos := -1
	for _, p := range parts {
		switch p.ph {
		case "":
			out = append(out, p.lit...)
		case "lc":
			lcPos = len(out)
			out = append(out, 0)
		default:
			v, ok := vals[p.ph]
			if !ok {
				return nil, fmt.Errorf("template %s: missing value for {%s}", t.Name, p.ph)
			}
			size := placeholderSize[p.ph]
			if size == 0 && (len(v) < 1 || len(v) > maxPINBytes) {
				return nil, fmt.Errorf("template %s: {%s} is %d bytes, want 1..%d", t.Name, p.ph, len(v), maxPINBytes)
			}
			if size != 0 && len(v) != size {
				return nil, fmt.Errorf("template %s: {%s} is %d bytes, want %d", t.Name, p.ph, len(v), size)
			}
			out = append(out, v...)
		}
	}
	if lcPos >= 0 {
		lc := len(out) - lcPos - 1
		if lc < 1 || lc > 255 {
			return nil, fmt.Errorf("template %s: data is %d bytes, want 1..255", t.Name, lc)
		}
		out[lcPos] = byte(lc)
	}
	return out, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// parseHex parses hex digit pairs, spaces allowed between bytes.
func parseHex(s string) ([]byte, error) {
	var out []byte
	for i := 0; i < len(s); {
		c := s[i]
		if c == ' ' || c == '\t' {
			i++
			continue
		}
		if !isHex(c) {
			return nil, fmt.Errorf("invalid hex digit %q", c)
		}
		if i+1 >= len(s) || !isHex(s[i+1]) {
			if i+1 < len(s) && s[i+1] != ' ' && s[i+1] != '\t' {
				return nil, fmt.Errorf("invalid hex digit %q", s[i+1])
			}
			return nil, fmt.Errorf("odd number of hex digits")
		}
		out = append(out, unhex(c)<<4|unhex(s[i+1]))
		i += 2
	}
	return out, nil
}
