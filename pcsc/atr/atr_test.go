package atr

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := decodeHex(s)
	if err != nil {
		t.Fatalf("bad test hex %q: %v", s, err)
	}
	return b
}

func bp(b byte) *byte { return &b }

// validATRs are real ATRs (plus one synthetic stress case) whose TCKs were
// checked independently: XOR of T0..TCK is 00 for each one that has a TCK.
var validATRs = []struct {
	name string
	hex  string

	conv       Convention
	t0         byte
	groups     []InterfaceGroup
	protocols  []Protocol
	historical string
	tck        *byte
	fi, di     int
	fmax       float64
	n, wi      int
	mode       *SpecificMode
	t1         *T1Params
}{
	{
		// Classic T=0-only card: no TD1, so T=0 is implicit and TCK absent.
		name: "T0 only", hex: "3B 68 00 00 00 73 C8 40 12 00 90 00",
		conv: ConventionDirect, t0: 0x68,
		groups:     []InterfaceGroup{{Index: 1, HasTB: true, HasTC: true}},
		protocols:  []Protocol{0},
		historical: "0073C84012009000",
		fi:         372, di: 1, fmax: 5, wi: 10,
	},
	{
		name: "Yubikey 4", hex: "3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4",
		conv: ConventionDirect, t0: 0xF8,
		groups: []InterfaceGroup{
			{Index: 1, HasTA: true, TA: 0x13, HasTB: true, HasTC: true, HasTD: true, TD: 0x81},
			{Index: 2, HasTD: true, TD: 0x31},
			{Index: 3, HasTA: true, TA: 0xFE, HasTB: true, TB: 0x15},
		},
		protocols:  []Protocol{1},
		historical: "597562696B657934", // "Yubikey4"
		tck:        bp(0xD4),
		fi:         372, di: 4, fmax: 5, wi: 10,
		t1: &T1Params{IFSC: 254, BWI: 1, CWI: 5},
	},
	{
		// Barclaycard (smartcard_list). The commonly mis-quoted variant
		// ending in 1C has a bad TCK; see TestParseErrors.
		name: "Barclaycard T0 and T1", hex: "3B 8E 80 01 80 31 80 66 B0 84 0C 01 6E 01 83 00 90 00 1D",
		conv: ConventionDirect, t0: 0x8E,
		groups: []InterfaceGroup{
			{Index: 1, HasTD: true, TD: 0x80},
			{Index: 2, HasTD: true, TD: 0x01},
		},
		protocols:  []Protocol{0, 1},
		historical: "80318066B0840C016E0183009000",
		tck:        bp(0x1D),
		fi:         372, di: 1, fmax: 5, wi: 10,
		t1: &T1Params{IFSC: 32, BWI: 4, CWI: 13},
	},
	{
		// Feitian ePass: T=15 global bytes after the T=1 ones.
		name: "Feitian ePass T15", hex: "3B DD 18 00 81 91 FE 1F C3 00 66 46 53 08 03 00 36 71 DF 00 00 80 97",
		conv: ConventionDirect, t0: 0xDD,
		groups: []InterfaceGroup{
			{Index: 1, HasTA: true, TA: 0x18, HasTC: true, HasTD: true, TD: 0x81},
			{Index: 2, HasTD: true, TD: 0x91},
			{Index: 3, HasTA: true, TA: 0xFE, HasTD: true, TD: 0x1F},
			{Index: 4, HasTA: true, TA: 0xC3},
		},
		protocols:  []Protocol{1, 15},
		historical: "006646530803003671DF000080",
		tck:        bp(0x97),
		fi:         372, di: 12, fmax: 5, wi: 10,
		t1: &T1Params{IFSC: 254, BWI: 4, CWI: 13},
	},
	{
		// Feitian BioPass FIDO2: TA1=95 exercises the non-default Fi table half.
		name: "Feitian BioPass", hex: "3B 9C 95 81 31 FE 9F 90 67 46 4A 01 02 53 05 01 72 FE 00 FB",
		conv: ConventionDirect, t0: 0x9C,
		groups: []InterfaceGroup{
			{Index: 1, HasTA: true, TA: 0x95, HasTD: true, TD: 0x81},
			{Index: 2, HasTD: true, TD: 0x31},
			{Index: 3, HasTA: true, TA: 0xFE, HasTB: true, TB: 0x9F},
		},
		protocols:  []Protocol{1},
		historical: "9067464A010253050172FE00",
		tck:        bp(0xFB),
		fi:         512, di: 16, fmax: 5, wi: 10,
		t1: &T1Params{IFSC: 254, BWI: 9, CWI: 15},
	},
	{
		// Inverse-convention card (test vector from WSCT); PC/SC has already
		// decoded the bytes, so only TS differs.
		name: "inverse convention", hex: "3F 67 25 00 21 20 00 0F 78 90 00",
		conv: ConventionInverse, t0: 0x67,
		groups:     []InterfaceGroup{{Index: 1, HasTB: true, TB: 0x25, HasTC: true}},
		protocols:  []Protocol{0},
		historical: "2120000F789000",
		fi:         372, di: 1, fmax: 5, wi: 10,
	},
	{
		// Synthetic: specific mode, N=255, TC2, and a second round of T=1
		// bytes whose TA4/TB4 must be ignored while TC4 (the first TC for
		// T=1) must be honoured.
		name: "synthetic specific mode", hex: "3B F2 96 00 FF D1 91 14 B1 80 45 71 20 99 01 4F 4B 76",
		conv: ConventionDirect, t0: 0xF2,
		groups: []InterfaceGroup{
			{Index: 1, HasTA: true, TA: 0x96, HasTB: true, HasTC: true, TC: 0xFF, HasTD: true, TD: 0xD1},
			{Index: 2, HasTA: true, TA: 0x91, HasTC: true, TC: 0x14, HasTD: true, TD: 0xB1},
			{Index: 3, HasTA: true, TA: 0x80, HasTB: true, TB: 0x45, HasTD: true, TD: 0x71},
			{Index: 4, HasTA: true, TA: 0x20, HasTB: true, TB: 0x99, HasTC: true, TC: 0x01},
		},
		protocols:  []Protocol{1},
		historical: "4F4B",
		tck:        bp(0x76),
		fi:         512, di: 32, fmax: 5, n: 255, wi: 20,
		mode: &SpecificMode{Protocol: 1, CanChange: false, ImplicitFD: true},
		t1:   &T1Params{IFSC: 128, BWI: 4, CWI: 5, CRC: true},
	},
	{
		// Exactly MaxLen bytes: a TD chain of 16 T=0 groups plus 15
		// historical bytes. T=0 only, so no TCK.
		name: "33 bytes",
		hex:  "3B 8F" + strings.Repeat(" 80", 15) + " 00" + " 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F",
		conv: ConventionDirect, t0: 0x8F,
		groups: func() []InterfaceGroup {
			var g []InterfaceGroup
			for i := 1; i <= 15; i++ {
				g = append(g, InterfaceGroup{Index: i, HasTD: true, TD: 0x80})
			}
			return append(g, InterfaceGroup{Index: 16, HasTD: true, TD: 0x00})
		}(),
		protocols:  []Protocol{0},
		historical: "0102030405060708090A0B0C0D0E0F",
		fi:         372, di: 1, fmax: 5, wi: 10,
	},
}

