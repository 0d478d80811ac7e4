package records

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzTLV: ParseTLV never panics or reads past the record, and a record
// built by TLV parses back to its tag and value.
func FuzzTLV(f *testing.F) {
	f.Add([]byte{0x07, 0x09, 'X', '0', '0', '0', '0', '0', '0', '1', '9', 0x90, 0x00})
	f.Add([]byte{0x09, 0x1E, 0xD5, 0xC5, 0xC8, 0xFD, 0x20, 0x20})
	f.Add([]byte{0x01, 0x10})
	f.Add([]byte{0x4E})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, rec []byte) {
		tag, v, err := ParseTLV(rec)
		if err != nil {
			if len(rec) >= 2 && 2+int(rec[1]) <= len(rec) {
				t.Fatalf("ParseTLV(% X) refused a complete record: %v", rec, err)
			}
			return
		}
		if tag != rec[0] || !bytes.Equal(v, rec[2:2+int(rec[1])]) {
			t.Fatalf("ParseTLV(% X) = %02X % X", rec, tag, v)
		}
		if len(v) <= 255 {
			tag2, v2, err := ParseTLV(TLV(tag, v))
			if err != nil || tag2 != tag || !bytes.Equal(v2, v) {
				t.Fatalf("TLV round trip: %02X % X, %v", tag2, v2, err)
			}
		}
	})
}

// FuzzDecodeNumeric: any bytes either decode to digits or are refused, and
// digits decoded from a cn value encode back to exactly that value (so the
// station writes back what it read).
func FuzzDecodeNumeric(f *testing.F) {
	f.Add([]byte{0x20, 0x10, 0x10, 0x01})             // a date
	f.Add([]byte{0x41, 0x01, 0x00, 0x81, 0x34, 0x75}) // an organisation number
	f.Add([]byte{0x01, 0xFF})
	f.Add([]byte{0x1F, 0xFF})
	f.Add([]byte{0xF1})
	f.Add([]byte{0xFF, 0xFF})
	f.Add([]byte{0xA0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		s, err := Decode(TypeNumeric, v)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if strings.Trim(s, "0123456789") != "" || len(s) > 2*len(v) {
			t.Fatalf("Decode(cn, % X) = %q", v, s)
		}
		back, err := Encode(TypeNumeric, len(v), s)
		if err != nil || !bytes.Equal(back, v) {
			t.Fatalf("Encode(cn, %d, %q) = % X, %v; want % X", len(v), s, back, err, v)
		}
	})
}

// FuzzEncodeNumeric: digit strings that fit encode, decode back to
// themselves, and are left-aligned with F padding; anything else is refused
// without the value appearing in the error.
func FuzzEncodeNumeric(f *testing.F) {
	f.Add("20101001", 4)
	f.Add("410100813475", 6)
	f.Add("12345", 3)
	f.Add("", 2)
	f.Add("1234567890", 4)
	f.Add("12a4", 2)
	f.Add("0", 0)
	f.Fuzz(func(t *testing.T, s string, length int) {
		if length < 0 || length > 64 {
			return // field lengths come from the profile: 1..255, small in practice
		}
		v, err := Encode(TypeNumeric, length, s)
		fits := len(s) <= 2*length && strings.Trim(s, "0123456789") == ""
		if (err == nil) != fits {
			t.Fatalf("Encode(cn, %d, %q): err %v, fits %v", length, s, err, fits)
		}
		if err != nil {
			if len(s) >= 4 && strings.Contains(err.Error(), s) {
				t.Fatalf("error %q repeats the value", err)
			}
			return
		}
		if len(v) != length {
			t.Fatalf("Encode gave %d bytes for a %d-byte field", len(v), length)
		}
		back, err := Decode(TypeNumeric, v)
		if err != nil || back != s {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", s, back, err)
		}
	})
}

