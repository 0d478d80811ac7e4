package atr

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
)

// HexBytes is a byte slice that marshals to JSON as an uppercase hex string
// without separators ("3B6800"), which is how ATRs are compared and pasted
// between tools; encoding/json's default base64 is unreadable for that.
type HexBytes []byte

// MarshalJSON encodes b as an uppercase hex string. A nil slice encodes as
// "" rather than null so consumers never need a null check.
func (b HexBytes) MarshalJSON() ([]byte, error) {
	return json.Marshal(strings.ToUpper(hex.EncodeToString(b)))
}

// UnmarshalJSON accepts the same forms as ParseHex's input (any case,
// optional spaces or colons), so JSON written by hand also loads.
func (b *HexBytes) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	v, err := decodeHex(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// String renders b space-separated ("3B 68 00"), the form used in card
// documentation and by pcsc_scan, for human-facing output.
func (b HexBytes) String() string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%02X", c)
	}
	return sb.String()
}

// decodeHex decodes hex that may be split by whitespace or colons. Each
// separated token must hold whole bytes: accepting "3 B" as 0x3B would hide
// a mis-typed ATR instead of reporting it.
func decodeHex(s string) ([]byte, error) {
	tokens := strings.FieldsFunc(s, func(r rune) bool {
		return r == ':' || unicode.IsSpace(r)
	})
	var out []byte
	for _, tok := range tokens {
		if len(tok)%2 != 0 {
			return nil, fmt.Errorf("%w: %q has an odd number of hex digits", ErrInvalidHex, tok)
		}
		v, err := hex.DecodeString(tok)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrInvalidHex, tok, err)
		}
		out = append(out, v...)
	}
	return out, nil
}