func TestParseValid(t *testing.T) {
	for _, tc := range validATRs {
		t.Run(tc.name, func(t *testing.T) {
			in := mustHex(t, tc.hex)
			a, err := Parse(in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !bytes.Equal(a.Raw, in) {
				t.Errorf("Raw = %X, want %X", []byte(a.Raw), in)
			}
			if a.TS != in[0] || a.Convention != tc.conv {
				t.Errorf("TS/Convention = %02X/%v, want %02X/%v", a.TS, a.Convention, in[0], tc.conv)
			}
			if a.T0 != tc.t0 {
				t.Errorf("T0 = %02X, want %02X", a.T0, tc.t0)
			}
			if !reflect.DeepEqual(a.Interface, tc.groups) {
				t.Errorf("Interface = %+v\nwant        %+v", a.Interface, tc.groups)
			}
			if !reflect.DeepEqual(a.Protocols, tc.protocols) {
				t.Errorf("Protocols = %v, want %v", a.Protocols, tc.protocols)
			}
			if want := mustHex(t, tc.historical); !bytes.Equal(a.Historical, want) {
				t.Errorf("Historical = %X, want %X", []byte(a.Historical), want)
			}
			switch {
			case tc.tck == nil && a.TCK != nil:
				t.Errorf("TCK = %02X, want absent", *a.TCK)
			case tc.tck != nil && (a.TCK == nil || *a.TCK != *tc.tck):
				t.Errorf("TCK = %v, want %02X", a.TCK, *tc.tck)
			}
			if !a.TCKValid {
				t.Error("TCKValid = false")
			}
			if a.Fi != tc.fi || a.Di != tc.di || a.FMaxMHz != tc.fmax {
				t.Errorf("Fi/Di/fmax = %d/%d/%g, want %d/%d/%g", a.Fi, a.Di, a.FMaxMHz, tc.fi, tc.di, tc.fmax)
			}
			if a.N != tc.n || a.WI != tc.wi {
				t.Errorf("N/WI = %d/%d, want %d/%d", a.N, a.WI, tc.n, tc.wi)
			}
			if !reflect.DeepEqual(a.SpecificMode, tc.mode) {
				t.Errorf("SpecificMode = %+v, want %+v", a.SpecificMode, tc.mode)
			}
			if !reflect.DeepEqual(a.T1, tc.t1) {
				t.Errorf("T1 = %+v, want %+v", a.T1, tc.t1)
			}
		})
	}
}

// Every proper prefix of a valid ATR is structurally incomplete, so it must
// be reported as truncated (or empty), never accepted or mis-classified.
func TestParsePrefixesTruncated(t *testing.T) {
	for _, tc := range validATRs {
		in := mustHex(t, tc.hex)
		for n := 0; n < len(in); n++ {
			a, err := Parse(in[:n])
			want := ErrTruncated
			if n == 0 {
				want = ErrEmpty
			}
			if !errors.Is(err, want) || a != nil {
				t.Errorf("%s[:%d]: got (%v, %v), want nil and %v", tc.name, n, a, err, want)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		is      []error
		msg     string // exact message, if set
		contain string // substring of message, if set
		partial bool   // a decoded ATR is returned alongside the error
		check   func(t *testing.T, err error, a *ATR)
	}{
		{name: "empty", in: nil, is: []error{ErrEmpty}},
		{name: "empty non-nil", in: []byte{}, is: []error{ErrEmpty}},
		{
			name: "TS only", in: []byte{0x3B}, is: []error{ErrTruncated},
			msg: "atr: truncated: T0 is missing, the ATR ends at byte 1",
		},
		{
			name: "TD1 announces TA2", in: mustHex(t, "3B 90 11 10"), is: []error{ErrTruncated},
			msg: "atr: truncated: TD1 announces TA2 but the ATR ends at byte 4",
			check: func(t *testing.T, err error, _ *ATR) {
				var te *TruncatedError
				if !errors.As(err, &te) || te.Missing != "TA2" || te.AnnouncedBy != "TD1" || te.Len != 4 {
					t.Errorf("TruncatedError = %+v", te)
				}
			},
		},
		{
			name: "T0 announces TB1", in: mustHex(t, "3B 20"), is: []error{ErrTruncated},
			msg: "atr: truncated: T0 announces TB1 but the ATR ends at byte 2",
		},
		{
			name: "historical short", in: mustHex(t, "3B 68 00 00 00 73 C8 40 12"), is: []error{ErrTruncated},
			msg: "atr: truncated: T0 announces 8 historical bytes but the ATR ends at byte 9 (only 5 present)",
		},
		{
			name: "TCK missing", in: mustHex(t, "3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34"), is: []error{ErrTruncated},
			msg: "atr: truncated: TD1 announces TCK but the ATR ends at byte 17 (offering T=1 makes the check byte mandatory)",
		},
		{
			name: "bad TCK", in: mustHex(t, "3B 8E 80 01 80 31 80 66 B0 84 0C 01 6E 01 83 00 90 00 1C"),
			is: []error{ErrBadTCK}, msg: "atr: bad TCK: expected 0x1D, got 0x1C", partial: true,
			check: func(t *testing.T, err error, a *ATR) {
				var te *TCKError
				if !errors.As(err, &te) || te.Expected != 0x1D || te.Got != 0x1C {
					t.Errorf("TCKError = %+v", te)
				}
				if a.TCKValid || a.TCK == nil || *a.TCK != 0x1C {
					t.Errorf("TCK = %v valid=%v", a.TCK, a.TCKValid)
				}
				if !strings.Contains(a.String(), "TCK  1C  INVALID: expected 1D") {
					t.Errorf("String() does not flag the TCK:\n%s", a)
				}
			},
		},
		{
			name: "bad TS", in: mustHex(t, "3A 00"), is: []error{ErrInvalidTS},
			msg: "atr: invalid TS 0x3A, want 0x3B (direct) or 0x3F (inverse)",
		},
		{
			name: "undecoded inverse TS", in: mustHex(t, "03 00"), is: []error{ErrInvalidTS},
			contain: "inverse-convention TS read without decoding",
		},
		{
			name: "too long", in: append(mustHex(t, validATRs[len(validATRs)-1].hex), 0x00),
			is: []error{ErrTooLong}, msg: "atr: too long: 34 bytes, ISO/IEC 7816-3 allows at most 33",
			check: func(t *testing.T, err error, _ *ATR) {
				var te *TooLongError
				if !errors.As(err, &te) || te.Len != 34 {
					t.Errorf("TooLongError = %+v", te)
				}
			},
		},
		{
			name: "trailing", in: mustHex(t, "3B 68 00 00 00 73 C8 40 12 00 90 00 90 00"), is: []error{ErrTrailing},
			msg: "atr: 2 extra byte(s) after the end of the ATR, starting at byte 13: 90 00", partial: true,
			check: func(t *testing.T, err error, a *ATR) {
				var te *TrailingError
				if !errors.As(err, &te) || te.At != 13 || !bytes.Equal(te.Extra, []byte{0x90, 0x00}) {
					t.Errorf("TrailingError = %+v", te)
				}
				if len(a.Raw) != 12 {
					t.Errorf("Raw = %s, want the 12 structural bytes", a.Raw)
				}
			},
		},
		{
			name: "TCK on T0-only ATR", in: mustHex(t, "3B 02 14 50 46"), is: []error{ErrTrailing},
			contain: "valid TCK, but a T=0-only ATR must not send one", partial: true,
		},
		{
			name: "bad TCK and trailing", in: mustHex(t, "3B 8E 80 01 80 31 80 66 B0 84 0C 01 6E 01 83 00 90 00 1C 00"),
			is: []error{ErrBadTCK, ErrTrailing}, partial: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%X) succeeded: %v", tc.in, a)
			}
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("error %q is not %v", err, target)
				}
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("message\n got %q\nwant %q", err, tc.msg)
			}
			if tc.contain != "" && !strings.Contains(err.Error(), tc.contain) {
				t.Errorf("message %q lacks %q", err, tc.contain)
			}
			if tc.partial != (a != nil) {
				t.Errorf("returned ATR = %v, want partial=%v", a, tc.partial)
			}
			if tc.check != nil {
				tc.check(t, err, a)
			}
		})
	}
}

