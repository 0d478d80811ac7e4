// Package ssse is the simulator's social security (SSSE) card: the generic
// ISO/IEC 7816-4 engine (internal/cardsim/engine) driven by a firmware profile
// (firmware-profiles) and a card image (blank or personalized), answering
// the SSSE application's commands the way the host side (cardapp) sends
// them. The formats are shared, never re-implemented: records for the
// record values, cardapp/keys for the ciphers and MACs, cardapp/secure for
// the MAC input and IV, the PIN block and the internal authentication data.
//
//	img, _ := ssse.Builtin("sample-v2")
//	card, err := ssse.New(img, nil) // nil: the built-in profiles
//
// What the card does (status words exact; docs/cardsim.md has the table):
//
//   - SELECT 3F00, SELECT the SSSE application by name (FCI with the
//     algorithm environment 9F0C 03 86 01 xx), SELECT EF05/EF06/EF07 by FID
//     with P1 00 or 02. On a profile with select.mf_first the application is
//     found only after SELECT 3F00 since the last reset (6A82 before).
//   - READ RECORD by number (00 B2 nn 04, or nn SFI<<3|04) and by tag
//     (00 B2 tt 00), access per profile; UPDATE RECORD by number while the
//     card is blank or personalized; READ/UPDATE BINARY of EF07.
//   - GET CHALLENGE, EXTERNAL AUTHENTICATE (per-key try counter of 3),
//     INTERNAL AUTHENTICATE, VERIFY, and the profile's command templates:
//     CHANGE PIN, RELOAD PIN, PIN RELOAD BY KEY, PIN UNBLOCK, APPLICATION
//     BLOCK / UNBLOCK, CARD BLOCK, FINALIZE, recognised by the header bytes
//     of their templates, so an override profile's codings are honoured.
//   - The life cycle (State): a blocked application answers 6283 to its
//     SELECT and 6985 to everything but SELECT, READ RECORD/BINARY, GET
//     CHALLENGE, INTERNAL and EXTERNAL AUTHENTICATE and the maintenance
//     commands (assumption A-BLOCKED-READ); a permanently blocked one
//     9303; a blocked card 6A81.
//
// A profile on protocol T0 is wrapped with engine.T0 (61xx, 6Cxx). The card
// is safe for concurrent use: the accessors take the engine's lock.
package ssse

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"ssstation/cardapp/keys"
	"ssstation/cardapp/records"
	"ssstation/cardapp/secure"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/engine"
	"ssstation/internal/cardsim/vpcd"
	"ssstation/pcsc/apdu"
)

// ExternalAuthTries is the try counter of each card key for EXTERNAL
// AUTHENTICATE: a wrong cryptogram answers 63Cx, and 6983 once it is 0
// (for good: the counter is non-volatile and nothing resets it).
const ExternalAuthTries = 3

// Card is a live SSSE card. It implements vpcd.Card.
type Card struct {
	prof   *profiles.Profile
	img    *Image
	alg    keys.Algorithm
	cardID []byte
	atr    []byte

	eng   *engine.Card
	inner *rawCard
	t0    *engine.T0Card
	apdus atomic.Int64

	// Fixed at New.
	cardKeys   map[string][]byte // holder key name -> this card's diversified key
	keyByIndex map[byte]string   // card key index (EXTERNAL AUTHENTICATE P2) -> holder key name
	intAuthP2  byte
	intAuthKey string
	intFactor  []byte
	files      map[uint16]*efInfo
	ops        map[[4]byte]*tplOp
	opINS      map[[2]byte]bool // CLA, INS of the templates

	// Guarded by the engine's lock.
	state      State
	pin        string
	tries      int
	keyTries   map[byte]int
	mfSelected bool // SELECT 3F00 since the last reset (select.mf_first)
}

var _ vpcd.Card = (*Card)(nil)

// efInfo links an engine EF to the profile file it implements.
type efInfo struct {
	name string
	prof *profiles.File // nil for EF07 when the profile does not declare it
	ef   *engine.EF
}

// tplOp is one command template of the profile, as the card recognises it.
type tplOp struct {
	name   string
	t      profiles.Template
	hdr    [4]byte
	lc     int  // the Lc the template implies, -1 when variable
	hasMAC bool // ends with {mac}
	enc    bool // {cryptogram16} or {enc_pin_block16}: an encrypted PIN block
	sep    []byte
}

// rawCard is the card before any T=0 transport: it counts the APDUs the
// SSSE application itself processes (not the transport's GET RESPONSEs).
type rawCard struct{ c *Card }

func (r *rawCard) ATR() []byte   { return append([]byte(nil), r.c.atr...) }
func (r *rawCard) ATRT0() []byte { return append([]byte(nil), r.c.atr...) }
func (r *rawCard) Reset()        { r.c.eng.Reset() }
func (r *rawCard) Process(raw []byte) []byte {
	r.c.apdus.Add(1)
	return r.c.eng.Process(raw)
}

