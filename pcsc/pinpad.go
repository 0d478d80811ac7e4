package pcsc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"ssstation/pcsc/apdu"
)

// PC/SC part 10 (v2.02.09, "IFDs with Secure PIN Entry Capabilities"):
// a reader with a PIN pad publishes FEATURE_VERIFY_PIN_DIRECT and
// FEATURE_MODIFY_PIN_DIRECT in its answer to CM_IOCTL_GET_FEATURE_REQUEST,
// each with the control code that takes a PIN_VERIFY_STRUCTURE or a
// PIN_MODIFY_STRUCTURE. The reader lets the holder type the PIN on its own
// keys, puts the digits into the APDU the structure carries, sends it to
// the card and returns the card's status word: the PIN never passes
// through the host. The layouts below are byte for byte those of part 10
// (and of pcsc-lite's reader.h, which OpenSC copies in part10.h): packed,
// 16- and 32-bit fields little-endian.

// Further feature tags of part 10 §2.3, named for the diagnostics.
const (
	FeatureVerifyPINStart    = 0x01
	FeatureVerifyPINFinish   = 0x02
	FeatureModifyPINStart    = 0x03
	FeatureModifyPINFinish   = 0x04
	FeatureGetKeyPressed     = 0x05
	FeatureMCTReaderDirect   = 0x08
	FeatureMCTUniversal      = 0x09
	FeatureIFDPINProperties  = 0x0A
	FeatureAbort             = 0x0B
	FeatureSetSPEMessage     = 0x0C
	FeatureVerifyPINDirectAp = 0x0D
	FeatureModifyPINDirectAp = 0x0E
	FeatureWriteDisplay      = 0x0F
	FeatureGetKey            = 0x10
	FeatureIFDDisplayProps   = 0x11
	FeatureCCIDESCCommand    = 0x13
	FeatureExecutePACE       = 0x20
)

// FeatureName names a part 10 feature tag ("" for one the table does not know).
func FeatureName(tag byte) string {
	switch tag {
	case FeatureVerifyPINStart:
		return "VERIFY_PIN_START"
	case FeatureVerifyPINFinish:
		return "VERIFY_PIN_FINISH"
	case FeatureModifyPINStart:
		return "MODIFY_PIN_START"
	case FeatureModifyPINFinish:
		return "MODIFY_PIN_FINISH"
	case FeatureGetKeyPressed:
		return "GET_KEY_PRESSED"
	case FeatureVerifyPINDirect:
		return "VERIFY_PIN_DIRECT"
	case FeatureModifyPINDirect:
		return "MODIFY_PIN_DIRECT"
	case FeatureMCTReaderDirect:
		return "MCT_READER_DIRECT"
	case FeatureMCTUniversal:
		return "MCT_UNIVERSAL"
	case FeatureIFDPINProperties:
		return "IFD_PIN_PROPERTIES"
	case FeatureAbort:
		return "ABORT"
	case FeatureSetSPEMessage:
		return "SET_SPE_MESSAGE"
	case FeatureVerifyPINDirectAp:
		return "VERIFY_PIN_DIRECT_APP_ID"
	case FeatureModifyPINDirectAp:
		return "MODIFY_PIN_DIRECT_APP_ID"
	case FeatureWriteDisplay:
		return "WRITE_DISPLAY"
	case FeatureGetKey:
		return "GET_KEY"
	case FeatureIFDDisplayProps:
		return "IFD_DISPLAY_PROPERTIES"
	case FeatureGetTLVProperties:
		return "GET_TLV_PROPERTIES"
	case FeatureCCIDESCCommand:
		return "CCID_ESC_COMMAND"
	case FeatureExecutePACE:
		return "EXECUTE_PACE"
	}
	return ""
}

// ErrMalformedFeatures is returned for an answer to
// CM_IOCTL_GET_FEATURE_REQUEST that is not a list of 6-byte TLVs.
var ErrMalformedFeatures = errors.New("pcsc: malformed part 10 feature list")