func TestParseHex(t *testing.T) {
	want := mustHex(t, "3B8E800180318066B0840C016E0183009000 1D")
	for _, s := range []string{
		"3B 8E 80 01 80 31 80 66 B0 84 0C 01 6E 01 83 00 90 00 1D",
		"3b:8e:80:01:80:31:80:66:b0:84:0c:01:6e:01:83:00:90:00:1d",
		"3B8E800180318066B0840C016E0183009000 1D",
		"  3b8e8001 8031\t8066b084\n0c016e01 8300 9000 1d\n",
	} {
		a, err := ParseHex(s)
		if err != nil {
			t.Errorf("ParseHex(%q): %v", s, err)
			continue
		}
		if !bytes.Equal(a.Raw, want) {
			t.Errorf("ParseHex(%q).Raw = %s", s, a.Raw)
		}
	}
	for _, s := range []string{"3B 6", "3 B 68", "3B ZZ", "0x3B68"} {
		if _, err := ParseHex(s); !errors.Is(err, ErrInvalidHex) {
			t.Errorf("ParseHex(%q) error = %v, want ErrInvalidHex", s, err)
		}
	}
	if _, err := ParseHex(" : "); !errors.Is(err, ErrEmpty) {
		t.Errorf("ParseHex of separators only: %v, want ErrEmpty", err)
	}
}

