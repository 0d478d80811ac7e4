package engine_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"ssstation/internal/cardsim/engine"
	"ssstation/internal/cardsim/vpcd"
	"ssstation/pcsc/apdu"
)

// testImage has one file of each kind and access condition.
const testImage = `{
  "atr": "3B 8D 81 31 FE 45 00 81 4E 43 23 86 97 15 99 00 BF 7C 7A 0D",
  "atr_t0": "3B 6D 00 00 00 81 4E 43 23 86 97 15 99 00 BF 7C 7A",
  "pin": {"value": "12345", "tries": 3},
  "mf": {
    "children": [
      {"type": "ef", "fid": "2F00", "content": "000102030405060708090A0B0C0D0E0F", "read": "free", "update": "free"},
      {"type": "ef", "fid": "2F02", "structure": "record", "record_size": 5,
       "records": ["01 01 AA", "02 03 BB CC DD"], "read": "free", "update": "free"},
      {"type": "df", "fid": "DF01", "name": "A0 00 00 00 01 02", "children": [
        {"type": "ef", "fid": "EF01", "sfi": 1, "content": "5A5A", "size": 300, "read": "pin", "update": "pin"},
        {"type": "ef", "fid": "EF02", "sfi": 2, "structure": "record", "records": ["0A 01 01"], "read": "key:0A", "update": "never"},
        {"type": "ef", "fid": "EF03", "content": "01", "read": "never"},
        {"type": "df", "fid": "DF11", "children": []}
      ]}
    ]
  }
}`