// ParseFeatures reads the answer to CM_IOCTL_GET_FEATURE_REQUEST: a list of
// PCSC_TLV_STRUCTUREs (tag, length 4, control code big-endian, part 10
// §2.2). Anything else is refused rather than half-read: a control code
// taken from a misread list would be sent to the reader.
func ParseFeatures(b []byte) (map[byte]uint32, error) {
	m := map[byte]uint32{}
	for len(b) > 0 {
		if len(b) < 6 || b[1] != 4 {
			return nil, fmt.Errorf("%w: % X", ErrMalformedFeatures, b)
		}
		m[b[0]] = binary.BigEndian.Uint32(b[2:6])
		b = b[6:]
	}
	return m, nil
}

// ParseTLVProperties reads the answer to FEATURE_GET_TLV_PROPERTIES (part
// 10 §2.6.14): tag, length, value little-endian. Values of 1, 2 or 4 bytes
// are numbers; others (strings) are kept as bytes in raw.
func ParseTLVProperties(b []byte) (nums map[byte]uint32, raw map[byte][]byte, err error) {
	nums, raw = map[byte]uint32{}, map[byte][]byte{}
	for len(b) > 0 {
		if len(b) < 2 || 2+int(b[1]) > len(b) {
			return nil, nil, fmt.Errorf("pcsc: malformed part 10 TLV properties: % X", b)
		}
		tag, v := b[0], b[2:2+int(b[1])]
		raw[tag] = append([]byte(nil), v...)
		switch len(v) {
		case 1, 2, 4:
			var n uint32
			for i := len(v) - 1; i >= 0; i-- {
				n = n<<8 | uint32(v[i])
			}
			nums[tag] = n
		}
		b = b[2+int(b[1]):]
	}
	return nums, raw, nil
}

// Part 10 §2.6.14 property tags the station reads.
const (
	PropertyWLcdLayout        = 0x01
	PropertyBEntryValidation  = 0x02
	PropertyBTimeOut2         = 0x03
	PropertyWLcdMaxCharacters = 0x04
	PropertyWLcdMaxLines      = 0x05
	PropertyBMinPINSize       = 0x06
	PropertyBMaxPINSize       = 0x07
	PropertySFirmwareID       = 0x08
	PropertyBPPDUSupport      = 0x09
	PropertyDwMaxAPDUDataSize = 0x0A
	PropertyWIdVendor         = 0x0B
	PropertyWIdProduct        = 0x0C
)

// ReaderFeatures is what a reader says of itself through part 10.
type ReaderFeatures struct {
	// Features by tag: the control code of each feature the reader offers.
	Codes map[byte]uint32 `json:"-"`
	// Names of the features offered, sorted by tag ("VERIFY_PIN_DIRECT", or
	// "0x2A" for a tag the table does not name).
	Names []string `json:"features"`
	// PINPad: the reader verifies and changes PINs on its own keys.
	PINPad PINPadCaps `json:"pin_pad"`
	// Properties from FEATURE_GET_TLV_PROPERTIES, where offered.
	MinPINSize     int    `json:"min_pin_size,omitempty"`
	MaxPINSize     int    `json:"max_pin_size,omitempty"`
	MaxAPDUData    int    `json:"max_apdu_data,omitempty"`
	FirmwareID     string `json:"firmware_id,omitempty"`
	LcdLayout      uint16 `json:"lcd_layout,omitempty"` // 0: no display
	VendorID       uint16 `json:"usb_vendor_id,omitempty"`
	ProductID      uint16 `json:"usb_product_id,omitempty"`
	PropertiesNote string `json:"properties_note,omitempty"`
}

// PINPadCaps says which PIN operations the reader's keypad takes.
type PINPadCaps struct {
	Verify bool `json:"verify"`
	Modify bool `json:"modify"`
}

// Any reports a PIN pad of any kind.
func (p PINPadCaps) Any() bool { return p.Verify || p.Modify }

