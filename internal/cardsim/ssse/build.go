package ssse

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"ssstation/cardapp/keys"
	"ssstation/cardapp/records"
	"ssstation/cardapp/secure"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/engine"
	"ssstation/pcsc/apdu"
)

// Building a card: records, PIN, keys and command codings from the profile
// and the image, and the engine laid out as MF / SSSE / EFs.

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
		seq := slices.SortedFunc(slices.Values(file.Records), func(a, b profiles.Record) int { return a.Number - b.Number })
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
				if r.Type == records.TypeText && c.anPad != 0x00 {
					padText(v, text, c.anPad)
				}
			}
			n := r.Number
			if c.sequential {
				n = 1 + slices.IndexFunc(seq, func(x profiles.Record) bool { return x.Number == r.Number })
				if c.recNums[fname] == nil {
					c.recNums[fname] = map[int]int{}
				}
				c.recNums[fname][r.Number] = n
			}
			out[fname][n] = records.TLV(r.Tag, v)
		}
	}
	return out, nil
}

// padText replaces the zero padding records.Encode left after text's GBK
// bytes with pad (0x20 on the real 1.00 card, card-reference §9).
func padText(v []byte, text string, pad byte) {
	n, err := records.GBKLen(text)
	if err != nil {
		return
	}
	for i := n; i < len(v); i++ {
		v[i] = pad
	}
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

// applyQuirks sets what the image's card section overrides of the profile:
// ATR (and with it the protocol), SSSE FCI, an padding, record numbering.
func (c *Card) applyQuirks() error {
	var err error
	if c.atr, err = profileATR(c.prof); err != nil {
		return err
	}
	c.t0Card = c.prof.Protocol == profiles.T0
	c.fci = ssseFCI(c.prof.Select.SSSEAID, c.alg)
	c.recNums = map[string]map[int]int{}
	q := c.img.Card
	if q == nil {
		return nil
	}
	if q.ATR != "" {
		atr, err := apdu.ParseHex(q.ATR)
		if err != nil {
			return fmt.Errorf("card.atr: %w", err)
		}
		parsed, err := engine.ParseATR(atr)
		if err != nil {
			return fmt.Errorf("card.atr: %w", err)
		}
		c.atr = atr
		c.t0Card = slices.Equal(parsed.Protocols, []int{0})
	}
	if q.SSSEFCI != "" {
		if c.fci, err = apdu.ParseHex(q.SSSEFCI); err != nil {
			return fmt.Errorf("card.ssse_fci: %w", err)
		}
		if len(c.fci) < 2 || c.fci[0] != 0x6F || int(c.fci[1]) != len(c.fci)-2 {
			return fmt.Errorf("card.ssse_fci: want 6F, its length, then the length's bytes")
		}
	}
	if q.ANPad == "20" {
		c.anPad = 0x20
	}
	c.sequential = q.RecordNumbers == NumbersSequential
	return nil
}

// profileATR is the pattern bytes of the profile's highest-priority ATR
// (the first listed among equals). A profile without ATR patterns (they
// are optional overrides: cards are identified by what they answer) gets
// a plain ATR of its protocol, historical bytes "SSSECARD".
func profileATR(p *profiles.Profile) ([]byte, error) {
	if len(p.ATR) == 0 {
		hist := []byte("SSSECARD")
		if p.Protocol == profiles.T0 {
			return append([]byte{0x3B, 0x68, 0x00, 0x00}, hist...), nil
		}
		return engine.WithTCK(append([]byte{0x3B, 0x88, 0x81, 0x31, 0xFE, 0x45}, hist...)), nil
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
			FCI: fmt.Sprintf("%X", c.fci), Children: efs,
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
		info.nums = c.recNums[info.name]
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