// New builds a fresh card from an image and a profile set (nil: the
// built-in profiles). Errors name the image field at fault.
func New(img *Image, set *profiles.Set) (*Card, error) {
	if img == nil {
		return nil, errors.New("ssse: no image")
	}
	if err := img.check(); err != nil {
		return nil, err
	}
	if set == nil {
		var err error
		if set, err = profiles.Builtin(); err != nil {
			return nil, fmt.Errorf("ssse: built-in profiles: %w", err)
		}
	}
	prof, ok := set.Get(img.Profile)
	if !ok {
		var names []string
		for _, p := range set.List() {
			names = append(names, p.Name)
		}
		return nil, fmt.Errorf("profile: unknown profile %q (have %s)", img.Profile, strings.Join(names, ", "))
	}
	alg, err := keys.ParseAlgorithm(prof.Crypto.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("profile %s: crypto.algorithm: %w", prof.Name, err)
	}
	c := &Card{
		prof:       prof,
		img:        img,
		alg:        alg,
		state:      img.State,
		keyTries:   map[byte]int{},
		cardKeys:   map[string][]byte{},
		keyByIndex: map[byte]string{},
		files:      map[uint16]*efInfo{},
		ops:        map[[4]byte]*tplOp{},
		opINS:      map[[2]byte]bool{},
	}
	if c.cardID, err = records.Encode(records.TypeBinary, 16, img.CardID); err != nil {
		return nil, fmt.Errorf("card_id: want 16 bytes in hex: %w", err)
	}
	recs, err := c.buildRecords()
	if err != nil {
		return nil, err
	}
	if err := c.setPIN(); err != nil {
		return nil, err
	}
	if err := c.setKeys(); err != nil {
		return nil, err
	}
	if err := c.setOps(); err != nil {
		return nil, err
	}
	if c.atr, err = profileATR(prof); err != nil {
		return nil, err
	}
	if err := c.buildEngine(recs); err != nil {
		return nil, err
	}
	c.inner = &rawCard{c}
	if prof.Protocol == profiles.T0 {
		c.t0 = engine.T0(c.inner)
	}
	return c, nil
}

// buildRecords encodes every record of the profile's record files from the
// image: file name -> record number -> TLV.
func (c *Card) buildRecords() (map[string]map[int][]byte, error) {
	img, p := c.img, c.prof
	fields := img.dataFields()
	if img.SpecVersion == "" {
		f := fields["spec_version"]
		f.value = p.SpecVersion
		fields["spec_version"] = f
	}
	f := fields["card_id"]
	f.value = fmt.Sprintf("%X", c.cardID)
	fields["card_id"] = f

	// The full name: what fits the name record, the rest in name_ext.
	nameFile, nameRec, hasName := p.Record(profiles.ItemName)
	_, extRec, hasExt := p.Record(profiles.ItemNameExt)
	if hasName && img.Holder.Name != "" {
		n, err := records.GBKLen(img.Holder.Name)
		if err != nil {
			return nil, fmt.Errorf("holder.name: %w", err)
		}
		head, tail, err := records.SplitGBK(img.Holder.Name, nameRec.Length)
		if err != nil {
			return nil, fmt.Errorf("holder.name: %w", err)
		}
		switch {
		case tail != "" && !hasExt:
			return nil, fmt.Errorf("holder.name: %d bytes in GBK, but profile %s holds %d (%s record %d) and has no name extension", n, p.Name, nameRec.Length, nameFile, nameRec.Number)
		case tail != "":
			if tn, _ := records.GBKLen(tail); tn > extRec.Length {
				return nil, fmt.Errorf("holder.name: %d bytes in GBK, but profile %s holds %d (name %d + name extension %d)", n, p.Name, nameRec.Length+extRec.Length, nameRec.Length, extRec.Length)
			}
		}
		fields[profiles.ItemName] = field{"holder.name", head}
		fields[profiles.ItemNameExt] = field{"holder.name", tail}
	} else {
		fields[profiles.ItemNameExt] = field{"holder.name", ""}
	}

	required := img.State != StateBlank && img.State != StatePersonalized
	out := map[string]map[int][]byte{}
	for _, fname := range sortedFileNames(p) {
		file := p.Files[fname]
		if file.Kind != "record" {
			continue
		}
		out[fname] = map[int][]byte{}
		for _, r := range file.Records {
			fv, known := fields[r.Item]
			if !known {
				return nil, fmt.Errorf("profile %s: %s record %d: item %s has no image field", p.Name, fname, r.Number, r.Item)
			}
			text := fv.value
			if img.State == StateBlank && r.Item != profiles.ItemCardID && r.Item != profiles.ItemSpecVersion {
				text = ""
			}
			if text == "" && required && r.Item != profiles.ItemNameExt {
				return nil, fmt.Errorf("%s: required in state %s (profile %s has %s record %d)", fv.path, img.State, p.Name, fname, r.Number)
			}
			var v []byte
			if text == "" {
				v = blankValue(r.Type, r.Length)
			} else {
				var err error
				if v, err = records.Encode(r.Type, r.Length, text); err != nil {
					return nil, fmt.Errorf("%s: %w", fv.path, err)
				}
			}
			out[fname][r.Number] = records.TLV(r.Tag, v)
		}
	}
	return out, nil
}

// blankValue is a record never written: 00s for an and b, FFs for cn.
func blankValue(typ string, n int) []byte {
	fill := byte(0x00)
	if typ == records.TypeNumeric {
		fill = 0xFF
	}
	return bytes.Repeat([]byte{fill}, n)
}

func (c *Card) setPIN() error {
	pp := c.prof.PIN
	v := c.img.PIN.Value
	if len(v) < pp.MinLength || len(v) > pp.MaxLength {
		return fmt.Errorf("pin.value: %d digits, profile %s wants %d..%d", len(v), c.prof.Name, pp.MinLength, pp.MaxLength)
	}
	c.pin = v
	c.tries = pp.Tries
	if t := c.img.PIN.TriesLeft; t != nil {
		if *t > pp.Tries {
			return fmt.Errorf("pin.tries_left: %d exceeds profile %s's pin.tries (%d)", *t, c.prof.Name, pp.Tries)
		}
		c.tries = *t
	}
	return nil
}