// Features asks the reader for its part 10 features
// (CM_IOCTL_GET_FEATURE_REQUEST) and, where offered, its TLV properties.
// A reader that answers the request with an error offers none: that is a
// state (vpcd, most readers without keys), reported as an empty list.
func (c *Card) Features(ctx context.Context) (*ReaderFeatures, error) {
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: "get features", Reader: c.reader, Kind: KindCancelled, Err: err}
	}
	if err := c.usable("get features"); err != nil {
		return nil, err
	}
	rf := &ReaderFeatures{Codes: map[byte]uint32{}, Names: []string{}}
	out, err := c.h.Control(cmGetFeatureRequest, nil)
	if err != nil {
		return rf, nil
	}
	codes, err := ParseFeatures(out)
	if err != nil {
		return nil, fmt.Errorf("get features (reader %q): %w", c.reader, err)
	}
	rf.Codes = codes
	tags := make([]int, 0, len(codes))
	for t := range codes {
		tags = append(tags, int(t))
	}
	sort.Ints(tags)
	for _, t := range tags {
		n := FeatureName(byte(t))
		if n == "" {
			n = fmt.Sprintf("0x%02X", t)
		}
		rf.Names = append(rf.Names, n)
	}
	_, rf.PINPad.Verify = codes[FeatureVerifyPINDirect]
	_, rf.PINPad.Modify = codes[FeatureModifyPINDirect]
	if code, ok := codes[FeatureGetTLVProperties]; ok {
		props, err := c.h.Control(code, nil)
		if err != nil {
			rf.PropertiesNote = "GET_TLV_PROPERTIES failed: " + wrap("control", c.reader, err).Error()
			return rf, nil
		}
		nums, raw, err := ParseTLVProperties(props)
		if err != nil {
			rf.PropertiesNote = err.Error()
			return rf, nil
		}
		rf.MinPINSize = int(nums[PropertyBMinPINSize])
		rf.MaxPINSize = int(nums[PropertyBMaxPINSize])
		rf.MaxAPDUData = int(nums[PropertyDwMaxAPDUDataSize])
		rf.LcdLayout = uint16(nums[PropertyWLcdLayout])
		rf.VendorID = uint16(nums[PropertyWIdVendor])
		rf.ProductID = uint16(nums[PropertyWIdProduct])
		if v, ok := raw[PropertySFirmwareID]; ok {
			rf.FirmwareID = printable(v)
		}
	}
	return rf, nil
}

// PINPad reports whether the reader holding this card has a PIN pad
// (FEATURE_VERIFY_PIN_DIRECT / FEATURE_MODIFY_PIN_DIRECT). A reader that
// cannot be asked reports none.
func (c *Card) PINPad(ctx context.Context) PINPadCaps {
	rf, err := c.Features(ctx)
	if err != nil || rf == nil {
		return PINPadCaps{}
	}
	return rf.PINPad
}