func TestString(t *testing.T) {
	a, err := ParseHex("3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4")
	if err != nil {
		t.Fatal(err)
	}
	s := a.String()
	for _, want := range []string{
		"ATR: 3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4 (18 bytes)",
		"TS   3B  direct convention",
		"T0   F8  TA1 TB1 TC1 TD1 follow; K=8 historical bytes",
		"TA1  13  FI=1 DI=3: Fi=372, f(max)=5 MHz, Di=4",
		"TD1  81  TD2 follows; T=1",
		"TA3  FE  T=1 IFSC=254 bytes",
		"TB3  15  T=1 BWI=1, CWI=5",
		`hist 59 75 62 69 6B 65 79 34 "Yubikey4"`,
		"TCK  D4  valid",
		"Protocols: T=1",
		"Fi/Di = 372/4",
		"T=1: IFSC=254, BWI=1, CWI=5, EDC=LRC",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}

	a, err = ParseHex("3F 67 25 00 21 20 00 0F 78 90 00")
	if err != nil {
		t.Fatal(err)
	}
	s = a.String()
	for _, want := range []string{"TS   3F  inverse convention", "TCK  --  absent", "Protocols: T=0"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}

	// Specific mode and the repeated-T=1-byte rule must be visible to a
	// technician, not just in the struct.
	a, err = ParseHex("3B F2 96 00 FF D1 91 14 B1 80 45 71 20 99 01 4F 4B 76")
	if err != nil {
		t.Fatal(err)
	}
	s = a.String()
	for _, want := range []string{
		"TA2  91  specific mode, T=1, unable to change mode, implicit Fi/Di",
		"TA4  20  T=1 specific, repeated (only TA3 is defined)",
		"TC4  01  T=1 error detection: CRC",
		"N=255",
		`hist 4F 4B "OK"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}

	var nilATR *ATR
	_ = nilATR.String()
	_ = (&ATR{}).String()
	_ = (&ATR{TCK: bp(1)}).String()
}

func TestJSON(t *testing.T) {
	a, err := ParseHex("3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4")
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	got := string(j)
	for _, want := range []string{
		`"raw":"3BF81300008131FE15597562696B657934D4"`,
		`"convention":"direct"`,
		`"interface":[{"index":1,"ta":19,"tb":0,"tc":0,"td":129},{"index":2,"td":49},{"index":3,"ta":254,"tb":21}]`,
		`"protocols":[1]`,
		`"historical":"597562696B657934"`,
		`"tck":212`,
		`"tck_valid":true`,
		`"t1":{"ifsc":254,"bwi":1,"cwi":5,"crc":false}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("JSON lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "specific_mode") {
		t.Errorf("absent TA2 should be omitted: %s", got)
	}

	// HexBytes round-trips and never emits null.
	for _, tc := range []struct {
		in   HexBytes
		want string
	}{{nil, `""`}, {HexBytes{}, `""`}, {HexBytes{0x3b, 0xab}, `"3BAB"`}} {
		j, err := json.Marshal(tc.in)
		if err != nil || string(j) != tc.want {
			t.Errorf("Marshal(%#v) = %s, %v; want %s", tc.in, j, err, tc.want)
		}
	}
	var hb HexBytes
	if err := json.Unmarshal([]byte(`"3b:ab cd"`), &hb); err != nil || !bytes.Equal(hb, []byte{0x3B, 0xAB, 0xCD}) {
		t.Errorf("Unmarshal = %X, %v", []byte(hb), err)
	}
	if err := json.Unmarshal([]byte(`"3bx"`), &hb); err == nil {
		t.Error("Unmarshal of bad hex succeeded")
	}
}

func TestMatch(t *testing.T) {
	atr := mustHex(t, "3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4")
	mask := bytes.Repeat([]byte{0xFF}, len(atr))
	mask[len(mask)-2], mask[len(mask)-1] = 0, 0 // ignore model digit and TCK
	other := bytes.Clone(atr)
	other[len(other)-2], other[len(other)-1] = 0x35, 0xD5

	tests := []struct {
		name                string
		atr, pattern, mask_ []byte
		want                bool
	}{
		{"exact", atr, atr, bytes.Repeat([]byte{0xFF}, len(atr)), true},
		{"masked difference", other, atr, mask, true},
		{"unmasked difference", other, atr, bytes.Repeat([]byte{0xFF}, len(atr)), false},
		{"zero mask", other, make([]byte, len(atr)), make([]byte, len(atr)), true},
		{"short pattern", atr, atr[:4], mask[:4], false},
		{"short mask", atr, atr, mask[:4], false},
		{"all empty", nil, nil, nil, true},
	}
	for _, tc := range tests {
		if got := Match(tc.atr, tc.pattern, tc.mask_); got != tc.want {
			t.Errorf("%s: Match = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range validATRs {
		f.Add(mustHex(f, tc.hex))
	}
	for _, s := range []string{
		"", "3B", "3F", "03 00", "3B 90 11 10", "3B 68 00 00 00 73 C8 40 12",
		"3B 8E 80 01 80 31 80 66 B0 84 0C 01 6E 01 83 00 90 00 1C",
		"3B 8E 80 01 80 31 80 66 B0 84 0C 01 6E 01 83 00 90 00 1C 00",
		"3B 02 14 50 46", "3B FF FF FF FF FF FF FF FF FF",
	} {
		f.Add(mustHex(f, s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		a, err := Parse(in)
		if !bytes.Equal(in, orig) {
			t.Fatal("Parse modified its input")
		}
		if a != nil {
			// Whatever came back must be printable and encodable: the CLI
			// shows partial ATRs too.
			_ = a.String()
			if _, jerr := json.Marshal(a); jerr != nil {
				t.Fatalf("json.Marshal: %v", jerr)
			}
		}
		if err != nil {
			if a != nil && !errors.Is(err, ErrBadTCK) && !errors.Is(err, ErrTrailing) {
				t.Fatalf("ATR returned with unexpected error %v", err)
			}
			if hs := hex.EncodeToString(in); hs != "" {
				if _, herr := ParseHex(hs); (herr == nil) != (err == nil) {
					t.Fatalf("ParseHex disagrees with Parse: %v vs %v", herr, err)
				}
			}
			return
		}
		if a == nil {
			t.Fatal("nil ATR without error")
		}
		if !bytes.Equal(a.Raw, in) {
			t.Fatalf("Raw = %X, want %X", []byte(a.Raw), in)
		}
		if len(a.Historical) != int(a.T0&0x0F) {
			t.Fatalf("len(Historical) = %d, T0 says %d", len(a.Historical), a.T0&0x0F)
		}
		onlyT0 := len(a.Protocols) == 1 && a.Protocols[0] == 0
		if (a.TCK == nil) != onlyT0 || !a.TCKValid {
			t.Fatalf("TCK = %v valid=%v with protocols %v", a.TCK, a.TCKValid, a.Protocols)
		}
		if a.TCK != nil && xor(in[1:]) != 0 {
			t.Fatal("accepted a TCK that does not XOR to zero")
		}
		// Mutating the result must not reach back into the caller's buffer.
		if len(a.Raw) > 0 {
			a.Raw[0] ^= 0xFF
			if in[0] != orig[0] {
				t.Fatal("Raw aliases the input")
			}
		}
	})
}