// setKeys derives the card's keys: each holder key's test master key
// diversified along crypto.diversification.levels. The card keeps only
// the diversified keys, like a real card.
func (c *Card) setKeys() error {
	p := c.prof
	var path [][]byte
	for _, level := range p.Crypto.Diversification.Levels {
		f, err := profiles.DivInput(level, c.cardID)
		if err != nil {
			return fmt.Errorf("card_id: diversification level %s: %w", level, err)
		}
		path = append(path, f)
	}
	for _, h := range p.Crypto.HolderKeys {
		master, err := keys.TestKey(keys.KeyName(h.Name), c.alg)
		if err != nil {
			return fmt.Errorf("keys: profile %s holder key %s: %w", p.Name, h.Name, err)
		}
		k, err := keys.DiversifyPath(c.alg, master, path)
		clear(master)
		if err != nil {
			return fmt.Errorf("keys: holder key %s: %w", h.Name, err)
		}
		c.cardKeys[h.Name] = k
	}
	for _, role := range sortedKeys(p.Crypto.Keys) {
		idx := byte(p.Crypto.Keys[role])
		name, ok := p.HolderKeyFor(role)
		if !ok {
			return fmt.Errorf("profile %s: crypto.keys.%s has no holder key", p.Name, role)
		}
		if other, dup := c.keyByIndex[idx]; dup && other != name {
			return fmt.Errorf("profile %s: key index %02X is both %s and %s", p.Name, idx, other, name)
		}
		c.keyByIndex[idx] = name
		c.keyTries[idx] = ExternalAuthTries
	}
	ia := p.Crypto.InternalAuth
	idx, ok := p.Crypto.Keys[ia.Key]
	if !ok {
		return fmt.Errorf("profile %s: crypto.internal_auth.key %q is not in crypto.keys", p.Name, ia.Key)
	}
	c.intAuthP2 = byte(idx)
	c.intAuthKey = c.keyByIndex[byte(idx)]
	f, err := profiles.DivInput(ia.Factor, c.cardID)
	if err != nil {
		return fmt.Errorf("profile %s: crypto.internal_auth.factor: %w", p.Name, err)
	}
	c.intFactor = f
	return nil
}

// setOps reads the command codings off the profile's templates: the header
// (CLA INS P1 P2) identifies the command, the placeholders its data.
func (c *Card) setOps() error {
	p := c.prof
	for _, name := range sortedKeys(p.Commands) {
		t := p.Commands[name]
		vals := map[string][]byte{}
		variable := false
		op := &tplOp{name: name, t: t, lc: -1}
		for _, ph := range t.Placeholders() {
			switch ph {
			case "lc":
			case "mac":
				vals[ph] = make([]byte, secure.MACSize)
				op.hasMAC = true
			case "cryptogram16", "enc_pin_block16":
				vals[ph] = make([]byte, secure.PINBlockSize)
				op.enc = true
			default: // pin, old, new
				vals[ph] = []byte{0}
				variable = true
			}
		}
		b, err := t.Build(vals)
		if err != nil {
			return fmt.Errorf("profile %s: commands.%s: %w", p.Name, name, err)
		}
		copy(op.hdr[:], b[:4])
		if !variable && len(b) > 5 {
			op.lc = len(b) - 5
		}
		if name == profiles.CmdPINChange {
			if op.sep, err = templateSeparator(t.Text); err != nil {
				return fmt.Errorf("profile %s: commands.%s: %w", p.Name, name, err)
			}
		}
		if op.hasMAC {
			if _, ok := c.cardKeys[t.MACKey]; !ok {
				return fmt.Errorf("profile %s: commands.%s: mac_key %q is not a holder key", p.Name, name, t.MACKey)
			}
		}
		if op.enc {
			if _, ok := c.cardKeys[t.EncKey]; !ok {
				return fmt.Errorf("profile %s: commands.%s: enc_key %q is not a holder key", p.Name, name, t.EncKey)
			}
		}
		if prev, dup := c.ops[op.hdr]; dup {
			return fmt.Errorf("profile %s: commands.%s and %s have the same header % X", p.Name, name, prev.name, op.hdr)
		}
		c.ops[op.hdr] = op
		c.opINS[[2]byte{op.hdr[0], op.hdr[1]}] = true
	}
	return nil
}

// templateSeparator is the literal bytes between {old} and {new}.
func templateSeparator(text string) ([]byte, error) {
	i, j := strings.Index(text, "{old}"), strings.Index(text, "{new}")
	if i < 0 || j < i {
		return nil, errors.New("want {old} before {new}")
	}
	sep, err := apdu.ParseHex(text[i+len("{old}") : j])
	if err != nil {
		return nil, err
	}
	if len(sep) == 0 {
		return nil, errors.New("no literal separator between {old} and {new}")
	}
	return sep, nil
}

// profileATR is the pattern bytes of the profile's highest-priority ATR
// (the first listed among equals).
func profileATR(p *profiles.Profile) ([]byte, error) {
	if len(p.ATR) == 0 {
		return nil, fmt.Errorf("profile %s: no ATR", p.Name)
	}
	best := p.ATR[0]
	for _, a := range p.ATR[1:] {
		if a.Priority > best.Priority {
			best = a
		}
	}
	if _, err := engine.ParseATR(best.Pattern); err != nil {
		return nil, fmt.Errorf("profile %s: atr (priority %d): %w", p.Name, best.Priority, err)
	}
	return append([]byte(nil), best.Pattern...), nil
}

