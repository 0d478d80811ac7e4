package profiles

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func builtin(t *testing.T) *Set {
	t.Helper()
	s, err := Builtin()
	if err != nil {
		t.Fatalf("Builtin: %v", err)
	}
	return s
}

func get(t *testing.T, s *Set, name string) *Profile {
	t.Helper()
	p, ok := s.Get(name)
	if !ok {
		t.Fatalf("profile %s missing", name)
	}
	return p
}

func unhexT(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuiltinLoads(t *testing.T) {
	s := builtin(t)
	var names []string
	for _, p := range s.List() {
		names = append(names, p.Name)
		if p.SourceFile != p.Name+".yaml" {
			t.Errorf("%s: SourceFile %q", p.Name, p.SourceFile)
		}
		if p.Schema != SchemaV1 {
			t.Errorf("%s: schema %q", p.Name, p.Schema)
		}
		n, err := p.ComputeReadInfoAPDUs()
		if err != nil || n != p.ReadInfoMinAPDUs {
			t.Errorf("%s: ComputeReadInfoAPDUs = %d, %v; declared %d", p.Name, n, err, p.ReadInfoMinAPDUs)
		}
		for _, c := range []string{
			CmdApplicationBlockTemporary, CmdApplicationBlockPermanent, CmdApplicationUnblock,
			CmdCardBlock, CmdPINReload, CmdPINReloadByKey, CmdPINUnblock, CmdPINChange, CmdFinalize,
		} {
			tp, ok := p.Template(c)
			if !ok {
				t.Errorf("%s: template %s missing", p.Name, c)
				continue
			}
			if tp.Source == "" || tp.Name != c {
				t.Errorf("%s: template %s: name %q source %q", p.Name, c, tp.Name, tp.Source)
			}
		}
		if len(p.Assumptions) == 0 {
			t.Errorf("%s: no assumptions", p.Name)
		}
	}
	if got := strings.Join(names, " "); got != "ss-v1-3des ss-v2-3des-t0 ss-v3-sm4" {
		t.Errorf("List = %s", got)
	}
}

func TestBuiltinFields(t *testing.T) {
	s := builtin(t)
	v1, v2, v3 := get(t, s, "ss-v1-3des"), get(t, s, "ss-v2-3des-t0"), get(t, s, "ss-v3-sm4")

	type want struct {
		spec, alg  string
		proto      Protocol
		mfFirst    bool
		efP1       byte
		min, max   int
		tries      int
		emptyVer   bool
		readAccess Access
		apdus      int
		quirks     string
	}
	for _, c := range []struct {
		p *Profile
		w want
	}{
		{v1, want{"1.00", Alg3DES, T1, false, 0x00, 6, 6, 3, false, Access{Kind: AccessFree}, 10, ""}},
		// SSSE straight after reset on the T=0 card (card-reference §9): no 3F00 first.
		{v2, want{"2.00", Alg3DES, T0, false, 0x02, 4, 16, 6, true, Access{Kind: AccessFree}, 11, "ef_select_p1_02 t0_get_response"}},
		{v3, want{"3.00", AlgSM4, T1, false, 0x00, 4, 16, 3, true, Access{Kind: AccessKey, Key: 0x0A}, 13, ""}},
	} {
		p, w := c.p, c.w
		if p.SpecVersion != w.spec || p.Crypto.Algorithm != w.alg || p.Protocol != w.proto {
			t.Errorf("%s: spec %s alg %s proto %s", p.Name, p.SpecVersion, p.Crypto.Algorithm, p.Protocol)
		}
		if p.Select.MFFirst != w.mfFirst || p.Select.EFP1 != w.efP1 || p.Select.EFP2 != 0 {
			t.Errorf("%s: select %+v", p.Name, p.Select)
		}
		if !bytes.Equal(p.Select.SSSEAID, unhexT(t, "7378312E73682EC9E7BBE1B1A3D5CF")) {
			t.Errorf("%s: AID % X", p.Name, p.Select.SSSEAID)
		}
		pin := p.PIN
		if pin.Initial != "123456" || pin.MinLength != w.min || pin.MaxLength != w.max || pin.Tries != w.tries ||
			pin.RetriesByEmptyVerify != w.emptyVer || pin.Pad != 0x0F {
			t.Errorf("%s: pin %+v", p.Name, pin)
		}
		for _, item := range []string{ItemSSN, ItemName, ItemGender} {
			if a, ok := p.ReadAccess(item); !ok || a != w.readAccess {
				t.Errorf("%s: read access of %s = %v, %v; want %v", p.Name, item, a, ok, w.readAccess)
			}
		}
		if p.ReadInfoMinAPDUs != w.apdus {
			t.Errorf("%s: read_info_min_apdus %d", p.Name, p.ReadInfoMinAPDUs)
		}
		if got := strings.Join(p.Quirks, " "); got != w.quirks {
			t.Errorf("%s: quirks %q", p.Name, got)
		}
		// Keys confirmed by card-reference §3, and the write access of both files.
		k := p.Crypto.Keys
		if k["internal_auth"] != 0x00 || k["read"] != 0x0A || k["write"] != 0x04 || k["reload"] != 0x06 {
			t.Errorf("%s: keys %v", p.Name, k)
		}
		for _, f := range []string{"EF05", "EF06"} {
			if p.Files[f].Write != (Access{Kind: AccessKey, Key: 0x04}) || p.Files[f].Kind != "record" {
				t.Errorf("%s: %s %+v", p.Name, f, p.Files[f])
			}
		}
		if h, ok := p.HolderKeyFor("read"); !ok || h != "rkssse" {
			t.Errorf("%s: holder key for read = %q", p.Name, h)
		}
		if p.Crypto.InternalAuth.Factor != FactorChallenge || p.Crypto.InternalAuth.Key != "internal_auth" {
			t.Errorf("%s: internal auth %+v", p.Name, p.Crypto.InternalAuth)
		}
		if got := strings.Join(p.Crypto.Diversification.Levels, " "); got != "region card_id_tail" {
			t.Errorf("%s: levels %s", p.Name, got)
		}
		if got := strings.Join(p.Activation.Steps, " "); got != "internal_authenticate pin_change_from_initial" || p.Activation.TransportLock {
			t.Errorf("%s: activation %s, transport lock %v", p.Name, got, p.Activation.TransportLock)
		}
		// EF05 per card-reference §2.
		for i, r := range []Record{
			{Number: 1, Tag: 0x01, Item: ItemCardID, Type: "b", Length: 16},
			{Number: 2, Tag: 0x02, Item: ItemCardType, Type: "an", Length: 1},
			{Number: 3, Tag: 0x03, Item: ItemSpecVersion, Type: "an", Length: 4},
			{Number: 4, Tag: 0x04, Item: ItemInitOrg, Type: "cn", Length: 12},
			{Number: 5, Tag: 0x05, Item: ItemIssueDate, Type: "cn", Length: 4},
			{Number: 6, Tag: 0x06, Item: ItemExpiryDate, Type: "cn", Length: 4},
			{Number: 7, Tag: 0x07, Item: ItemCardNumber, Type: "an", Length: 9},
		} {
			file, got, ok := p.Record(r.Item)
			if !ok || file != "EF05" || got.Number != r.Number || got.Tag != r.Tag || got.Type != r.Type || got.Length != r.Length {
				t.Errorf("%s: EF05 record %d: %s %+v", p.Name, i+1, file, got)
			}
		}
		// EF06 without name_ext.
		for _, r := range []Record{
			{Number: 1, Tag: 0x08, Item: ItemSSN, Type: "an", Length: 18},
			{Number: 2, Tag: 0x09, Item: ItemName, Type: "an", Length: 30},
			{Number: 4, Tag: 0x0A, Item: ItemGender, Type: "an", Length: 1},
			{Number: 5, Tag: 0x0B, Item: ItemNationality, Type: "cn", Length: 1},
			{Number: 6, Tag: 0x0C, Item: ItemBirthplace, Type: "cn", Length: 3},
			{Number: 7, Tag: 0x0D, Item: ItemBirthDate, Type: "cn", Length: 4},
		} {
			file, got, ok := p.Record(r.Item)
			if !ok || file != "EF06" || got.Number != r.Number || got.Tag != r.Tag || got.Type != r.Type || got.Length != r.Length {
				t.Errorf("%s: EF06 %s: %s %+v", p.Name, r.Item, file, got)
			}
		}
	}

	if _, _, ok := v1.Record(ItemNameExt); ok {
		t.Error("v1 has name_ext")
	}
	for _, p := range []*Profile{v2, v3} {
		file, r, ok := p.Record(ItemNameExt)
		if !ok || file != "EF06" || r.Number != 3 || r.Tag != 0x4E || r.Type != "an" || r.Length != 20 {
			t.Errorf("%s: name_ext %s %+v", p.Name, file, r)
		}
	}
	if _, r, _ := v2.Record(ItemNameExt); !r.Optional {
		t.Error("v2 name_ext not optional")
	}
	if _, r, _ := v3.Record(ItemNameExt); r.Optional {
		t.Error("v3 name_ext optional")
	}
	// 3.0: EF05 free, only EF06 waits for RKSSSE (card-reference §9).
	if v3.Files["EF05"].Read != (Access{Kind: AccessFree}) || v3.Files["EF06"].Read != (Access{Kind: AccessKey, Key: 0x0A}) {
		t.Errorf("v3 file read access %v %v", v3.Files["EF05"].Read, v3.Files["EF06"].Read)
	}
	for _, item := range []string{ItemCardID, ItemSpecVersion, ItemIssueDate, ItemExpiryDate, ItemCardNumber} {
		if a, _ := v3.ReadAccess(item); a.Kind != AccessFree {
			t.Errorf("v3 %s read %v", item, a)
		}
	}
	for _, p := range []*Profile{v1, v2} {
		for _, f := range []string{"EF05", "EF06"} {
			if p.Files[f].Read.Kind != AccessFree {
				t.Errorf("%s %s read %v", p.Name, f, p.Files[f].Read)
			}
		}
	}
	// Templates as the brief and card-reference §3 give them.
	for name, text := range map[string]string{
		CmdApplicationBlockTemporary: "84 1E 00 00 04 {mac}",
		CmdApplicationBlockPermanent: "84 1E 00 01 04 {mac}",
		CmdApplicationUnblock:        "84 18 00 00 04 {mac}",
		CmdCardBlock:                 "84 16 00 00 04 {mac}",
		CmdPINReload:                 "80 5E 00 00 {lc} {pin} {mac}",
		CmdPINReloadByKey:            "84 24 00 01 14 {cryptogram16}{mac}",
		CmdPINUnblock:                "84 24 00 00 04 {mac}",
		CmdPINChange:                 "80 5E 01 00 {lc} {old} FF {new}",
		CmdFinalize:                  "84 F0 40 0F 04 {mac}",
	} {
		for _, p := range []*Profile{v1, v2, v3} {
			if tp, _ := p.Template(name); tp.Text != text {
				t.Errorf("%s: %s = %q", p.Name, name, tp.Text)
			}
		}
	}
	if tp, _ := v1.Template(CmdPINReloadByKey); tp.Auth != "reload" {
		t.Errorf("pin_reload_by_key auth %q", tp.Auth)
	}
	if tp, _ := v1.Template(CmdFinalize); !strings.Contains(tp.Source, "silent") {
		t.Errorf("finalize source does not say the spec is silent: %q", tp.Source)
	}
}

// atrCheck parses an ATR per ISO 7816-3 (direct or inverse convention,
// interface bytes chained by TDi, K historical bytes, TCK present unless only
// T=0 is indicated, XOR of T0..TCK = 0) and returns the protocols it offers.
func atrCheck(atr []byte) (protocols map[int]bool, hist []byte, err error) {
	if len(atr) < 2 {
		return nil, nil, errors.New("too short")
	}
	if atr[0] != 0x3B && atr[0] != 0x3F {
		return nil, nil, fmt.Errorf("TS %02X", atr[0])
	}
	protocols = map[int]bool{}
	k := int(atr[1] & 0x0F)
	y := atr[1] >> 4
	i := 2
	first := true
	for {
		for bit := byte(1); bit <= 4; bit <<= 1 {
			if y&bit == 0 {
				continue
			}
			if i >= len(atr) {
				return nil, nil, errors.New("truncated interface bytes")
			}
			i++
		}
		if y&8 == 0 {
			break
		}
		if i >= len(atr) {
			return nil, nil, errors.New("truncated TD")
		}
		td := atr[i]
		i++
		protocols[int(td&0x0F)] = true
		first = false
		y = td >> 4
	}
	if first {
		protocols[0] = true
	}
	needTCK := false
	for p := range protocols {
		if p != 0 {
			needTCK = true
		}
	}
	end := i + k
	if needTCK {
		end++
	}
	if len(atr) != end {
		return nil, nil, fmt.Errorf("length %d, structure says %d", len(atr), end)
	}
	hist = atr[i : i+k]
	if needTCK {
		var x byte
		for _, b := range atr[1:] {
			x ^= b
		}
		if x != 0 {
			return nil, nil, fmt.Errorf("TCK wrong: XOR of T0..TCK is %02X", x)
		}
	}
	return protocols, hist, nil
}

func TestATRCheckSelf(t *testing.T) {
	// A well-known T=1 ATR and a T=0 one, then a broken TCK.
	if _, _, err := atrCheck(unhexT(t, "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A")); err != nil {
		t.Errorf("PC/SC storage card ATR: %v", err)
	}
	if _, _, err := atrCheck(unhexT(t, "3B 68 00 00 00 73 C8 40 10 00 90 00")); err != nil {
		t.Errorf("T=0 ATR: %v", err)
	}
	if _, _, err := atrCheck(unhexT(t, "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6B")); err == nil {
		t.Error("bad TCK accepted")
	}
}

func TestBuiltinATRsValid(t *testing.T) {
	s := builtin(t)
	hists := map[string]string{}
	for _, p := range s.List() {
		for i, a := range p.ATR {
			atr := append([]byte(nil), a.Pattern...)
			exact := true
			for _, m := range a.Mask {
				exact = exact && m == 0xFF
			}
			if !exact {
				// Fill the masked bytes with the exact ATR's, so the
				// structure of the masked pattern is checked too.
				var full []byte
				for _, b := range p.ATR {
					if b.Priority > a.Priority && len(b.Pattern) == len(a.Pattern) {
						full = b.Pattern
					}
				}
				if full == nil {
					t.Fatalf("%s atr[%d]: masked pattern without an exact one", p.Name, i)
				}
				for j := range atr {
					atr[j] |= full[j] &^ a.Mask[j]
				}
				if !a.Match(atr) {
					t.Errorf("%s atr[%d]: filled ATR does not match", p.Name, i)
				}
			}
			protos, hist, err := atrCheck(atr)
			if err != nil {
				t.Errorf("%s atr[%d] % X: %v", p.Name, i, atr, err)
				continue
			}
			want := map[Protocol]int{T0: 0, T1: 1}[p.Protocol]
			if !protos[want] || len(protos) != 1 {
				t.Errorf("%s atr[%d]: protocols %v, profile says %s", p.Name, i, protos, p.Protocol)
			}
			if other, dup := hists[string(hist)]; dup && other != p.Name {
				t.Errorf("%s and %s share historical bytes % X", p.Name, other, hist)
			}
			hists[string(hist)] = p.Name
			if !strings.Contains(a.Note, "cardsim") {
				t.Errorf("%s atr[%d]: note does not say it is the cardsim ATR", p.Name, i)
			}
			if got := s.MatchATR(atr); len(got) != 1 || got[0] != p {
				t.Errorf("%s atr[%d]: set matches %v", p.Name, i, got)
			}
		}
	}
	// The masked v3 entry: another TA1 with its TCK still finds v3, at the lower priority.
	v3 := get(t, s, "ss-v3-sm4")
	other := unhexT(t, "3B 97 13 81 31 FE 45 53 53 43 33 53 4D 34 D5")
	if _, _, err := atrCheck(other); err != nil {
		t.Fatal(err)
	}
	if got := v3.MatchATR(other); got != 50 {
		t.Errorf("v3 with TA1 13: priority %d", got)
	}
	if got := v3.MatchATR(v3.ATR[0].Pattern); got != 100 {
		t.Errorf("v3 exact: priority %d", got)
	}
}

func TestMatchATRPriority(t *testing.T) {
	mk := func(name string, pats ...ATRPattern) *Profile { return &Profile{Name: name, ATR: pats} }
	pat := func(p, m string, prio int) ATRPattern {
		return ATRPattern{Pattern: unhexT(t, p), Mask: unhexT(t, m), Priority: prio}
	}
	a := mk("a", pat("3B 02 14 50", "FF FF FF FF", 10))
	b := mk("b", pat("3B 02 00 50", "FF FF 00 FF", 20), pat("3B 02 14 00", "FF FF FF 00", 5))
	c := mk("c", pat("3B 02 00 00", "FF FF 00 00", 1))
	d := mk("d", pat("3B 02 14 50 00", "FF FF FF FF FF", 99)) // other length
	e := mk("e", pat("3B 02 00 50", "FF FF 00 FF", 20))       // ties b
	s := &Set{byName: map[string]*Profile{"a": a, "b": b, "c": c, "d": d, "e": e}}

	atr := unhexT(t, "3B 02 14 50")
	if got := b.MatchATR(atr); got != 20 {
		t.Errorf("b priority %d", got)
	}
	if got := d.MatchATR(atr); got != -1 {
		t.Errorf("d priority %d", got)
	}
	var names []string
	for _, p := range s.MatchATR(atr) {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, " "); got != "b e a c" {
		t.Errorf("order %q", got)
	}
	names = nil
	for _, p := range s.MatchATR(unhexT(t, "3B 02 77 51")) {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, " "); got != "c" {
		t.Errorf("order %q", got)
	}
	if got := s.MatchATR(unhexT(t, "3B 03 14 50")); len(got) != 0 {
		t.Errorf("unexpected match %v", got)
	}
}

func TestTemplateBuild(t *testing.T) {
	p := get(t, builtin(t), "ss-v2-3des-t0")
	mac := unhexT(t, "A1A2A3A4")

	tp, _ := p.Template(CmdApplicationBlockTemporary)
	got, err := tp.Build(map[string][]byte{"mac": mac})
	if err != nil || !bytes.Equal(got, unhexT(t, "841E000004A1A2A3A4")) {
		t.Errorf("app block: % X %v", got, err)
	}

	tp, _ = p.Template(CmdPINReload)
	got, err = tp.Build(map[string][]byte{"pin": unhexT(t, "123456"), "mac": mac})
	if err != nil || !bytes.Equal(got, unhexT(t, "805E000007 123456 A1A2A3A4")) {
		t.Errorf("pin reload: % X %v", got, err)
	}

	tp, _ = p.Template(CmdPINChange)
	got, err = tp.Build(map[string][]byte{"old": unhexT(t, "123456"), "new": unhexT(t, "13579F")})
	if err != nil || !bytes.Equal(got, unhexT(t, "805E010007 123456 FF 13579F")) {
		t.Errorf("pin change: % X %v", got, err)
	}

	tp, _ = p.Template(CmdPINReloadByKey)
	crypt := bytes.Repeat([]byte{0xC0}, 16)
	got, err = tp.Build(map[string][]byte{"cryptogram16": crypt, "mac": mac})
	want := append(append(unhexT(t, "8424000114"), crypt...), mac...)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("pin reload by key: % X %v", got, err)
	}

	tp, _ = p.Template(CmdPINUnblock)
	got, err = tp.Build(map[string][]byte{"mac": mac})
	if err != nil || len(got) != 9 || got[4] != 0x04 {
		t.Errorf("pin unblock: % X %v", got, err)
	}

	// Errors.
	tp, _ = p.Template(CmdApplicationUnblock)
	for _, c := range []struct {
		vals map[string][]byte
		want string
	}{
		{map[string][]byte{}, "missing value for {mac}"},
		{map[string][]byte{"mac": mac, "pin": mac}, "unknown placeholder {pin}"},
		{map[string][]byte{"mac": mac, "bogus": mac}, "unknown placeholder {bogus}"},
		{map[string][]byte{"mac": mac, "lc": {4}}, "{lc} is computed"},
		{map[string][]byte{"mac": mac[:3]}, "{mac} is 3 bytes, want 4"},
	} {
		if _, err := tp.Build(c.vals); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Build(%v) = %v, want %q", c.vals, err, c.want)
		}
	}
	tp, _ = p.Template(CmdPINChange)
	if _, err := tp.Build(map[string][]byte{"old": make([]byte, 9), "new": {1}}); err == nil || !strings.Contains(err.Error(), "{old} is 9 bytes, want 1..8") {
		t.Errorf("long PIN: %v", err)
	}

	// A zero Template built from its text alone.
	z := Template{Name: "z", Text: "00 A4 00 {lc} {pin}"}
	if _, err := z.Build(map[string][]byte{"pin": {1}}); err == nil || !strings.Contains(err.Error(), "inside the header") {
		t.Errorf("bad text: %v", err)
	}
	z = Template{Text: "00 20 00 00 {lc} {pin}"}
	if got, err := z.Build(map[string][]byte{"pin": unhexT(t, "12345F")}); err != nil || !bytes.Equal(got, unhexT(t, "002000000312345F")) {
		t.Errorf("VERIFY: % X %v", got, err)
	}
}

