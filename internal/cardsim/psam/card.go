// Package psam is the virtual PSAM for cardsim: a vpcd.Card holding master
// keys in a key table and answering the project-defined PSAM command set
// of ssstation/cardapp/keys/psam (docs/psam.md): SELECT by AID, READ
// BINARY of the serial number (SFI 16h), INIT FOR DESCRYPT (80 1A) and
// CIPHER DATA (80 FA). It computes with the same pure functions as the
// software keystore (keys.DiversifyPath, keys.EncryptECB, keys.ComputeMAC),
// so a station using the PSAM provider gets the same bytes as one using
// the software keystore with the same keys.
//
//	card, err := psam.New(img)   // or psam.Builtin(): the test PSAM
//	slot := vpcd.NewSlot("127.0.0.1:35964", card)
//
// Card.Conn gives an in-process connection for unit tests that need a PSAM
// provider without pcscd.
package psam

import (
	"context"
	"fmt"
	"sync"

	"ssstation/cardapp/keys"
	hostpsam "ssstation/cardapp/keys/psam"
	"ssstation/internal/cardsim/engine"
	"ssstation/internal/cardsim/vpcd"
	"ssstation/pcsc/apdu"
)

// Historical is the ATR's historical bytes: ASCII "SSPSAM".
const Historical = "SSPSAM"

// ATR is the virtual PSAM's answer to reset: T=1 only (TD1 = 81, TD2 = 31:
// IFSC FE, BWI/CWI 45, as the virtual SSSE card), the historical bytes
// "SSPSAM" and the TCK: 3B 86 81 31 FE 45 53 53 50 53 41 4D 82.
func ATR() []byte {
	return engine.WithTCK(append([]byte{0x3B, 0x80 | byte(len(Historical)), 0x81, 0x31, 0xFE, 0x45}, Historical...))
}

// Card is a virtual PSAM. It implements vpcd.Card; all methods are safe for
// concurrent use.
type Card struct {
	atr    []byte
	serial [hostpsam.SerialSize]byte
	table  hostpsam.Table
	slots  map[[2]byte]slotKey

	mu       sync.Mutex
	apdus    uint64
	selected bool
	session  *session // volatile: one INIT, one CIPHER DATA
	chain    []byte   // CIPHER DATA command chain in progress
	chainP1  byte
	chaining bool
}

// session is the diversified key INIT FOR DESCRYPT left for one CIPHER DATA.
type session struct {
	alg keys.Algorithm
	key []byte
}

var (
	_ vpcd.Card     = (*Card)(nil)
	_ hostpsam.Card = (*Conn)(nil)
)

// New builds a fresh PSAM from img (nil: BuiltinImage).
func New(img *Image) (*Card, error) {
	if img == nil {
		img = BuiltinImage()
	}
	b, err := img.build()
	if err != nil {
		return nil, err
	}
	return &Card{atr: ATR(), serial: b.serial, table: b.table, slots: b.slots}, nil
}

// Builtin returns a fresh test PSAM: serial 000000000001, every
// keys.TestKeys() entry in the default key table.
func Builtin() *Card {
	c, err := New(BuiltinImage())
	if err != nil {
		panic("psam: the built-in image is broken: " + err.Error())
	}
	return c
}

// ATR is the card's answer to reset (see the package-level ATR).
func (c *Card) ATR() []byte { return append([]byte(nil), c.atr...) }

// Serial is the serial number as 12 digits.
func (c *Card) Serial() string { return fmt.Sprintf("%X", c.serial[:]) }

// KeyTable returns a copy of the card's key table.
func (c *Card) KeyTable() hostpsam.Table { return c.table.Clone() }

// KeyIDs lists the keys the card holds.
func (c *Card) KeyIDs() []keys.KeyID {
	var out []keys.KeyID
	for _, e := range c.table {
		if _, ok := c.slots[[2]byte{e.Usage, e.Index}]; ok {
			out = append(out, e.ID())
		}
	}
	return out
}

// APDUCount is the number of command APDUs processed since the card was made.
func (c *Card) APDUCount() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.apdus
}

// HasSession reports whether a session key is waiting for CIPHER DATA.
func (c *Card) HasSession() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session != nil
}

func (c *Card) String() string {
	return fmt.Sprintf("psam.Card{serial %s, %d keys}", c.Serial(), len(c.slots))
}

// Reset is power-up: nothing selected, no session key, no chain.
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.selected = false
	c.dropSession()
	c.dropChain()
}

func (c *Card) dropSession() {
	if c.session != nil {
		clear(c.session.key)
		c.session = nil
	}
}