// ssseFCI is the answer to SELECT SSSE: 6F { 84 AID, A5 { 9F0C 03 86 01 xx } }
// with xx the algorithm environment (card-reference §2: 01 DES/3DES, 03 SM4).
func ssseFCI(aid []byte, alg keys.Algorithm) []byte {
	env := byte(0x01)
	if alg == keys.SM4 {
		env = 0x03
	}
	prop := []byte{0x9F, 0x0C, 0x03, 0x86, 0x01, env}
	body := append([]byte{0x84, byte(len(aid))}, aid...)
	body = append(body, 0xA5, byte(len(prop)))
	body = append(body, prop...)
	return append([]byte{0x6F, byte(len(body))}, body...)
}

// fingerprintFID is EF07 (fingerprint, transparent, key-protected), which
// the profiles do not declare: 0x300 bytes on 1.0 cards, 0x400 after.
const fingerprintFID = 0xEF07

func accessString(a profiles.Access) string {
	switch a.Kind {
	case profiles.AccessKey:
		return fmt.Sprintf("key:%02X", a.Key)
	case profiles.AccessPIN:
		return "pin"
	case profiles.AccessNever:
		return "never"
	}
	return "free"
}

// buildEngine lays out MF / SSSE / EFs in a generic engine card and installs
// the SSSE handlers on it.
func (c *Card) buildEngine(recs map[string]map[int][]byte) error {
	p := c.prof
	var efs []engine.Node
	haveEF07 := false
	for _, fname := range sortedFileNames(p) {
		f := p.Files[fname]
		fid := uint16(f.FID[0])<<8 | uint16(f.FID[1])
		n := engine.Node{Type: "ef", FID: fmt.Sprintf("%04X", fid), Comment: fname}
		if f.FID[0] == 0xEF && f.FID[1] >= 1 && f.FID[1] <= 30 {
			n.SFI = int(f.FID[1])
		}
		if f.Kind == "record" {
			n.Structure = "record"
			// READ/UPDATE RECORD are this package's: the engine's access is unused.
			n.Read, n.Update = "never", "never"
		} else {
			n.Structure = "transparent"
			n.Size = 0x100
			if fid == fingerprintFID {
				haveEF07 = true
				n.Size = c.fingerprintSize()
			}
			n.Read, n.Update = accessString(f.Read), accessString(f.Write)
		}
		efs = append(efs, n)
	}
	if !haveEF07 {
		// Not in the profiles: fingerprint, key-protected (card-reference §2);
		// read with the read key, written with the write key.
		efs = append(efs, engine.Node{
			Type: "ef", FID: "EF07", SFI: 7, Structure: "transparent", Size: c.fingerprintSize(),
			Comment: "fingerprint (empty)",
			Read:    fmt.Sprintf("key:%02X", p.Crypto.Keys["read"]),
			Update:  fmt.Sprintf("key:%02X", p.Crypto.Keys["write"]),
		})
	}
	eimg := &engine.Image{
		Comment: "ssse " + p.Name,
		ATR:     fmt.Sprintf("%X", c.atr),
		MF: engine.Node{FID: "3F00", Children: []engine.Node{{
			Type: "df", Name: fmt.Sprintf("%X", p.Select.SSSEAID),
			FCI: fmt.Sprintf("%X", ssseFCI(p.Select.SSSEAID, c.alg)), Children: efs,
		}}},
	}
	eng, err := engine.New(eimg)
	if err != nil {
		return fmt.Errorf("profile %s: %w", p.Name, err)
	}
	c.eng = eng
	ssse := eng.MF.DFs[0]
	for _, ef := range ssse.EFs {
		info := &efInfo{ef: ef}
		for _, fname := range sortedFileNames(p) {
			f := p.Files[fname]
			if uint16(f.FID[0])<<8|uint16(f.FID[1]) == ef.FID {
				info.name, info.prof = fname, f
			}
		}
		if info.prof == nil {
			info.name = fmt.Sprintf("%04X", ef.FID)
		}
		if info.prof != nil && info.prof.Kind == "record" {
			maxN := 0
			for n := range recs[info.name] {
				maxN = max(maxN, n)
			}
			ef.Records = make([][]byte, maxN)
			for n, r := range recs[info.name] {
				ef.Records[n-1] = r
			}
		}
		c.files[ef.FID] = info
	}

	inses := map[byte]bool{}
	for ins := range builtinINS {
		inses[ins] = true
	}
	for ci := range c.opINS {
		inses[ci[1]] = true
		eng.AllowCLA(ci[0])
	}
	for ins := range inses {
		eng.Handle(ins, c.dispatch)
	}
	eng.OnReset(func(*engine.Card) { c.mfSelected = false })
	return nil
}

func (c *Card) fingerprintSize() int {
	if c.prof.SpecVersion == "1.00" {
		return 0x300
	}
	return 0x400
}

// ATR is the profile's highest-priority ATR (a T=0 one on a T0 profile).
func (c *Card) ATR() []byte { return append([]byte(nil), c.atr...) }

// Reset is power-up: MF selected, no verified PIN or authenticated key, no
// challenge; the files, the state and the try counters are kept.
func (c *Card) Reset() {
	if c.t0 != nil {
		c.t0.Reset()
		return
	}
	c.inner.Reset()
}