func TestParseTemplate(t *testing.T) {
	for text, want := range map[string]string{
		"84 1E 00 00 04 {mac}":        "",
		"841E000004{mac}":             "",
		"00 84 00 00 08":              "",
		"80 5E 00 00 {lc} {pin}{mac}": "",
		"84 1E 00 00 04 {foo}":        "unknown placeholder {foo}",
		"84 1E 00 00 04 {mac":         "unterminated placeholder",
		"84 1E 00 00 04 {mac}{mac}":   "appears twice",
		"84 1E 00 00 05 {mac}":        "literal Lc 05 does not match the 4 data bytes",
		"80 5E 00 00 07 {pin} {mac}":  "use {lc}",
		"84 1E 0 00 04 {mac}":         "odd hex digit",
		"84 1E 00 00 04 {mac} ZZ":     "invalid character",
		"84 1E 00":                    "too short",
		"80 5E 00 00 00 {lc} {pin}":   "{lc} must be the 5th byte",
	} {
		_, err := ParseTemplate(text)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("ParseTemplate(%q) = %v, want %q", text, err, want)
		}
	}
}

func TestDivInput(t *testing.T) {
	id := unhexT(t, "639900D15600000500BF7C7A48FB4966") // card-reference §7 example
	r, err := DivInput(LevelRegion, id)
	if err != nil || !bytes.Equal(r, unhexT(t, "639900FFFFFFFFFF")) {
		t.Errorf("region % X %v", r, err)
	}
	tail, err := DivInput(LevelCardIDTail, id)
	if err != nil || !bytes.Equal(tail, unhexT(t, "00BF7C7A48FB4966")) {
		t.Errorf("tail % X %v", tail, err)
	}
	if _, err := DivInput(LevelRegion, id[:15]); err == nil {
		t.Error("short id accepted")
	}
	if _, err := DivInput("province", id); err == nil {
		t.Error("unknown level accepted")
	}
}

