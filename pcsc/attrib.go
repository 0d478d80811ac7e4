package pcsc

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/ebfe/scard"
)

// ReaderAttributes are what SCardGetAttrib tells of a reader and its
// driver. A driver answers only the attributes it implements (vpcd: almost
// none); an attribute not reported is left empty and listed in Missing.
type ReaderAttributes struct {
	VendorName   string   `json:"vendor_name,omitempty"`   // SCARD_ATTR_VENDOR_NAME
	IFDType      string   `json:"ifd_type,omitempty"`      // SCARD_ATTR_VENDOR_IFD_TYPE
	IFDVersion   string   `json:"ifd_version,omitempty"`   // SCARD_ATTR_VENDOR_IFD_VERSION (driver/firmware version)
	IFDSerial    string   `json:"ifd_serial,omitempty"`    // SCARD_ATTR_VENDOR_IFD_SERIAL_NO
	ChannelID    string   `json:"channel_id,omitempty"`    // SCARD_ATTR_CHANNEL_ID (bus and address)
	MaxInput     int      `json:"max_input,omitempty"`     // SCARD_ATTR_MAXINPUT: the driver's largest APDU, bytes
	MaxIFSD      int      `json:"max_ifsd,omitempty"`      // SCARD_ATTR_MAX_IFSD
	Protocol     string   `json:"protocol"`                // the protocol of this connection
	ProtocolAttr string   `json:"protocol_attr,omitempty"` // SCARD_ATTR_CURRENT_PROTOCOL_TYPE, as the driver reports it
	FriendlyName string   `json:"friendly_name,omitempty"` // SCARD_ATTR_DEVICE_FRIENDLY_NAME
	Missing      []string `json:"not_reported,omitempty"`  // attributes the driver did not answer
}

// attribHandle is the part of ebfe/scard's *Card that reads attributes;
// kept out of cardHandle so that the transmit tests' fakes need not have it.
type attribHandle interface {
	GetAttrib(id scard.Attrib) ([]byte, error)
}

// Attributes reads the reader's attributes (SCardGetAttrib) on this
// connection. Attributes the driver does not implement are listed in
// Missing; only a lost connection is an error.
func (c *Card) Attributes(ctx context.Context) (*ReaderAttributes, error) {
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: "get attributes", Reader: c.reader, Kind: KindCancelled, Err: err}
	}
	if err := c.usable("get attributes"); err != nil {
		return nil, err
	}
	ra := &ReaderAttributes{Protocol: ProtocolName(c.proto)}
	h, ok := c.h.(attribHandle)
	if !ok {
		ra.Missing = []string{"all (the connection cannot read attributes)"}
		return ra, nil
	}
	get := func(name string, id scard.Attrib) []byte {
		v, err := h.GetAttrib(id)
		if err != nil || len(v) == 0 {
			ra.Missing = append(ra.Missing, name)
			return nil
		}
		return v
	}
	if v := get("vendor_name", scard.AttrVendorName); v != nil {
		ra.VendorName = printable(v)
	}
	if v := get("ifd_type", scard.AttrVendorIfdType); v != nil {
		ra.IFDType = printable(v)
	}
	if v := get("ifd_version", scard.AttrVendorIfdVersion); v != nil {
		ra.IFDVersion = IFDVersion(v)
	}
	if v := get("ifd_serial", scard.AttrVendorIfdSerialNo); v != nil {
		ra.IFDSerial = printable(v)
	}
	if v := get("channel_id", scard.AttrChannelId); v != nil {
		ra.ChannelID = fmt.Sprintf("%X", v)
	}
	if v := get("max_input", scard.AttrMaxinput); v != nil {
		ra.MaxInput = int(leUint(v))
	}
	if v := get("max_ifsd", scard.AttrMaxIfsd); v != nil {
		ra.MaxIFSD = int(leUint(v))
	}
	if v := get("protocol_attr", scard.AttrCurrentProtocolType); v != nil {
		ra.ProtocolAttr = ProtocolName(Protocol(leUint(v)))
	}
	if v := get("friendly_name", scard.AttrDeviceFriendlyName); v != nil {
		ra.FriendlyName = printable(v)
	}
	return ra, nil
}

// IFDVersion decodes SCARD_ATTR_VENDOR_IFD_VERSION: a DWORD 0xMMmmbbbb
// (major, minor, build), as pcsc-lite's ifdhandler.h and the CCID driver
// code it. Other sizes are shown as hex.
func IFDVersion(v []byte) string {
	if len(v) != 4 {
		return fmt.Sprintf("%X", v)
	}
	n := binary.LittleEndian.Uint32(v)
	return fmt.Sprintf("%d.%d.%d", n>>24, n>>16&0xFF, n&0xFFFF)
}

func leUint(v []byte) uint64 {
	var n uint64
	for i := len(v) - 1; i >= 0 && i < 8; i-- {
		n = n<<8 | uint64(v[i])
	}
	return n
}

// ReaderInfo reads a reader's attributes and part 10 features whether or
// not a card is in it: it connects in direct mode (SCARD_SHARE_DIRECT, no
// protocol), which talks to the reader only. A driver that refuses direct
// connections (some do without a card) gives the error; the caller then
// learns the features once a card is in (Card.Features).
func (c *Context) ReaderInfo(ctx context.Context, reader string) (*ReaderAttributes, *ReaderFeatures, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, &Error{Op: "connect (direct)", Reader: reader, Kind: KindCancelled, Err: err}
	}
	h, err := c.sc.Connect(reader, scard.ShareDirect, 0)
	if err != nil {
		return nil, nil, wrapConnect("connect (direct)", reader, err)
	}
	defer h.Disconnect(scard.LeaveCard)
	direct := &Card{reader: reader, h: h, proto: Protocol(0), opts: ConnectOptions{Share: ShareDirect}}
	ra, err := direct.Attributes(ctx)
	if err != nil {
		return nil, nil, err
	}
	ra.Protocol = ""
	rf, err := direct.Features(ctx)
	if err != nil {
		return ra, nil, err
	}
	return ra, rf, nil
}
