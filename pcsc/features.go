package pcsc

import (
	"encoding/binary"

	"github.com/ebfe/scard"
)

// PC/SC part 10 reader features (the CCID driver and PIN-pad readers
// publish them; vpcd publishes none).
const (
	FeatureVerifyPINDirect  = 0x06
	FeatureModifyPINDirect  = 0x07
	FeatureGetTLVProperties = 0x12

	tlvMaxAPDUDataSize = 0x0A // PCSCv2_PART10_PROPERTY_dwMaxAPDUDataSize
)

// cmGetFeatureRequest is CM_IOCTL_GET_FEATURE_REQUEST.
var cmGetFeatureRequest = scard.CtlCode(3400)

// features asks the reader for its part-10 features: feature tag → control code.
func features(h cardHandle) map[byte]uint32 {
	out, err := h.Control(cmGetFeatureRequest, nil)
	if err != nil {
		return nil
	}
	m := map[byte]uint32{}
	for len(out) >= 2 { // TLV: tag, length (4), big-endian control code
		n := int(out[1])
		if 2+n > len(out) {
			break
		}
		if n == 4 {
			m[out[0]] = binary.BigEndian.Uint32(out[2:6])
		}
		out = out[2+n:]
	}
	return m
}

// readerMaxAPDUData reads dwMaxAPDUDataSize; a reader that does not say
// gets short APDUs (255), which every reader supports.
func readerMaxAPDUData(h cardHandle) int {
	code, ok := features(h)[FeatureGetTLVProperties]
	if !ok {
		return 255
	}
	props, err := h.Control(code, nil)
	if err != nil {
		return 255
	}
	for len(props) >= 2 {
		tag, n := props[0], int(props[1])
		if 2+n > len(props) {
			break
		}
		if tag == tlvMaxAPDUDataSize && n > 0 && n <= 4 {
			v := 0 // little-endian, per PC/SC part 10
			for i := n - 1; i >= 0; i-- {
				v = v<<8 | int(props[2+i])
			}
			if v > 255 {
				return v
			}
			return 255
		}
		props = props[2+n:]
	}
	return 255
}