func (c *Card) dropChain() {
	clear(c.chain)
	c.chain, c.chaining, c.chainP1 = nil, false, 0
}

// Process answers one raw command APDU (vpcd.Card).
func (c *Card) Process(raw []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.apdus++
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		c.dropChain()
		return status(apdu.SWWrongLength)
	}
	// A command chain must be consecutive CIPHER DATA parts; anything else
	// abandons it.
	if c.chaining && cmd.INS != hostpsam.InsCipherData {
		c.dropChain()
	}
	switch cmd.INS {
	case hostpsam.InsSelect:
		if cmd.CLA != hostpsam.ClaISO {
			return status(apdu.SWCLANotSupported)
		}
		return c.selectApp(cmd)
	case hostpsam.InsReadBinary:
		if cmd.CLA != hostpsam.ClaISO {
			return status(apdu.SWCLANotSupported)
		}
		return c.readBinary(cmd)
	case hostpsam.InsInitForDescrypt:
		if cmd.CLA != hostpsam.ClaProprietary {
			return status(apdu.SWCLANotSupported)
		}
		return c.initForDescrypt(cmd)
	case hostpsam.InsCipherData:
		if cmd.CLA&^hostpsam.ClaChaining != hostpsam.ClaProprietary {
			c.dropChain()
			return status(apdu.SWCLANotSupported)
		}
		return c.cipherData(cmd)
	}
	return status(apdu.SWINSNotSupported)
}

func status(sw apdu.StatusWord) []byte { return apdu.Response{SW: sw}.Bytes() }

func ok(data []byte) []byte { return apdu.Response{Data: data, SW: apdu.SWOK}.Bytes() }

// fci is the PSAM application's FCI: 6F 0B 84 09 <AID>.
func fci() []byte {
	aid := hostpsam.AID()
	return append([]byte{0x6F, byte(2 + len(aid)), 0x84, byte(len(aid))}, aid...)
}

// selectApp: SELECT by DF name (P1 04), first occurrence with FCI (P2 00)
// or without (P2 0C). Only the PSAM AID is known; selecting it clears any
// session key.
func (c *Card) selectApp(cmd apdu.Command) []byte {
	if cmd.P1 != 0x04 || (cmd.P2 != 0x00 && cmd.P2 != 0x0C) {
		return status(apdu.SWIncorrectP1P2)
	}
	if len(cmd.Data) == 0 {
		return status(apdu.SWWrongLength)
	}
	if string(cmd.Data) != string(hostpsam.AID()) {
		return status(apdu.SWFileNotFound)
	}
	c.selected = true
	c.dropSession()
	if cmd.Ne == 0 || cmd.P2 == 0x0C {
		return status(apdu.SWOK)
	}
	f := fci()
	if cmd.Ne < len(f) {
		f = f[:cmd.Ne]
	}
	return ok(f)
}

// readBinary serves only the serial number file, by SFI 16h (it sits under
// the MF in the PBOC PSAM layout, so it is readable with or without the
// application selected).
func (c *Card) readBinary(cmd apdu.Command) []byte {
	if cmd.P1&0x80 == 0 {
		return status(apdu.SWCommandNotAllowed) // no current EF
	}
	if cmd.P1&0x60 != 0 || cmd.P1&0x1F != hostpsam.SerialSFI {
		return status(apdu.SWFileNotFound)
	}
	if len(cmd.Data) != 0 || cmd.Ne == 0 {
		return status(apdu.SWWrongLength)
	}
	off := int(cmd.P2)
	if off >= len(c.serial) {
		return status(apdu.SWWrongP1P2)
	}
	rest := c.serial[off:]
	n := len(rest)
	switch {
	case cmd.Ne == apdu.MaxShortNe || cmd.Ne == apdu.MaxExtendedNe:
		// Le = 00: everything there is
	case cmd.Ne > n:
		return status(apdu.StatusWord(0x6C00 | uint16(n)))
	default:
		n = cmd.Ne
	}
	return ok(append([]byte(nil), rest[:n]...))
}

