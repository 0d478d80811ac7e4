package apdu

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// Seeds: the commands the station sends (card-reference §3), the T=0
// answers of the real card (card-reference §9), and the malformed shapes
// TestParseCommandRejects names.
var fuzzCommandSeeds = []string{
	"00A404000F7378312E73682EC9E7BBE1B1A3D5CF", // SELECT SSSE
	"00A4000002EF05",           // SELECT EF05
	"00B2012812",               // READ RECORD by identifier, SFI 5
	"00B2093020",               // READ RECORD by identifier, SFI 6
	"00C0000018",               // GET RESPONSE
	"0084000008",               // GET CHALLENGE
	"0020000003123456",         // VERIFY
	"805E010007123456FF654321", // CHANGE PIN
	"00B00000000000",           // case 2 extended, Ne 65536
	"00D6000000012C" + strings.Repeat("AB", 300) + "0002",
	"00A40000", "00A400", "00A4000003EF05", "00A4000002EF05AABB", "00A40000000002EF", "",
}

// sameCommand compares the fields a command's encoding carries.
func sameCommand(a, b Command) bool {
	return a.CLA == b.CLA && a.INS == b.INS && a.P1 == b.P1 && a.P2 == b.P2 &&
		bytes.Equal(a.Data, b.Data) && a.Ne == b.Ne
}

// FuzzParseCommand: whatever the bytes, ParseCommand never panics, never
// changes its input, and a command it accepts encodes again and parses back
// to itself (the encoding may differ: an extended Le that fits is written
// short, which is why the property is parse(encode(parse(b))) == parse(b)).
// A short-form input (the only form most T=0 readers take) comes back byte
// for byte.
func FuzzParseCommand(f *testing.F) {
	for _, s := range fuzzCommandSeeds {
		b, err := ParseHex(s)
		if err != nil {
			f.Fatalf("seed %q: %v", s, err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		c, err := ParseCommand(in)
		if !bytes.Equal(in, orig) {
			t.Fatal("ParseCommand modified its input")
		}
		if err != nil {
			if len(in) >= 4 && len(in) <= 5 {
				t.Fatalf("ParseCommand(% X) refused a case 1 or 2 short command: %v", in, err)
			}
			return
		}
		if len(in) < 4 {
			t.Fatalf("ParseCommand accepted %d bytes", len(in))
		}
		if verr := c.Validate(); verr != nil {
			t.Fatalf("parsed command does not validate: %v", verr)
		}
		enc, err := c.Bytes()
		if err != nil {
			t.Fatalf("Bytes of a parsed command: %v", err)
		}
		back, err := ParseCommand(enc)
		if err != nil {
			t.Fatalf("ParseCommand(Bytes) = %v for % X (from % X)", err, enc, in)
		}
		if !sameCommand(back, c) {
			t.Fatalf("round trip: %+v, want %+v", back, c)
		}
		if !c.Extended() && len(in) > 4 && in[4] != 0 || len(in) == 5 {
			if !bytes.Equal(enc, in) {
				t.Fatalf("short command % X re-encoded as % X", in, enc)
			}
		}
		if c.Header() != fmt.Sprintf("%02X %02X %02X %02X", in[0], in[1], in[2], in[3]) {
			t.Fatalf("Header %q for % X", c.Header(), in[:4])
		}
	})
}

// FuzzCommandBytes goes the other way: any command that validates encodes,
// and parses back to the same fields.
func FuzzCommandBytes(f *testing.F) {
	f.Add(byte(0x00), byte(0xA4), byte(0x04), byte(0x00), []byte("sx1.sh."), 0)
	f.Add(byte(0x00), byte(0xB2), byte(0x01), byte(0x28), []byte(nil), 0x12)
	f.Add(byte(0x00), byte(0xB0), byte(0x00), byte(0x00), []byte(nil), 256)
	f.Add(byte(0x00), byte(0xB0), byte(0x00), byte(0x00), []byte(nil), 65536)
	f.Add(byte(0x84), byte(0x24), byte(0x00), byte(0x01), bytes.Repeat([]byte{0x11}, 20), 0)
	f.Add(byte(0x00), byte(0xD6), byte(0x00), byte(0x00), bytes.Repeat([]byte{0xAB}, 300), 2)
	f.Add(byte(0x00), byte(0x88), byte(0x00), byte(0x00), bytes.Repeat([]byte{0x01}, 16), 257)
	f.Fuzz(func(t *testing.T, cla, ins, p1, p2 byte, data []byte, ne int) {
		c := Command{CLA: cla, INS: ins, P1: p1, P2: p2, Data: data, Ne: ne}
		enc, err := c.Bytes()
		if verr := c.Validate(); (verr == nil) != (err == nil) {
			t.Fatalf("Validate = %v but Bytes = %v", verr, err)
		}
		if err != nil {
			return
		}
		back, err := ParseCommand(enc)
		if err != nil {
			t.Fatalf("ParseCommand(% X): %v", enc, err)
		}
		if !sameCommand(back, c) {
			t.Fatalf("round trip: %+v, want %+v", back, c)
		}
		if !c.Extended() && len(enc) > 4+1+MaxShortData+1 {
			t.Fatalf("short command of %d bytes", len(enc))
		}
	})
}

// FuzzParseResponse: a response of two bytes or more splits into data and
// SW, and joins back to the same bytes; its status word classifies without
// panicking.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{"9000", "6118", "6C12", "63C2", "6A82", "9303",
		"6F16840F7378312E73682EC9E7BBE1B1A3D5CFA50388010B9000", "", "90"} {
		b, _ := ParseHex(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ParseResponse(in)
		if len(in) < 2 {
			if err == nil {
				t.Fatalf("ParseResponse accepted %d bytes", len(in))
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseResponse(% X): %v", in, err)
		}
		if !bytes.Equal(r.Bytes(), in) {
			t.Fatalf("Bytes = % X, want % X", r.Bytes(), in)
		}
		if r.SW.SW1() != in[len(in)-2] || r.SW.SW2() != in[len(in)-1] {
			t.Fatalf("SW %s from % X", r.SW, in)
		}
		if (r.Err() == nil) != r.SW.OK() {
			t.Fatalf("Err %v for SW %s", r.Err(), r.SW)
		}
		if n, ok := r.SW.Retries(); ok && (n < 0 || n > 15) {
			t.Fatalf("Retries %d for %s", n, r.SW)
		}
		if n, ok := r.SW.MoreData(); ok && (n < 1 || n > 256) {
			t.Fatalf("MoreData %d for %s", n, r.SW)
		}
		_ = r.SW.Meaning()
		_ = r.SW.Error()
	})
}

// FuzzParseHex: ParseHex never panics; what it accepts is the bytes the
// digits spell, whatever separators and case were used.
func FuzzParseHex(f *testing.F) {
	for _, s := range fuzzCommandSeeds {
		f.Add(s)
	}
	for _, s := range []string{"00 A4 04 00", "0x00A4", "00:a4:04", "00-A4", "0X", "0x0x00", "zz", "00A\n4", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseHex(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(s, "\n") {
				t.Fatalf("error text has a line break: %q", err)
			}
			return
		}
		again, err := ParseHex(hex.EncodeToString(b))
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("ParseHex(hex(% X)) = % X, %v", b, again, err)
		}
		spaced, err := ParseHex(fmt.Sprintf("% X", b))
		if err != nil || !bytes.Equal(spaced, b) {
			t.Fatalf("ParseHex(spaced) = % X, %v", spaced, err)
		}
	})
}