func printable(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c == 0:
		case c < 0x20 || c > 0x7E:
			out = append(out, '?')
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

// bmFormatString bits (part 10 §2.5.2, CCID §6.1.11.4).
const (
	FormatUnitsBytes   = 0x80 // b7: PIN position and length position in bytes (else bits)
	FormatRightJustify = 0x04 // b2: right justification (else left)
	FormatBinary       = 0x00 // b1-b0: PIN format
	FormatBCD          = 0x01
	FormatASCII        = 0x02
)

// PINFormat describes how the reader formats the typed digits and where it
// puts them in the APDU; shared by verify and modify.
type PINFormat struct {
	// Timeout is bTimerOut: seconds the reader waits for the PIN (0: the
	// reader's default); TimeoutAfterKey is bTimerOut2, after the first key.
	Timeout, TimeoutAfterKey byte
	// FormatString is bmFormatString: units, the PIN's position (b6-b3, in
	// the units of b7, counted from the first byte after Lc), justification
	// and format.
	FormatString byte
	// PINBlockString is bmPINBlockString: b7-b4 the size in bits of a PIN
	// length field, b3-b0 the PIN block size in bytes. A block size of 0
	// lets the reader insert as many bytes as the PIN needs and set Lc.
	PINBlockString byte
	// PINLengthFormat is bmPINLengthFormat: b4 units, b3-b0 the position of
	// the PIN length field.
	PINLengthFormat byte
	// MinDigits, MaxDigits make wPINMaxExtraDigit (0xXXYY: XX minimum, YY
	// maximum), sent little-endian: YY first.
	MinDigits, MaxDigits byte
	// EntryValidation is bEntryValidationCondition: 01 maximum size
	// reached, 02 validation key pressed, 04 timeout.
	EntryValidation byte
	// NumberMessage is bNumberMessage (0: none, FF: the reader's default).
	NumberMessage byte
	// LangID is wLangId (0x0804: Chinese (PRC); 0x0409: English (US)).
	LangID uint16
	// TeoPrologue is bTeoPrologue: the T=1 block prologue, zeros for the
	// reader to compute.
	TeoPrologue [3]byte
}

// VerifyPINStructure is a PIN_VERIFY_STRUCTURE.
type VerifyPINStructure struct {
	PINFormat
	MsgIndex byte   // bMsgIndex
	APDU     []byte // abData: the VERIFY APDU, its PIN bytes pre-filled with the pad
}

// PINVerifyHeaderSize is the size of PIN_VERIFY_STRUCTURE before abData.
const PINVerifyHeaderSize = 19

// PINModifyHeaderSize is the size of PIN_MODIFY_STRUCTURE before abData.
const PINModifyHeaderSize = 24

// Bytes lays the structure out as part 10 does: bTimerOut, bTimerOut2,
// bmFormatString, bmPINBlockString, bmPINLengthFormat, wPINMaxExtraDigit,
// bEntryValidationCondition, bNumberMessage, wLangId, bMsgIndex,
// bTeoPrologue[3], ulDataLength, abData.
func (s VerifyPINStructure) Bytes() ([]byte, error) {
	if err := s.check(s.APDU); err != nil {
		return nil, fmt.Errorf("PIN_VERIFY_STRUCTURE: %w", err)
	}
	b := make([]byte, 0, PINVerifyHeaderSize+len(s.APDU))
	b = append(b, s.Timeout, s.TimeoutAfterKey, s.FormatString, s.PINBlockString, s.PINLengthFormat)
	b = binary.LittleEndian.AppendUint16(b, uint16(s.MinDigits)<<8|uint16(s.MaxDigits))
	b = append(b, s.EntryValidation, s.NumberMessage)
	b = binary.LittleEndian.AppendUint16(b, s.LangID)
	b = append(b, s.MsgIndex)
	b = append(b, s.TeoPrologue[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.APDU)))
	return append(b, s.APDU...), nil
}

// ModifyPINStructure is a PIN_MODIFY_STRUCTURE.
type ModifyPINStructure struct {
	PINFormat
	// InsertionOffsetOld, InsertionOffsetNew are bInsertionOffsetOld and
	// bInsertionOffsetNew: where the current and the new PIN go, in bytes
	// from the first byte after Lc.
	InsertionOffsetOld, InsertionOffsetNew byte
	// ConfirmPIN is bConfirmPIN: b0 the new PIN is entered twice, b1 the
	// current PIN is entered first.
	ConfirmPIN                      byte
	MsgIndex1, MsgIndex2, MsgIndex3 byte
	APDU                            []byte
}

// Bytes lays the structure out as part 10 does: bTimerOut, bTimerOut2,
// bmFormatString, bmPINBlockString, bmPINLengthFormat, bInsertionOffsetOld,
// bInsertionOffsetNew, wPINMaxExtraDigit, bConfirmPIN,
// bEntryValidationCondition, bNumberMessage, wLangId, bMsgIndex1,
// bMsgIndex2, bMsgIndex3, bTeoPrologue[3], ulDataLength, abData.
func (s ModifyPINStructure) Bytes() ([]byte, error) {
	if err := s.check(s.APDU); err != nil {
		return nil, fmt.Errorf("PIN_MODIFY_STRUCTURE: %w", err)
	}
	b := make([]byte, 0, PINModifyHeaderSize+len(s.APDU))
	b = append(b, s.Timeout, s.TimeoutAfterKey, s.FormatString, s.PINBlockString, s.PINLengthFormat)
	b = append(b, s.InsertionOffsetOld, s.InsertionOffsetNew)
	b = binary.LittleEndian.AppendUint16(b, uint16(s.MinDigits)<<8|uint16(s.MaxDigits))
	b = append(b, s.ConfirmPIN, s.EntryValidation, s.NumberMessage)
	b = binary.LittleEndian.AppendUint16(b, s.LangID)
	b = append(b, s.MsgIndex1, s.MsgIndex2, s.MsgIndex3)
	b = append(b, s.TeoPrologue[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.APDU)))
	return append(b, s.APDU...), nil
}