// Process answers one raw command APDU (through the T=0 transport on a T0 profile).
func (c *Card) Process(raw []byte) []byte {
	if c.t0 != nil {
		return c.t0.Process(raw)
	}
	return c.inner.Process(raw)
}

// Profile is the card's firmware profile.
func (c *Card) Profile() *profiles.Profile { return c.prof }

// Image is the image the card was built from.
func (c *Card) Image() *Image { return c.img }

// CardID is the card identification code the card's keys were diversified with.
func (c *Card) CardID() []byte { return append([]byte(nil), c.cardID...) }

// State is the application's life cycle state now.
func (c *Card) State() State {
	var s State
	c.eng.Do(func(*engine.Card) { s = c.state })
	return s
}

// PIN is the current PIN value.
func (c *Card) PIN() string {
	var s string
	c.eng.Do(func(*engine.Card) { s = c.pin })
	return s
}

// Tries is the PIN's try counter (0: blocked).
func (c *Card) Tries() int {
	var n int
	c.eng.Do(func(*engine.Card) { n = c.tries })
	return n
}

// KeyTries is the EXTERNAL AUTHENTICATE try counter of card key index k,
// -1 for an unknown index.
func (c *Card) KeyTries(k byte) int {
	n := -1
	c.eng.Do(func(*engine.Card) {
		if v, ok := c.keyTries[k]; ok {
			n = v
		}
	})
	return n
}

// Record returns a copy of record n (the whole TLV) of file ("EF05",
// "EF06"), nil when there is none.
func (c *Card) Record(file string, n int) []byte {
	var out []byte
	c.eng.Do(func(*engine.Card) {
		for _, info := range c.files {
			if info.name == file {
				if r, ok := info.ef.Record(n); ok && r != nil {
					out = append([]byte(nil), r...)
				}
			}
		}
	})
	return out
}

// APDUCount is the number of APDUs the application processed, the T=0
// transport's GET RESPONSEs and 6Cxx resends not counted.
func (c *Card) APDUCount() int { return int(c.apdus.Load()) }

// --- dispatch ---

// kind is what a command is, for the state gate.
type kind int

const (
	kUnknown kind = iota
	kSelect
	kReadRecord
	kUpdateRecord
	kReadBinary
	kUpdateBinary
	kGetChallenge
	kExtAuth
	kIntAuth
	kVerify
	kTemplate
)

// builtinINS are the CLA 00 commands, by INS.
var builtinINS = map[byte]kind{
	0xA4: kSelect, 0xB2: kReadRecord, 0xDC: kUpdateRecord, 0xB0: kReadBinary, 0xD6: kUpdateBinary,
	0x84: kGetChallenge, 0x82: kExtAuth, 0x88: kIntAuth, 0x20: kVerify,
}

func st(sw apdu.StatusWord) apdu.Response { return engine.Status(sw) }

func retriesSW(n int) apdu.StatusWord { return apdu.StatusWord(0x63C0 | uint16(n&0x0F)) }

// dispatch is the handler of every INS the card knows; it runs with the
// engine's lock held.
func (c *Card) dispatch(e *engine.Card, cmd apdu.Command) apdu.Response {
	op := c.ops[[4]byte{cmd.CLA, cmd.INS, cmd.P1, cmd.P2}]
	k := kUnknown
	switch {
	case op != nil:
		k = kTemplate
	case cmd.CLA == 0x00:
		k = builtinINS[cmd.INS]
	}
	switch k {
	case kSelect:
		return c.selectCmd(e, cmd)
	case kUnknown:
		if c.opINS[[2]byte{cmd.CLA, cmd.INS}] {
			return st(apdu.SWIncorrectP1P2)
		}
		if cmd.CLA == 0x00 {
			return st(apdu.SWINSNotSupported)
		}
		return st(apdu.SWCLANotSupported)
	}
	if sw := c.gate(k, op); sw != 0 {
		return st(sw)
	}
	switch k {
	case kTemplate:
		return c.runTemplate(e, op, cmd)
	case kReadRecord:
		return c.readRecord(e, cmd)
	case kUpdateRecord:
		return c.updateRecord(e, cmd)
	case kReadBinary:
		return engine.ReadBinary(e, cmd)
	case kUpdateBinary:
		if !c.personalizing() {
			return st(apdu.SWConditionsNotSatisfied)
		}
		r := engine.UpdateBinary(e, cmd)
		if r.SW == apdu.SWOK && c.state == StateBlank {
			c.state = StatePersonalized
		}
		return r
	case kGetChallenge:
		return engine.GetChallenge(e, cmd)
	case kExtAuth:
		return c.externalAuth(e, cmd)
	case kIntAuth:
		return c.internalAuth(cmd)
	case kVerify:
		return c.verify(e, cmd)
	}
	return st(apdu.SWINSNotSupported)
}