func TestLoadDirOverride(t *testing.T) {
	dir := t.TempDir()
	data, err := builtinFS.ReadFile("ss-v1-3des.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Replace v1 with tries 6, and add a new profile.
	over := strings.Replace(string(data), "  tries: 3\n", "  tries: 6\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "ss-v1-3des.yaml"), []byte(over), 0o644); err != nil {
		t.Fatal(err)
	}
	local := strings.Replace(string(data), "name: ss-v1-3des\n", "name: local-v1\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "local-v1.yml"), []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.txt"), []byte("ignored"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.List()); n != 4 {
		t.Errorf("%d profiles", n)
	}
	if p := get(t, s, "ss-v1-3des"); p.PIN.Tries != 6 || p.SourceFile != filepath.Join(dir, "ss-v1-3des.yaml") {
		t.Errorf("override not applied: tries %d from %s", p.PIN.Tries, p.SourceFile)
	}
	get(t, s, "local-v1")
	if p := get(t, s, "ss-v3-sm4"); p.SourceFile != "ss-v3-sm4.yaml" {
		t.Errorf("v3 from %s", p.SourceFile)
	}
	// The built-in set is untouched.
	if p := get(t, builtin(t), "ss-v1-3des"); p.PIN.Tries != 3 {
		t.Error("Builtin changed by LoadDir")
	}

	// A broken file fails the whole directory, naming the file and line.
	bad := strings.Replace(string(data), "  tries: 3\n", "  tries: 30\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "ss-v1-3des.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	line := lineOf(t, bad, "  tries: 30")
	_, err = LoadDir(dir)
	want := fmt.Sprintf("%s:%d: pin.tries: must be 1..15, got 30", filepath.Join(dir, "ss-v1-3des.yaml"), line)
	if err == nil || err.Error() != want {
		t.Errorf("LoadDir error %v, want %s", err, want)
	}
	if _, err := LoadDir(filepath.Join(dir, "nope")); err == nil {
		t.Error("missing dir accepted")
	}
}

func TestLint(t *testing.T) {
	dir := t.TempDir()
	data, _ := builtinFS.ReadFile("ss-v2-3des-t0.yaml")
	good := filepath.Join(dir, "ss-v2-3des-t0.yaml")
	if err := os.WriteFile(good, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if errs := Lint(good); len(errs) != 0 {
		t.Errorf("Lint(good) = %v", errs)
	}
	// Two problems, both reported with their lines, in file order.
	bad := strings.Replace(string(data), "length: 20, optional: true", "length: 0, optional: true", 1)
	bad = strings.Replace(bad, "  tries: 6\n", "  tries: 0\n", 1)
	if err := os.WriteFile(good, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	errs := Lint(good)
	want := []string{
		fmt.Sprintf("%s:%d: files.EF06.records[2].length: must be 1..255, got 0", good, lineOf(t, bad, "length: 0, optional")),
		fmt.Sprintf("%s:%d: pin.tries: must be 1..15, got 0", good, lineOf(t, bad, "  tries: 0")),
	}
	if len(errs) != len(want) {
		t.Fatalf("Lint = %v", errs)
	}
	for i := range want {
		if errs[i].Error() != want[i] {
			t.Errorf("Lint[%d] = %s, want %s", i, errs[i], want[i])
		}
		var pe *Error
		if !errors.As(errs[i], &pe) || pe.Line == 0 {
			t.Errorf("Lint[%d] is not a located *Error", i)
		}
	}
	if errs := Lint(filepath.Join(dir, "missing.yaml")); len(errs) != 1 {
		t.Errorf("Lint(missing) = %v", errs)
	}
}

// lineOf returns the 1-based line of the only line containing needle.
func lineOf(t *testing.T, text, needle string) int {
	t.Helper()
	found := 0
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, needle) {
			if found != 0 {
				t.Fatalf("needle %q on lines %d and %d", needle, found, i+1)
			}
			found = i + 1
		}
	}
	if found == 0 {
		t.Fatalf("needle %q not found", needle)
	}
	return found
}

// Every assumption id of every built-in profile appears in the docs table.
func TestDocsListAssumptions(t *testing.T) {
	doc, err := os.ReadFile("../docs/firmware-profiles.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range builtin(t).List() {
		for _, a := range p.Assumptions {
			if !strings.Contains(string(doc), "| "+a.ID+" |") {
				t.Errorf("%s: assumption %s not in docs/firmware-profiles.md", p.Name, a.ID)
			}
		}
	}
}