func (f PINFormat) check(cmd []byte) error {
	switch {
	case len(cmd) < 4:
		return errors.New("the APDU needs at least a header")
	case len(cmd) > 4+1+255:
		return errors.New("the APDU does not fit a short APDU")
	case f.MinDigits == 0 || f.MaxDigits < f.MinDigits:
		return fmt.Errorf("PIN sizes %d..%d", f.MinDigits, f.MaxDigits)
	case f.FormatString&0x03 == 0x03:
		return errors.New("bmFormatString: format 3 is reserved")
	}
	return nil
}

// Part 10 §2.5.5: status words a PIN pad reader returns itself, for an
// entry that never reached the card.
const (
	SWPINPadTimeout   apdu.StatusWord = 0x6400
	SWPINPadCancelled apdu.StatusWord = 0x6401
	SWPINPadMismatch  apdu.StatusWord = 0x6402
	SWPINPadLength    apdu.StatusWord = 0x6403
	SWPINPadRejected  apdu.StatusWord = 0x6B80 // the reader refused the structure
)

// ErrNoPINPad is returned for a PIN pad operation on a reader without one.
var ErrNoPINPad = errors.New("the reader has no PIN pad")

// VerifyPINDirect has the reader's keypad take a PIN and send the VERIFY in
// s (FEATURE_VERIFY_PIN_DIRECT). It returns the status word: the card's,
// or the reader's own (SWPINPadTimeout, ...). The call blocks while the
// holder types, up to the structure's timeout.
func (c *Card) VerifyPINDirect(ctx context.Context, s VerifyPINStructure) (apdu.StatusWord, error) {
	raw, err := s.Bytes()
	if err != nil {
		return 0, err
	}
	return c.pinPadControl(ctx, "verify PIN on the PIN pad", FeatureVerifyPINDirect, raw)
}

// ModifyPINDirect has the reader's keypad take the current and new PINs
// and send the CHANGE PIN in s (FEATURE_MODIFY_PIN_DIRECT).
func (c *Card) ModifyPINDirect(ctx context.Context, s ModifyPINStructure) (apdu.StatusWord, error) {
	raw, err := s.Bytes()
	if err != nil {
		return 0, err
	}
	return c.pinPadControl(ctx, "change PIN on the PIN pad", FeatureModifyPINDirect, raw)
}

func (c *Card) pinPadControl(ctx context.Context, op string, feature byte, structure []byte) (apdu.StatusWord, error) {
	rf, err := c.Features(ctx)
	if err != nil {
		return 0, err
	}
	code, ok := rf.Codes[feature]
	if !ok {
		return 0, fmt.Errorf("%s (reader %q): %w", op, c.reader, ErrNoPINPad)
	}
	out, err := c.h.Control(code, structure)
	var sw apdu.StatusWord
	if err == nil && len(out) == 2 {
		sw = apdu.StatusWord(uint16(out[0])<<8 | uint16(out[1]))
	}
	if c.opts.Tracer != nil {
		// The structure holds no PIN (the reader adds the digits): the
		// trace shows the control code and the status word only.
		c.opts.Tracer(TraceEvent{Reader: c.reader, Name: op, Sensitive: true,
			Command: fmt.Sprintf("SCardControl %08X [%d bytes]", code, len(structure)), Response: sw.String(), SW: sw, Err: err})
	}
	if err != nil {
		return 0, wrap(op, c.reader, err)
	}
	if len(out) != 2 {
		return 0, &Error{Op: op, Reader: c.reader, Kind: KindUnresponsive, Err: fmt.Errorf("the reader answered %d bytes, want a status word", len(out))}
	}
	return sw, nil
}