// gate is the life cycle's answer to a command before it runs, 0 to let it
// run. SELECT has its own rules (selectCmd).
func (c *Card) gate(k kind, op *tplOp) apdu.StatusWord {
	switch c.state {
	case StateCardBlocked:
		return apdu.SWFuncNotSupported
	case StateBlockedPermanent:
		if k == kIntAuth {
			return 0
		}
		return apdu.SWAppLocked
	case StateTransportLocked, StateBlockedTemporary:
		// A temporarily blocked application can still be read (a counter
		// identifies a card reported lost, or a delivered card before
		// activation) and authenticated; PIN work and writes are refused.
		// Assumption A-BLOCKED-READ (docs/firmware-profiles.md).
		switch {
		case k == kGetChallenge, k == kIntAuth, k == kExtAuth, k == kSelect, k == kReadRecord, k == kReadBinary:
			return 0
		case op != nil:
			switch op.name {
			case profiles.CmdApplicationUnblock, profiles.CmdApplicationBlockTemporary,
				profiles.CmdApplicationBlockPermanent, profiles.CmdCardBlock:
				return 0
			}
		}
		return apdu.SWConditionsNotSatisfied
	}
	return 0
}

// personalizing reports a state in which personalization writes are allowed.
func (c *Card) personalizing() bool {
	return c.state == StateBlank || c.state == StatePersonalized
}

func (c *Card) selectCmd(e *engine.Card, cmd apdu.Command) apdu.Response {
	if c.state == StateCardBlocked {
		return st(apdu.SWFuncNotSupported)
	}
	isMF := cmd.P1 == 0x00 && (len(cmd.Data) == 0 || bytes.Equal(cmd.Data, []byte{0x3F, 0x00}))
	isApp := cmd.P1 == 0x04 && bytes.Equal(cmd.Data, c.prof.Select.SSSEAID)
	switch {
	case isMF:
		r := engine.Select(e, cmd)
		if r.SW == apdu.SWOK {
			c.mfSelected = true
			e.Security.Clear()
		}
		return r
	case isApp:
		if c.prof.Select.MFFirst && !c.mfSelected {
			return st(apdu.SWFileNotFound)
		}
		if c.state == StateBlockedPermanent {
			return st(apdu.SWAppLocked)
		}
		r := engine.Select(e, cmd)
		if r.SW != apdu.SWOK {
			return r
		}
		e.Security.Clear()
		if c.state == StateTransportLocked || c.state == StateBlockedTemporary {
			r.SW = apdu.SWWarningFileInvalidated
		}
		return r
	}
	if sw := c.gate(kSelect, nil); sw != 0 {
		return st(sw)
	}
	return engine.Select(e, cmd)
}

// recordTarget decodes P1 P2 of READ/UPDATE RECORD: by number (P2 =
// SFI<<3|04, P1 the number) or, when byTag, by tag (P2 00, P1 the tag, in
// the current EF). It answers the EF and the profile record.
func (c *Card) recordTarget(e *engine.Card, cmd apdu.Command, byTag bool) (*efInfo, profiles.Record, apdu.StatusWord) {
	var ef *engine.EF
	var sw apdu.StatusWord
	switch {
	case cmd.P2&0x07 == 0x04:
		if cmd.P1 == 0x00 || cmd.P1 == 0xFF || cmd.P2>>3 == 0x1F {
			return nil, profiles.Record{}, apdu.SWIncorrectP1P2
		}
		ef, sw = e.TargetEF(cmd.P2 >> 3)
	case byTag && cmd.P2 == 0x00:
		ef, sw = e.TargetEF(0)
	default:
		return nil, profiles.Record{}, apdu.SWIncorrectP1P2
	}
	if sw != apdu.SWOK {
		return nil, profiles.Record{}, sw
	}
	info := c.files[ef.FID]
	if info == nil || info.prof == nil || info.prof.Kind != "record" || ef.Parent != e.MF.DFs[0] {
		return nil, profiles.Record{}, apdu.SWIncompatibleFileStruct
	}
	for _, r := range info.prof.Records {
		if cmd.P2 == 0x00 && r.Tag == cmd.P1 || cmd.P2 != 0x00 && r.Number == int(cmd.P1) {
			if rec, ok := ef.Record(r.Number); ok && rec != nil {
				return info, r, apdu.SWOK
			}
		}
	}
	return nil, profiles.Record{}, apdu.SWRecordNotFound
}

// allowed checks a profile access condition against the security state.
func (c *Card) allowed(e *engine.Card, a profiles.Access) apdu.StatusWord {
	switch a.Kind {
	case profiles.AccessFree:
		return apdu.SWOK
	case profiles.AccessKey:
		if e.Security.Authenticated(a.Key) {
			return apdu.SWOK
		}
	case profiles.AccessPIN:
		if e.Security.PINVerified {
			return apdu.SWOK
		}
	}
	return apdu.SWSecurityStatus
}

// readRecord is READ RECORD: the record's whole TLV.
func (c *Card) readRecord(e *engine.Card, cmd apdu.Command) apdu.Response {
	if len(cmd.Data) > 0 || cmd.Ne == 0 {
		return st(apdu.SWWrongLength)
	}
	info, r, sw := c.recordTarget(e, cmd, true)
	if sw != apdu.SWOK {
		return st(sw)
	}
	acc := info.prof.Read
	if r.Read != nil {
		acc = *r.Read
	}
	if sw := c.allowed(e, acc); sw != apdu.SWOK {
		return st(sw)
	}
	rec, _ := info.ef.Record(r.Number)
	if cmd.Ne < len(rec) {
		return st(apdu.StatusWord(0x6C00 | uint16(len(rec)&0xFF)))
	}
	return engine.OK(append([]byte(nil), rec...))
}

