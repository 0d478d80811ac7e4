package pcsc

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/ebfe/scard"

	"ssstation/pcsc/apdu"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The PIN_VERIFY_STRUCTURE of part 10 (v2.02.09) and pcsc-lite's reader.h,
// written out field by field: every multi-byte field little-endian, no
// padding between fields, abData at offset 19.
func TestVerifyPINStructureLayout(t *testing.T) {
	s := VerifyPINStructure{
		PINFormat: PINFormat{
			Timeout: 0x1E, TimeoutAfterKey: 0x0F,
			FormatString:    FormatUnitsBytes | FormatBCD, // 0x81: bytes, position 0, left, BCD
			PINBlockString:  0x03,                         // no length field, 3-byte block
			PINLengthFormat: 0x00,
			MinDigits:       4, MaxDigits: 12, // wPINMaxExtraDigit 0x040C
			EntryValidation: 0x02, NumberMessage: 0x01, LangID: 0x0804,
		},
		MsgIndex: 0x00,
		APDU:     unhex(t, "00 20 00 00 03 FF FF FF"),
	}
	got, err := s.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, ""+
		"1E"+ // bTimerOut
		"0F"+ // bTimerOut2
		"81"+ // bmFormatString
		"03"+ // bmPINBlockString
		"00"+ // bmPINLengthFormat
		"0C 04"+ // wPINMaxExtraDigit 0x040C, little-endian
		"02"+ // bEntryValidationCondition
		"01"+ // bNumberMessage
		"04 08"+ // wLangId 0x0804, little-endian
		"00"+ // bMsgIndex
		"00 00 00"+ // bTeoPrologue
		"08 00 00 00"+ // ulDataLength
		"00 20 00 00 03 FF FF FF") // abData
	if !bytes.Equal(got, want) {
		t.Fatalf("PIN_VERIFY_STRUCTURE\n got % X\nwant % X", got, want)
	}
	if len(got) != PINVerifyHeaderSize+8 {
		t.Fatalf("size %d", len(got))
	}
}

// The PIN_MODIFY_STRUCTURE: abData at offset 24.
func TestModifyPINStructureLayout(t *testing.T) {
	s := ModifyPINStructure{
		PINFormat: PINFormat{
			Timeout: 0x1E, TimeoutAfterKey: 0x0F,
			FormatString: FormatUnitsBytes | FormatBCD, PINBlockString: 0x03,
			MinDigits: 6, MaxDigits: 6,
			EntryValidation: 0x02, NumberMessage: 0x03, LangID: 0x0409,
		},
		InsertionOffsetOld: 0x00, InsertionOffsetNew: 0x04,
		ConfirmPIN: 0x03,
		MsgIndex1:  0x00, MsgIndex2: 0x01, MsgIndex3: 0x02,
		APDU: unhex(t, "80 5E 01 00 07 FF FF FF FF FF FF FF"),
	}
	got, err := s.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, ""+
		"1E 0F"+ // bTimerOut, bTimerOut2
		"81"+ // bmFormatString
		"03"+ // bmPINBlockString
		"00"+ // bmPINLengthFormat
		"00"+ // bInsertionOffsetOld
		"04"+ // bInsertionOffsetNew
		"06 06"+ // wPINMaxExtraDigit
		"03"+ // bConfirmPIN
		"02"+ // bEntryValidationCondition
		"03"+ // bNumberMessage
		"09 04"+ // wLangId 0x0409
		"00 01 02"+ // bMsgIndex1..3
		"00 00 00"+ // bTeoPrologue
		"0C 00 00 00"+ // ulDataLength 12
		"80 5E 01 00 07 FF FF FF FF FF FF FF")
	if !bytes.Equal(got, want) {
		t.Fatalf("PIN_MODIFY_STRUCTURE\n got % X\nwant % X", got, want)
	}
	if len(got) != PINModifyHeaderSize+12 {
		t.Fatalf("size %d", len(got))
	}
}

func TestPINStructureRefusals(t *testing.T) {
	base := PINFormat{FormatString: 0x81, MinDigits: 4, MaxDigits: 8}
	cases := map[string]VerifyPINStructure{
		"no header":      {PINFormat: base, APDU: []byte{0x00, 0x20}},
		"min 0":          {PINFormat: PINFormat{FormatString: 0x81, MaxDigits: 8}, APDU: unhex(t, "00200000")},
		"max below min":  {PINFormat: PINFormat{FormatString: 0x81, MinDigits: 8, MaxDigits: 4}, APDU: unhex(t, "00200000")},
		"format 3":       {PINFormat: PINFormat{FormatString: 0x83, MinDigits: 4, MaxDigits: 8}, APDU: unhex(t, "00200000")},
		"APDU too large": {PINFormat: base, APDU: make([]byte, 261)},
	}
	for name, s := range cases {
		if _, err := s.Bytes(); err == nil {
			t.Errorf("%s: built", name)
		}
	}
}