// FuzzText: GBK text that fits encodes to exactly the field length and
// decodes back to itself without its trailing padding characters (space,
// NUL); bytes read from a card decode to valid UTF-8 or are refused; GBK
// splitting never cuts a character.
func FuzzText(f *testing.F) {
	f.Add("张三", 30, []byte{0xD5, 0xC5, 0xC8, 0xFD, 0x20, 0x20, 0x00, 0xFF})
	f.Add("X00000019", 9, []byte("X00000019"))
	f.Add("欧阳娜娜娜娜娜娜娜娜娜娜娜娜娜娜", 30, []byte{0x81, 0x40})
	f.Add("", 1, []byte{0x81})
	f.Add("a b ", 4, []byte{0x20, 0x41})
	f.Add("€", 2, []byte{0x80})
	f.Add("\xff", 4, []byte{0xFF, 0xFF})
	f.Add("𠀀", 8, []byte{0x95, 0x32, 0x82, 0x36})
	f.Fuzz(func(t *testing.T, s string, length int, card []byte) {
		// Bytes from a card.
		if out, err := Decode(TypeText, card); err == nil {
			if !utf8.ValidString(out) {
				t.Fatalf("Decode(an, % X) is not UTF-8: %q", card, out)
			}
			if len(TrimTextPadding(card)) == 0 && out != "" {
				t.Fatalf("blank value % X decoded to %q", card, out)
			}
		}
		if tr := TrimTextPadding(card); len(tr) > 0 && (tr[len(tr)-1] == 0x20 || tr[len(tr)-1] == 0x00 || tr[len(tr)-1] == 0xFF) ||
			!bytes.Equal(tr, card[:len(tr)]) {
			t.Fatalf("TrimTextPadding(% X) = % X", card, tr)
		}

		// Text from a request.
		if length < 0 || length > 255 {
			return
		}
		v, err := Encode(TypeText, length, s)
		n, lenErr := GBKLen(s)
		if err != nil {
			if utf8.ValidString(s) && lenErr == nil && n <= length {
				t.Fatalf("Encode(an, %d, %q) refused text that fits: %v", length, s, err)
			}
			return
		}
		if lenErr != nil || n > length {
			t.Fatalf("Encode accepted %q (GBKLen %d, %v) for %d bytes", s, n, lenErr, length)
		}
		if len(v) != length {
			t.Fatalf("Encode gave %d bytes for a %d-byte field", len(v), length)
		}
		back, err := Decode(TypeText, v)
		want := strings.TrimRight(s, " \x00")
		if err != nil || back != want {
			t.Fatalf("Decode(Encode(%q)) = %q, %v; want %q", s, back, err, want)
		}

		// Name and name extension: the split keeps every character whole.
		head, tail, err := SplitGBK(s, length)
		if err != nil {
			t.Fatalf("SplitGBK(%q) after a successful Encode: %v", s, err)
		}
		if head+tail != s || tail != "" {
			t.Fatalf("SplitGBK(%q, %d) = %q + %q", s, length, head, tail)
		}
		if length > 0 {
			h2, t2, err := SplitGBK(s, length/2)
			if err != nil || h2+t2 != s {
				t.Fatalf("SplitGBK(%q, %d) = %q + %q, %v", s, length/2, h2, t2, err)
			}
			if hn, _ := GBKLen(h2); hn > length/2 {
				t.Fatalf("SplitGBK head %q takes %d bytes > %d", h2, hn, length/2)
			}
		}
	})
}

// FuzzBinary: a b value that is not blank decodes to hex that encodes back
// to the same bytes; a blank value (all 00 or all FF) decodes to "".
func FuzzBinary(f *testing.F) {
	f.Add([]byte{0x63, 0x99, 0x00, 0xD1, 0x56, 0x00, 0x00, 0x05, 0x00, 0xBF, 0x7C, 0x7A, 0x48, 0xFB, 0x49, 0x66})
	f.Add(bytes.Repeat([]byte{0x00}, 16))
	f.Add(bytes.Repeat([]byte{0xFF}, 16))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		s, err := Decode(TypeBinary, v)
		if err != nil {
			t.Fatalf("Decode(b, % X): %v", v, err)
		}
		if IsBlank(v) {
			if s != "" {
				t.Fatalf("blank % X decoded to %q", v, s)
			}
			return
		}
		back, err := Encode(TypeBinary, len(v), s)
		if err != nil || !bytes.Equal(back, v) {
			t.Fatalf("Encode(b, %q) = % X, %v; want % X", s, back, err, v)
		}
		if lower, err := Encode(TypeBinary, len(v), strings.ToLower(s)); err != nil || !bytes.Equal(lower, v) {
			t.Fatalf("lower-case hex: % X, %v", lower, err)
		}
	})
}