// updateRecord is UPDATE RECORD by number, while blank or personalized.
func (c *Card) updateRecord(e *engine.Card, cmd apdu.Command) apdu.Response {
	if !c.personalizing() {
		return st(apdu.SWConditionsNotSatisfied)
	}
	if len(cmd.Data) == 0 {
		return st(apdu.SWWrongLength)
	}
	info, r, sw := c.recordTarget(e, cmd, false)
	if sw != apdu.SWOK {
		return st(sw)
	}
	if sw := c.allowed(e, info.prof.Write); sw != apdu.SWOK {
		return st(sw)
	}
	if len(cmd.Data) != r.Length+2 {
		return st(apdu.SWWrongLength)
	}
	if cmd.Data[0] != r.Tag || int(cmd.Data[1]) != r.Length {
		return st(apdu.SWWrongData)
	}
	info.ef.SetRecord(r.Number, cmd.Data)
	if c.state == StateBlank {
		c.state = StatePersonalized
	}
	return st(apdu.SWOK)
}

// takeChallenge returns the last challenge and forgets it (one use).
func takeChallenge(e *engine.Card) []byte {
	ch := e.Challenge
	e.Challenge = nil
	return ch
}

// externalAuth is EXTERNAL AUTHENTICATE 00 82 00 kk 10 <16 bytes>.
func (c *Card) externalAuth(e *engine.Card, cmd apdu.Command) apdu.Response {
	ch := takeChallenge(e)
	if cmd.P1 != 0x00 {
		return st(apdu.SWIncorrectP1P2)
	}
	kk := cmd.P2
	name, ok := c.keyByIndex[kk]
	if !ok {
		return st(apdu.SWRefDataNotFound)
	}
	if c.keyTries[kk] <= 0 {
		return st(apdu.SWAuthBlocked)
	}
	if len(cmd.Data) != keys.ExternalAuthDataSize {
		return st(apdu.SWWrongLength)
	}
	if ch == nil {
		return st(apdu.SWConditionsNotSatisfied)
	}
	want, err := keys.EncryptECB(c.alg, c.cardKeys[name], keys.ExternalAuthData(ch))
	if err != nil {
		return st(apdu.SWUnknown)
	}
	if len(want) == len(cmd.Data) && subtle.ConstantTimeCompare(want, cmd.Data) == 1 {
		c.keyTries[kk] = ExternalAuthTries
		e.Security.Authenticate(kk)
		return st(apdu.SWOK)
	}
	c.keyTries[kk]--
	if c.keyTries[kk] <= 0 {
		c.keyTries[kk] = 0
		return st(apdu.SWAuthBlocked)
	}
	return st(retriesSW(c.keyTries[kk]))
}

// internalAuth is INTERNAL AUTHENTICATE 00 88 00 P2 10 <factor 8> <data 8>.
func (c *Card) internalAuth(cmd apdu.Command) apdu.Response {
	if cmd.P1 != 0x00 {
		return st(apdu.SWIncorrectP1P2)
	}
	if cmd.P2 != c.intAuthP2 {
		return st(apdu.SWRefDataNotFound)
	}
	if len(cmd.Data) != 16 {
		return st(apdu.SWWrongLength)
	}
	if !bytes.Equal(cmd.Data[:8], c.intFactor) {
		return st(apdu.SWWrongData)
	}
	in, err := secure.InternalAuthData(c.alg, cmd.Data[8:])
	if err != nil {
		return st(apdu.SWWrongData)
	}
	out, err := keys.EncryptECB(c.alg, c.cardKeys[c.intAuthKey], in)
	if err != nil {
		return st(apdu.SWUnknown)
	}
	if cmd.Ne > 0 && cmd.Ne < len(out) {
		return st(apdu.StatusWord(0x6C00 | uint16(len(out))))
	}
	return engine.OK(out)
}

// pinBlock is the PIN as VERIFY carries it: BCD, an odd count padded with
// the profile's pad nibble.
func (c *Card) pinBlock(digits string) []byte {
	b, err := secure.EncodePIN(digits)
	if err != nil {
		return nil
	}
	if len(digits)%2 == 1 {
		b[len(b)-1] = b[len(b)-1]&0xF0 | c.prof.PIN.Pad&0x0F
	}
	return b
}

// decodePIN reads a BCD PIN block (pad nibble only as the last nibble of an
// odd count) and checks the profile's length policy.
func (c *Card) decodePIN(block []byte) (string, bool) {
	var sb strings.Builder
	for i, b := range block {
		for j, n := range []byte{b >> 4, b & 0x0F} {
			last := i == len(block)-1 && j == 1
			switch {
			case n <= 9:
				sb.WriteByte('0' + n)
			case last && n == c.prof.PIN.Pad&0x0F && sb.Len() > 0:
			default:
				return "", false
			}
		}
	}
	return sb.String(), c.pinLengthOK(sb.String())
}

func (c *Card) pinLengthOK(pin string) bool {
	return len(pin) >= c.prof.PIN.MinLength && len(pin) <= c.prof.PIN.MaxLength &&
		strings.Trim(pin, "0123456789") == ""
}

// checkPIN compares a presented PIN block and counts: 9000 (counter reset),
// 63Cx, or 6983 when blocked (already, or by this wrong try).
func (c *Card) checkPIN(e *engine.Card, block []byte) apdu.StatusWord {
	if c.tries <= 0 {
		return apdu.SWAuthBlocked
	}
	if subtle.ConstantTimeCompare(block, c.pinBlock(c.pin)) == 1 {
		c.tries = c.prof.PIN.Tries
		e.Security.PINVerified = true
		return apdu.SWOK
	}
	e.Security.PINVerified = false
	c.tries--
	if c.tries <= 0 {
		c.tries = 0
		return apdu.SWAuthBlocked
	}
	return retriesSW(c.tries)
}