func TestParseFeatures(t *testing.T) {
	m, err := ParseFeatures(unhex(t, "06 04 42 33 00 06  07 04 42 33 00 07  12 04 42 33 00 12"))
	if err != nil {
		t.Fatal(err)
	}
	if m[FeatureVerifyPINDirect] != 0x42330006 || m[FeatureModifyPINDirect] != 0x42330007 || m[FeatureGetTLVProperties] != 0x42330012 || len(m) != 3 {
		t.Fatalf("%X", m)
	}
	for _, bad := range []string{"06 04 42 33 00", "06 02 42 33", "06"} {
		if _, err := ParseFeatures(unhex(t, bad)); !errors.Is(err, ErrMalformedFeatures) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if m, err := ParseFeatures(nil); err != nil || len(m) != 0 {
		t.Fatalf("empty list: %v %v", m, err)
	}
}

func TestParseTLVProperties(t *testing.T) {
	// wLcdLayout 0x0210, bMinPINSize 4, bMaxPINSize 12, dwMaxAPDUDataSize 261, sFirmwareID "FW1"
	nums, raw, err := ParseTLVProperties(unhex(t, "01 02 10 02  06 01 04  07 01 0C  0A 04 05 01 00 00  08 03 46 57 31"))
	if err != nil {
		t.Fatal(err)
	}
	if nums[PropertyWLcdLayout] != 0x0210 || nums[PropertyBMinPINSize] != 4 || nums[PropertyBMaxPINSize] != 12 || nums[PropertyDwMaxAPDUDataSize] != 261 {
		t.Fatalf("%v", nums)
	}
	if string(raw[PropertySFirmwareID]) != "FW1" {
		t.Fatalf("%q", raw[PropertySFirmwareID])
	}
	if _, _, err := ParseTLVProperties(unhex(t, "0A 04 05 01")); err == nil {
		t.Fatal("truncated property accepted")
	}
}

// padHandle is a reader with a PIN pad at the PC/SC interface: it answers
// CM_IOCTL_GET_FEATURE_REQUEST, GET_TLV_PROPERTIES, and the PIN controls
// (recording the structure it was given), and reads attributes.
type padHandle struct {
	fakeHandle
	features []byte
	props    []byte
	answer   []byte
	gotCode  uint32
	gotIn    []byte
	attrs    map[scard.Attrib][]byte
}

func (p *padHandle) Control(code uint32, in []byte) ([]byte, error) {
	switch code {
	case cmGetFeatureRequest:
		if p.features == nil {
			return nil, scard.ErrUnsupportedFeature
		}
		return p.features, nil
	case 0x42330012:
		return p.props, nil
	}
	p.gotCode, p.gotIn = code, append([]byte(nil), in...)
	return p.answer, nil
}

func (p *padHandle) GetAttrib(id scard.Attrib) ([]byte, error) {
	if v, ok := p.attrs[id]; ok {
		return v, nil
	}
	return nil, scard.ErrUnsupportedFeature
}

func padCard(h cardHandle) *Card {
	return &Card{reader: "pad", h: h, proto: ProtocolT1, link: shortLink, opts: ConnectOptions{Share: ShareShared}}
}

func TestVerifyPINDirectSendsStructureToFeatureCode(t *testing.T) {
	h := &padHandle{
		fakeHandle: fakeHandle{proto: ProtocolT1},
		features:   unhex(t, "06 04 42 33 00 06  07 04 42 33 00 07  12 04 42 33 00 12"),
		props:      unhex(t, "06 01 04  07 01 10  0A 04 05 01 00 00"),
		answer:     []byte{0x63, 0xC2},
	}
	card := padCard(h)
	ctx := context.Background()
	rf, err := card.Features(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rf.PINPad.Verify || !rf.PINPad.Modify || rf.MinPINSize != 4 || rf.MaxPINSize != 16 || rf.MaxAPDUData != 261 {
		t.Fatalf("%+v", rf)
	}
	if strings.Join(rf.Names, ",") != "VERIFY_PIN_DIRECT,MODIFY_PIN_DIRECT,GET_TLV_PROPERTIES" {
		t.Fatalf("%v", rf.Names)
	}
	s := VerifyPINStructure{PINFormat: PINFormat{FormatString: 0x81, PINBlockString: 0x03, MinDigits: 6, MaxDigits: 6, EntryValidation: 2}, APDU: unhex(t, "00 20 00 00 03 FF FF FF")}
	var traced []TraceEvent
	card.opts.Tracer = func(ev TraceEvent) { traced = append(traced, ev) }
	sw, err := card.VerifyPINDirect(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := s.Bytes()
	if sw != apdu.StatusWord(0x63C2) || h.gotCode != 0x42330006 || !bytes.Equal(h.gotIn, want) {
		t.Fatalf("sw %s code %08X in % X", sw, h.gotCode, h.gotIn)
	}
	if len(traced) != 1 || traced[0].SW != 0x63C2 || !traced[0].Sensitive || traced[0].RawCommand != nil {
		t.Fatalf("trace %+v", traced)
	}
	m := ModifyPINStructure{PINFormat: s.PINFormat, ConfirmPIN: 3, InsertionOffsetNew: 4, APDU: unhex(t, "80 5E 01 00 07 FF FF FF FF FF FF FF")}
	h.answer = []byte{0x90, 0x00}
	if sw, err := card.ModifyPINDirect(ctx, m); err != nil || sw != apdu.SWOK || h.gotCode != 0x42330007 {
		t.Fatalf("modify: %v %s %08X", err, sw, h.gotCode)
	}
	h.answer = []byte{0x00}
	if _, err := card.VerifyPINDirect(ctx, s); KindOf(err) != KindUnresponsive {
		t.Fatalf("one-byte answer: %v", err)
	}
}

func TestNoPINPadReported(t *testing.T) {
	h := &padHandle{fakeHandle: fakeHandle{proto: ProtocolT1}}
	card := padCard(h)
	ctx := context.Background()
	if caps := card.PINPad(ctx); caps.Any() {
		t.Fatalf("%+v", caps)
	}
	s := VerifyPINStructure{PINFormat: PINFormat{FormatString: 0x81, PINBlockString: 0x03, MinDigits: 6, MaxDigits: 6}, APDU: unhex(t, "00 20 00 00 03 FF FF FF")}
	if _, err := card.VerifyPINDirect(ctx, s); !errors.Is(err, ErrNoPINPad) {
		t.Fatalf("%v", err)
	}
	if h.gotIn != nil {
		t.Fatal("a structure was sent to a reader without a PIN pad")
	}
}

func TestAttributes(t *testing.T) {
	h := &padHandle{fakeHandle: fakeHandle{proto: ProtocolT0}, attrs: map[scard.Attrib][]byte{
		scard.AttrVendorName:          []byte("Vendor\x00"),
		scard.AttrVendorIfdVersion:    {0x03, 0x00, 0x05, 0x01}, // 0x01050003: 1.5.3
		scard.AttrMaxinput:            {0x05, 0x01, 0x00, 0x00},
		scard.AttrCurrentProtocolType: {0x01, 0x00, 0x00, 0x00},
	}}
	ra, err := padCard(h).Attributes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ra.VendorName != "Vendor" || ra.IFDVersion != "1.5.3" || ra.MaxInput != 261 || ra.ProtocolAttr != "T=0" || ra.Protocol != "T=1" {
		t.Fatalf("%+v", ra)
	}
	if !strings.Contains(strings.Join(ra.Missing, ","), "ifd_type") {
		t.Fatalf("missing %v", ra.Missing)
	}
}

// A reader's answers are untrusted input: the parsers never panic, and a
// feature list they accept holds one feature per 6 bytes at most.
func FuzzParseFeatures(f *testing.F) {
	f.Add([]byte{0x06, 0x04, 0x42, 0x33, 0x00, 0x06, 0x12, 0x04, 0x42, 0x33, 0x00, 0x12})
	f.Add([]byte{0x06, 0x02, 0x42})
	f.Add([]byte{0x0A, 0x04, 0x05, 0x01, 0x00, 0x00, 0x08, 0x03, 'F', 'W'})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = ParseTLVProperties(b)
		m, err := ParseFeatures(b)
		if err != nil {
			return
		}
		if len(m)*6 > len(b) {
			t.Fatalf("%d features from %d bytes", len(m), len(b))
		}
	})
}