func newCard(t *testing.T) *engine.Card {
	t.Helper()
	img, err := engine.ParseImage([]byte(testImage))
	if err != nil {
		t.Fatalf("ParseImage: %v", err)
	}
	c, err := engine.New(img)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.Reset()
	return c
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := apdu.ParseHex(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

// step is one command and the exact response expected (data then SW, hex).
type step struct{ cmd, resp string }

func run(t *testing.T, c vpcd.Card, steps ...step) {
	t.Helper()
	for i, s := range steps {
		got := c.Process(unhex(t, s.cmd))
		want := unhex(t, s.resp)
		if !bytes.Equal(got, want) {
			t.Fatalf("step %d: %s\n got  %X\n want %X", i+1, s.cmd, got, want)
		}
	}
}

func TestCardImplementsVPCD(t *testing.T) {
	var _ vpcd.Card = newCard(t)
	var _ vpcd.Card = engine.T0(newCard(t))
}

func TestSelect(t *testing.T) {
	c := newCard(t)
	run(t, c,
		step{"00A4000002 3F00", "9000"},
		step{"00A4000002 3F00 00", "6F04 83023F00 9000"},
		step{"00A40000", "9000"},                // no data: MF
		step{"00A4000000", "6F0483023F00 9000"}, // no data, Le: MF with its FCI
		step{"00A4000C02 3F00", "9000"},         // P2=0C: no FCI
		step{"00A4000C02 3F00 00", "9000"},      // even with Le
		step{"00A4000002 DF01 00", "6F0C 8302DF01 8406A00000000102 9000"},
		step{"00A4000002 EF01 00", "6F0B 820101 8302EF01 8002012C 9000"},
		step{"00A4000002 2F00", "6A82"}, // 2F00 is under the MF, not DF01
		step{"00A4000002 3F00", "9000"},
		step{"00A4040006 A00000000102 00", "6F0C 8302DF01 8406A00000000102 9000"},
		step{"00A4040006 A00000000103 00", "6A82"},
		step{"00A4020C02 EF03", "9000"}, // P1=02: EF under the current DF
		step{"00A4020C02 DF11", "9000"}, // P1=02 also takes a DF
		step{"00A4030C00", "9000"},      // parent of DF11: DF01
		step{"00A4000C02 DF01", "9000"}, // the current DF by its FID
		step{"00A4010C02 EF01", "6A82"}, // P1=01 is for DFs only
		step{"00A4010C02 DF11", "9000"},
		step{"00A4000C02 DF01", "9000"}, // the parent by its FID
		step{"00A4000C02 1234", "6A82"},
		step{"00A4000003 3F0001", "6700"},
		step{"00A4000001 3F", "6700"},
		step{"00A4040000", "6700"}, // Lc=00 parses as Le: no name
		step{"00A4040011 " + strings.Repeat("A0", 17), "6700"},
		step{"00A4030C02 3F00", "6700"},
		step{"00A4080002 3F00", "6A86"},
		step{"00A4000102 3F00", "6A86"},
		step{"00A4000002 3F00 02", "6F04 9000"}, // FCI cut to Ne
	)
	// A failed SELECT keeps the selection.
	run(t, c,
		step{"00A4000C02 DF01", "9000"},
		step{"00A4020C02 EF03", "9000"},
		step{"00A4020C02 9999", "6A82"},
		step{"00B0000001", "6982"}, // still on EF03 (never)
	)
	var df *engine.DF
	var ef *engine.EF
	c.Do(func(c *engine.Card) { df, ef = c.CurrentDF, c.CurrentEF })
	if df.FID != 0xDF01 || ef == nil || ef.FID != 0xEF03 || ef.Path() != "3F00/DF01/EF03" {
		t.Fatalf("selection %v %v", df, ef)
	}
}

func TestClassAndInstruction(t *testing.T) {
	c := newCard(t)
	run(t, c,
		step{"80A4000002 3F00", "6E00"},
		step{"FFA4000002 3F00", "6E00"},
		step{"00CA9F7F00", "6D00"},
		step{"00C0000010", "6D00"},     // no GET RESPONSE on a T=1 card
		step{"00A40000053F00", "6700"}, // Lc 5 with 2 data bytes
		step{"00A400", "6700"},         // shorter than a header
	)
	c.AllowCLA(0x80)
	run(t, c,
		step{"80A4000002 3F00", "6E00"}, // the class passes, SELECT refuses it
		step{"80CA9F7F00", "6D00"},
	)
}

func TestReadBinary(t *testing.T) {
	c := newCard(t)
	run(t, c,
		step{"00B0000004", "6986"}, // no current EF after reset
		step{"00A4000C02 2F00", "9000"},
		step{"00B0000004", "00010203 9000"},
		step{"00B000020C", "02030405060708090A0B0C0D 9000"},
		step{"00B0000C08", "0C0D0E0F 6282"}, // Ne beyond the end
		step{"00B0000C00", "0C0D0E0F 9000"}, // Le=00: what there is
		step{"00B0000F01", "0F 9000"},
		step{"00B0001001", "6B00"}, // offset at the end
		step{"00B0010001", "6B00"},
		step{"00B00000", "6700"},         // no Le
		step{"00B0000001 00 01", "6700"}, // data
		step{"00A4000C02 2F02", "9000"},
		step{"00B0000004", "6981"}, // record EF
		step{"00A4000C02 DF01", "9000"},
		step{"00B0000004", "6986"}, // a DF selected: no EF
		step{"00B0810002", "6982"}, // SFI 1 = EF01, PIN
		step{"00B0830002", "6A82"}, // no SFI 3
		step{"00B0A10002", "6A86"}, // bad SFI form
		step{"0020000003 12345F", "9000"},
		step{"00B0810002", "5A5A 9000"},
		step{"00B0000003", "5A5A00 9000"}, // SFI read made EF01 current
		step{"00B0000000", strings.Repeat("00", 0) + "5A5A" + strings.Repeat("00", 254) + " 9000"},
		step{"00B0010000", strings.Repeat("00", 44) + " 9000"}, // 300-256
		step{"00B0012B08", "00 6282"},
		step{"00A4000C02 EF03", "9000"},
		step{"00B0000001", "6982"}, // never
	)
}

func TestUpdateBinary(t *testing.T) {
	c := newCard(t)
	run(t, c,
		step{"00D6000001 AA", "6986"},
		step{"00A4000C02 2F00", "9000"},
		step{"00D6000202 AABB", "9000"},
		step{"00B0000004", "0001AABB 9000"},
		step{"00D6000F02 AABB", "6700"}, // runs past the end
		step{"00D6001001 AA", "6B00"},
		step{"00D60000", "6700"},
		step{"00D6000F01 EE", "9000"},
		step{"00B0000F01", "EE 9000"},
		step{"00A4000C02 2F02", "9000"},
		step{"00D6000001 AA", "6981"},
		step{"00A4000C02 DF01", "9000"},
		step{"00D6810001 AA", "6982"}, // EF01 needs the PIN
		step{"0020000003 12345F", "9000"},
		step{"00D6810001 AA", "9000"},
		step{"00B0000002", "AA5A 9000"},
		step{"00A4000C02 EF03", "9000"},
		step{"00D6000001 AA", "6982"}, // update defaults to never
	)
}

func TestReadRecord(t *testing.T) {
	c := newCard(t)
	run(t, c,
		step{"00B2010400", "6986"},
		step{"00A4000C02 2F02", "9000"},
		step{"00B2010400", "0101AA 9000"},
		step{"00B2020400", "0203BBCCDD 9000"},
		step{"00B2020405", "0203BBCCDD 9000"},
		step{"00B2020410", "0203BBCCDD 9000"},
		step{"00B2020402", "6C05"},
		step{"00B2030400", "6A83"},
		step{"00B2000400", "6A86"}, // record 0
		step{"00B2010000", "6A86"}, // by tag: not in the generic engine
		step{"00B2010500", "6A86"}, // P2 mode 100 only
		step{"00B20104", "6700"},
		step{"00A4000C02 2F00", "9000"},
		step{"00B2010400", "6981"},
		step{"00A4000C02 DF01", "9000"},
		step{"00B2011400", "6982"}, // SFI 2 = EF02, key 0A
	)
	c.Do(func(c *engine.Card) { c.Security.Authenticate(0x0A) })
	run(t, c,
		step{"00B2011400", "0A0101 9000"},
		step{"00B2011C00", "6A82"}, // SFI 3
	)
	c.Reset()
	run(t, c, step{"00A4040006 A00000000102", "9000"}, step{"00B2011400", "6982"})
}

func TestUpdateRecord(t *testing.T) {
	c := newCard(t)
	run(t, c,
		step{"00DC010403 010199", "6986"},
		step{"00A4000C02 2F02", "9000"},
		step{"00DC010403 010199", "9000"},
		step{"00B2010400", "010199 9000"},
		step{"00DC010405 0103112233", "9000"}, // longer, within record_size
		step{"00B2010400", "0103112233 9000"},
		step{"00DC010406 010411223344", "6700"}, // beyond record_size 5
		step{"00DC030403 030100", "6A83"},
		step{"00DC0104", "6700"},
		step{"00DC010003 010199", "6A86"},
		step{"00A4000C02 2F00", "9000"},
		step{"00DC010401 00", "6981"},
		step{"00A4000C02 DF01", "9000"},
		step{"00DC011403 0A0102", "6982"}, // EF02 update never
	)
}

func TestGetChallenge(t *testing.T) {
	c := newCard(t)
	c.Rand = bytes.NewReader(unhex(t, "1112131415161718 21222324 3132333435363738393A3B3C3D3E3F40"))
	run(t, c, step{"0084000008", "1112131415161718 9000"})
	var ch []byte
	c.Do(func(c *engine.Card) { ch = c.Challenge })
	if !bytes.Equal(ch, unhex(t, "1112131415161718")) {
		t.Fatalf("Challenge = %X", ch)
	}
	run(t, c,
		step{"0084000004", "21222324 9000"},
		step{"0084000010", "3132333435363738393A3B3C3D3E3F40 9000"},
		step{"0084000005", "6700"},
		step{"0084000000", "6700"},
		step{"00840000", "6700"},
		step{"0084010008", "6A86"},
		step{"0084000001 00 08", "6700"},
		step{"8084000008", "6E00"},
	)
	c.Do(func(c *engine.Card) { ch = c.Challenge })
	if !bytes.Equal(ch, unhex(t, "3132333435363738393A3B3C3D3E3F40")) {
		t.Fatalf("Challenge = %X after a failed GET CHALLENGE", ch)
	}
	c.Reset()
	c.Do(func(c *engine.Card) { ch = c.Challenge })
	if ch != nil {
		t.Fatalf("Challenge survives Reset: %X", ch)
	}
	// With the real random source: 8 bytes, differing between calls.
	c.Rand = nil
	a, b := c.Process(unhex(t, "0084000008")), c.Process(unhex(t, "0084000008"))
	if len(a) != 10 || bytes.Equal(a, b) {
		t.Fatalf("random challenges %X %X", a, b)
	}
}

func TestVerify(t *testing.T) {
	c := newCard(t)
	run(t, c,
		step{"00200000", "63C3"},
		step{"0020000003 123456", "63C2"}, // wrong
		step{"00200000", "63C2"},
		step{"0020000003 12345F", "9000"}, // right: counter back to 3
		step{"00200000", "9000"},
		step{"0020000003 123456", "63C2"}, // a wrong try loses the verified state
		step{"00200000", "63C2"},
		step{"0020000003 12345F", "9000"},
		step{"00A4000C02 DF01", "9000"},
		step{"00B0810001", "5A 9000"},
		step{"0020000109 112233445566778899", "6A88"},
		step{"0020000009 112233445566778899", "6700"},
		step{"0020010003 12345F", "6A86"},
		step{"0020000103 12345F", "6A88"},
		step{"8020000003 12345F", "6E00"},
	)
	c.Reset()
	run(t, c,
		step{"00200000", "63C3"}, // verified state lost, counter kept
		step{"00A4000C02 DF01", "9000"},
		step{"00B0810001", "6982"},
		step{"0020000003 123450", "63C2"},
		step{"0020000002 1234", "63C1"},
		step{"0020000004 1234 5F FF", "63C0"},
		step{"0020000003 12345F", "6983"}, // blocked: even the right PIN
		step{"00200000", "6983"},
	)
	c.Reset()
	run(t, c, step{"00200000", "6983"})
	c.Do(func(c *engine.Card) { c.PIN.Unblock() })
	run(t, c, step{"0020000003 12345F", "9000"})

	// No PIN in the image.
	img, err := engine.ParseImage([]byte(`{"atr":"3B 00","mf":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	nopin, err := engine.New(img)
	if err != nil {
		t.Fatal(err)
	}
	run(t, nopin, step{"0020000003 12345F", "6A88"}, step{"00200000", "6A88"})
}

func TestPINCoding(t *testing.T) {
	for digits, want := range map[string]string{"123456": "123456", "12345": "12345F", "1": "1F", "0000000000000000": "0000000000000000"} {
		got, err := engine.EncodePIN(digits)
		if err != nil || hex.EncodeToString(got) != strings.ToLower(want) {
			t.Errorf("EncodePIN(%q) = %X, %v; want %s", digits, got, err, want)
		}
		back, err := engine.DecodePIN(got)
		if err != nil || back != digits {
			t.Errorf("DecodePIN(%X) = %q, %v", got, back, err)
		}
	}
	for _, bad := range []string{"", "12a4", "12345678901234567"} {
		if _, err := engine.EncodePIN(bad); err == nil {
			t.Errorf("EncodePIN(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"1F23", "1A", "FF", ""} {
		if _, err := engine.DecodePIN(unhex(t, bad)); err == nil {
			t.Errorf("DecodePIN(%s) accepted", bad)
		}
	}
	p := &engine.PINState{Value: "1234", MaxTries: 3, Left: 3}
	if err := p.Set("98765"); err != nil || !p.Matches(unhex(t, "98765F")) {
		t.Fatalf("Set: %v", err)
	}
	if p.Set("98x") == nil {
		t.Fatal("Set accepted a letter")
	}
}

// An extension overrides and adds INS, and falls back to the generic
// handlers; its reset hook runs on Reset.
func TestExtension(t *testing.T) {
	c := newCard(t)
	generic := c.Handler(0xB2)
	if generic == nil {
		t.Fatal("no READ RECORD handler")
	}
	// READ RECORD by tag (P2=00), the SS engine's job.
	c.Handle(0xB2, func(c *engine.Card, cmd apdu.Command) apdu.Response {
		if cmd.P2 == 0x00 && c.CurrentEF != nil {
			if n := c.CurrentEF.FindRecord(cmd.P1); n > 0 {
				rec, _ := c.CurrentEF.Record(n)
				return engine.OK(rec)
			}
			return engine.Status(apdu.SWRecordNotFound)
		}
		return generic(c, cmd)
	})
	run(t, c,
		step{"00A4000C02 2F02", "9000"},
		step{"00B2020000", "0203BBCCDD 9000"}, // by tag
		step{"00B2090000", "6A83"},
		step{"00B2010400", "0101AA 9000"}, // generic
	)
}

func TestExtensionAuth(t *testing.T) {
	c := newCard(t)
	c.Handle(0x82, func(c *engine.Card, cmd apdu.Command) apdu.Response {
		if c.Challenge == nil {
			return engine.Status(apdu.SWConditionsNotSatisfied)
		}
		c.Challenge = nil
		c.Security.Authenticate(cmd.P2)
		return engine.Status(apdu.SWOK)
	})
	resets := 0
	c.OnReset(func(*engine.Card) { resets++ })
	c.CheckAccess = func(c *engine.Card, a engine.Access) apdu.StatusWord {
		if a.Kind == engine.Never {
			return apdu.SWConditionsNotSatisfied
		}
		return engine.DefaultCheckAccess(c, a)
	}
	c.Rand = bytes.NewReader(make([]byte, 8))
	run(t, c,
		step{"0082000A10 00000000000000000000000000000000", "6985"},
		step{"0084000008", "0000000000000000 9000"},
		step{"0082000A10 00000000000000000000000000000000", "9000"},
		step{"00A4000C02 DF01", "9000"},
		step{"00B2011400", "0A0101 9000"},
		step{"00A4000C02 EF03", "9000"},
		step{"00B0000001", "6985"}, // the custom access check
	)
	c.Reset()
	if resets != 1 {
		t.Fatalf("reset hook ran %d times", resets)
	}
	run(t, c, step{"00A4040006 A00000000102", "9000"}, step{"00B2011400", "6982"})
	c.Handle(0x82, nil)
	run(t, c, step{"0082000A10 00000000000000000000000000000000", "6D00"})
}

// Cards built from one image are independent.
func TestIndependentCards(t *testing.T) {
	img, err := engine.ParseImage([]byte(testImage))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := engine.New(img)
	b, _ := engine.New(img)
	run(t, a, step{"00A4000C02 2F00", "9000"}, step{"00D6000001 FF", "9000"}, step{"0020000003 999999", "63C2"})
	run(t, b, step{"00A4000C02 2F00", "9000"}, step{"00B0000001", "00 9000"}, step{"00200000", "63C3"})
	if a.Image() != img {
		t.Fatal("Image()")
	}
}

func TestDefaultImage(t *testing.T) {
	c, err := engine.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	img := engine.DefaultImage()
	if !bytes.Equal(c.ATR(), unhex(t, img.ATR)) || !bytes.Equal(c.ATRT0(), unhex(t, img.ATRT0)) {
		t.Fatal("ATRs")
	}
	// Every EF05/EF06 record is one simple TLV of the declared length.
	var ssse *engine.DF
	c.Do(func(c *engine.Card) { ssse = c.MF.FindName([]byte("sx1.sh.\xC9\xE7\xBB\xE1\xB1\xA3\xD5\xCF")) })
	if ssse == nil {
		t.Fatal("no SSSE")
	}
	for _, fid := range []uint16{0xEF05, 0xEF06} {
		_, ef := ssse.Child(fid)
		if ef == nil || len(ef.Records) != 7 {
			t.Fatalf("%04X: %v", fid, ef)
		}
		for i, r := range ef.Records {
			if len(r) < 2 || len(r) != 2+int(r[1]) {
				t.Errorf("%04X record %d: % X is not one TLV", fid, i+1, r)
			}
		}
	}
	run(t, c,
		step{"00A4000C02 2F01", "9000"},
		step{"00B0000018", hex.EncodeToString([]byte("cardsim default image v1")) + "9000"},
		step{"00A404000F 7378312E73682EC9E7BBE1B1A3D5CF 00", "6F11 840F 7378312E73682EC9E7BBE1B1A3D5CF 9000"},
		step{"00A4000C02 EF05", "9000"},
		step{"00B2010400", "0110 639900D15600000500BF7C7A48FB4966 9000"},
		step{"00B2072C00", "0709 583030303030303139 9000"},                   // EF05 by SFI 5
		step{"00B2013400", "0812 313131313131313938313031303131313130 9000"}, // EF06 by SFI 6
		step{"00A4000C02 EF07", "9000"},
		step{"00B0000001", "6982"},
		step{"0020000003 123456", "9000"},
	)
	if !bytes.Equal(engine.DefaultImageJSON(), engine.DefaultImageJSON()) || len(engine.DefaultImageJSON()) == 0 {
		t.Fatal("DefaultImageJSON")
	}
}

func TestReset(t *testing.T) {
	c := newCard(t)
	c.Rand = bytes.NewReader(make([]byte, 8))
	run(t, c,
		step{"00A4000C02 DF01", "9000"},
		step{"00A4000C02 EF01", "9000"},
		step{"0020000003 12345F", "9000"},
		step{"0084000008", "0000000000000000 9000"},
	)
	c.Do(func(c *engine.Card) { c.Security.Authenticate(4) })
	c.Reset()
	c.Do(func(c *engine.Card) {
		if c.CurrentDF != c.MF || c.CurrentEF != nil || c.Security.PINVerified || c.Security.Authenticated(4) || c.Challenge != nil {
			t.Errorf("state after Reset: df=%v ef=%v sec=%+v ch=%X", c.CurrentDF.Path(), c.CurrentEF, c.Security, c.Challenge)
		}
	})
}

func TestAccessParse(t *testing.T) {
	for in, want := range map[string]engine.Access{
		"free": {Kind: engine.Free}, "PIN": {Kind: engine.PIN}, "never": {Kind: engine.Never}, "key:0a": {Kind: engine.Key, Key: 0x0A},
	} {
		got, err := engine.ParseAccess(in)
		if err != nil || got != want {
			t.Errorf("ParseAccess(%q) = %v, %v", in, got, err)
		}
		if back, _ := engine.ParseAccess(got.String()); back != got {
			t.Errorf("String round trip of %v", got)
		}
	}
	for _, bad := range []string{"", "key:", "key:123", "key:GG", "always"} {
		if _, err := engine.ParseAccess(bad); err == nil {
			t.Errorf("ParseAccess(%q) accepted", bad)
		}
	}
}

func ExampleCard_Handle() {
	c, _ := engine.New(nil)
	generic := c.Handler(0xB2)
	c.Handle(0xB2, func(c *engine.Card, cmd apdu.Command) apdu.Response {
		if cmd.P2 == 0x00 { // READ RECORD by tag
			if ef := c.CurrentEF; ef != nil {
				if n := ef.FindRecord(cmd.P1); n > 0 {
					rec, _ := ef.Record(n)
					return engine.OK(rec)
				}
			}
			return engine.Status(apdu.SWRecordNotFound)
		}
		return generic(c, cmd)
	})
	c.Reset()
	c.Process([]byte{0x00, 0xA4, 0x04, 0x00, 0x0F, 's', 'x', '1', '.', 's', 'h', '.', 0xC9, 0xE7, 0xBB, 0xE1, 0xB1, 0xA3, 0xD5, 0xCF})
	c.Process([]byte{0x00, 0xA4, 0x00, 0x0C, 0x02, 0xEF, 0x05})
	fmt.Printf("% X\n", c.Process([]byte{0x00, 0xB2, 0x03, 0x00, 0x00}))
	// Output: 03 04 32 2E 30 30 90 00
}