// verify is VERIFY 00 20 00 00 Lc <PIN>.
func (c *Card) verify(e *engine.Card, cmd apdu.Command) apdu.Response {
	if cmd.P1 != 0x00 {
		return st(apdu.SWIncorrectP1P2)
	}
	if cmd.P2 != 0x00 {
		return st(apdu.SWRefDataNotFound)
	}
	if len(cmd.Data) == 0 {
		switch {
		case !c.prof.PIN.RetriesByEmptyVerify:
			return st(apdu.SWWrongLength)
		case c.tries <= 0:
			return st(apdu.SWAuthBlocked)
		case e.Security.PINVerified:
			return st(apdu.SWOK)
		}
		return st(retriesSW(c.tries))
	}
	if len(cmd.Data) > 8 {
		return st(apdu.SWWrongLength)
	}
	return st(c.checkPIN(e, cmd.Data))
}

// precondition is the life cycle condition of a template command (6985 when not met).
func (c *Card) precondition(name string) bool {
	switch name {
	case profiles.CmdApplicationBlockTemporary:
		switch c.state {
		case StateActive, StateFinalized, StateBlockedTemporary, StateTransportLocked:
			return true
		}
		return false
	case profiles.CmdApplicationBlockPermanent:
		return c.state != StateBlank
	case profiles.CmdApplicationUnblock:
		switch c.state {
		case StateActive, StateBlockedTemporary, StateTransportLocked:
			return true
		}
		return false
	case profiles.CmdFinalize:
		return c.state == StatePersonalized
	}
	return true
}

// runTemplate runs one of the profile's command templates.
func (c *Card) runTemplate(e *engine.Card, op *tplOp, cmd apdu.Command) apdu.Response {
	var ch []byte
	if op.hasMAC {
		ch = takeChallenge(e)
	}
	data := cmd.Data
	if op.lc >= 0 && len(data) != op.lc || op.hasMAC && len(data) < secure.MACSize || len(data) == 0 {
		return st(apdu.SWWrongLength)
	}
	if op.t.Auth != "" {
		idx, ok := c.prof.Crypto.Keys[op.t.Auth]
		if !ok || !e.Security.Authenticated(byte(idx)) {
			return st(apdu.SWSecurityStatus)
		}
	}
	if op.hasMAC && ch == nil {
		return st(apdu.SWConditionsNotSatisfied)
	}
	if !c.precondition(op.name) {
		return st(apdu.SWConditionsNotSatisfied)
	}
	payload := data
	if op.hasMAC {
		iv, err := secure.IV(c.alg, ch)
		if err != nil {
			return st(apdu.SWConditionsNotSatisfied) // a challenge of another length than 8
		}
		in, err := secure.MACInput(cmd.CLA, cmd.INS, cmd.P1, cmd.P2, data)
		if err != nil {
			return st(apdu.SWWrongLength)
		}
		ok, err := keys.VerifyMAC(c.alg, c.cardKeys[op.t.MACKey], iv, in, data[len(data)-secure.MACSize:])
		if err != nil || !ok {
			return st(apdu.SWSMDataIncorrect)
		}
		payload = data[:len(data)-secure.MACSize]
	}

	switch op.name {
	case profiles.CmdPINChange:
		i := bytes.Index(payload, op.sep)
		if i < 1 {
			return st(apdu.SWWrongData)
		}
		if c.tries <= 0 {
			return st(apdu.SWAuthBlocked)
		}
		newPIN, ok := c.decodePIN(payload[i+len(op.sep):])
		if !ok {
			return st(apdu.SWWrongData)
		}
		if sw := c.checkPIN(e, payload[:i]); sw != apdu.SWOK {
			return st(sw)
		}
		c.pin = newPIN
		return st(apdu.SWOK)
	case profiles.CmdPINReload, profiles.CmdPINReloadByKey, profiles.CmdPINUnblock:
		var newPIN string
		if op.enc {
			if len(payload) != secure.PINBlockSize {
				return st(apdu.SWWrongLength)
			}
			block, err := keys.DecryptECB(c.alg, c.cardKeys[op.t.EncKey], payload)
			if err != nil {
				return st(apdu.SWWrongData)
			}
			if newPIN, err = secure.ParsePINBlock(block); err != nil || !c.pinLengthOK(newPIN) {
				return st(apdu.SWWrongData)
			}
		} else {
			var ok bool
			if newPIN, ok = c.decodePIN(payload); !ok {
				return st(apdu.SWWrongData)
			}
		}
		c.pin = newPIN
		c.tries = c.prof.PIN.Tries
		e.Security.PINVerified = false
		return st(apdu.SWOK)
	case profiles.CmdApplicationBlockTemporary:
		switch c.state {
		case StateFinalized:
			c.state = StateTransportLocked
		case StateActive:
			c.state = StateBlockedTemporary
		}
	case profiles.CmdApplicationBlockPermanent:
		c.state = StateBlockedPermanent
	case profiles.CmdApplicationUnblock:
		c.state = StateActive
	case profiles.CmdCardBlock:
		c.state = StateCardBlocked
	case profiles.CmdFinalize:
		c.state = StateFinalized
	default:
		return st(apdu.SWINSNotSupported)
	}
	return st(apdu.SWOK)
}

func sortedFileNames(p *profiles.Profile) []string {
	return sortedKeys(p.Files)
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