// initForDescrypt: P1 usage, P2 index, data 0..3 factors of 8 bytes. The
// master key diversified along them becomes the session key.
func (c *Card) initForDescrypt(cmd apdu.Command) []byte {
	c.dropSession()
	if !c.selected {
		return status(apdu.SWConditionsNotSatisfied)
	}
	n := len(cmd.Data)
	if n%keys.FactorSize != 0 || n > hostpsam.MaxLevels*keys.FactorSize {
		return status(apdu.SWWrongLength)
	}
	sk, found := c.slots[[2]byte{cmd.P1, cmd.P2}]
	if !found {
		return status(apdu.SWRefDataNotFound)
	}
	path := make([][]byte, 0, n/keys.FactorSize)
	for i := 0; i < n; i += keys.FactorSize {
		path = append(path, cmd.Data[i:i+keys.FactorSize])
	}
	key, err := keys.DiversifyPath(sk.id.Algorithm, sk.key, path)
	clear(cmd.Data)
	if err != nil {
		return status(apdu.SWUnknown)
	}
	c.session = &session{alg: sk.id.Algorithm, key: key}
	return status(apdu.SWOK)
}

// cipherData: P1 00 encrypt, P1 05 MAC, with the session key, which is
// used once: it is dropped after every final CIPHER DATA, whatever its
// outcome. Parts with CLA b5 set are collected (ISO/IEC 7816-4 command
// chaining) up to MaxCipherData bytes.
func (c *Card) cipherData(cmd apdu.Command) []byte {
	if c.session == nil {
		c.dropChain()
		return status(apdu.SWConditionsNotSatisfied)
	}
	if c.chaining && cmd.P1 != c.chainP1 {
		c.dropChain()
		c.dropSession()
		return status(apdu.SWIncorrectP1P2)
	}
	if len(c.chain)+len(cmd.Data) > hostpsam.MaxCipherData {
		c.dropChain()
		c.dropSession()
		return status(apdu.SWWrongLength)
	}
	if cmd.CLA&hostpsam.ClaChaining != 0 {
		c.chain = append(c.chain, cmd.Data...)
		c.chaining, c.chainP1 = true, cmd.P1
		return status(apdu.SWOK)
	}
	data := append(c.chain, cmd.Data...)
	c.chain, c.chaining = nil, false
	defer clear(data)
	s := c.session
	c.session = nil
	defer clear(s.key)

	if cmd.P2 != 0x00 {
		return status(apdu.SWIncorrectP1P2)
	}
	bs := s.alg.BlockSize()
	switch cmd.P1 {
	case hostpsam.CipherEncrypt:
		if len(data) == 0 || len(data)%bs != 0 {
			return status(apdu.SWWrongLength)
		}
		out, err := keys.EncryptECB(s.alg, s.key, data)
		if err != nil {
			return status(apdu.SWUnknown)
		}
		return ok(out)
	case hostpsam.CipherMAC:
		if len(data) < bs {
			return status(apdu.SWWrongLength)
		}
		mac, err := keys.ComputeMAC(s.alg, s.key, data[:bs], data[bs:])
		if err != nil {
			return status(apdu.SWUnknown)
		}
		return ok(mac)
	}
	return status(apdu.SWIncorrectP1P2)
}

// Conn is an in-process connection to a Card that satisfies
// ssstation/cardapp/keys/psam.Card without PC/SC, for unit tests of code
// that uses the PSAM provider. Data longer than one short APDU is sent as
// a command chain, as the pcsc transmit loop does.
type Conn struct {
	card *Card
	tx   sync.Mutex
	// Observe, when set before use, sees every command APDU sent.
	Observe func(apdu.Command)
}

// Conn returns a new in-process connection to c.
func (c *Card) Conn() *Conn { return &Conn{card: c} }

// Transmit sends cmd to the card and returns its answer.
func (cn *Conn) Transmit(ctx context.Context, cmd apdu.Command) (apdu.Response, error) {
	if err := ctx.Err(); err != nil {
		return apdu.Response{}, err
	}
	for len(cmd.Data) > apdu.MaxShortData {
		part := cmd
		part.CLA |= hostpsam.ClaChaining
		part.Data, part.Ne = cmd.Data[:apdu.MaxShortData], 0
		resp, err := cn.exchange(part)
		if err != nil || !resp.SW.OK() {
			return resp, err
		}
		cmd.Data = cmd.Data[apdu.MaxShortData:]
	}
	return cn.exchange(cmd)
}

func (cn *Conn) exchange(cmd apdu.Command) (apdu.Response, error) {
	if cn.Observe != nil {
		cn.Observe(cmd)
	}
	raw, err := cmd.Bytes()
	if err != nil {
		return apdu.Response{}, err
	}
	return apdu.ParseResponse(cn.card.Process(raw))
}

// Transaction runs body with the connection to itself (other transactions wait).
func (cn *Conn) Transaction(ctx context.Context, body func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cn.tx.Lock()
	defer cn.tx.Unlock()
	return body(ctx)
}
