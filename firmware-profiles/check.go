package profiles

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// The loader's cross-field rules, run once every field decoded cleanly:
// files and items, keys, commands, activation, quirks, the APDU count, and
// the assumptions a file names.

// check validates what spans several fields, once every field decoded cleanly.
func (d *decoder) check(p *Profile) {
	// Files and items.
	for _, name := range []string{"EF05", "EF06"} {
		if _, ok := p.Files[name]; !ok {
			d.failAt("files", "%s missing", name)
		}
	}
	items := map[string]string{}
	sfis := map[byte]string{}
	for _, fname := range p.fileNames() {
		f := p.Files[fname]
		if f.ReadBy.Mode == ReadByIdentifierSFI && f.ReadBy.SFI != 0 {
			if other, dup := sfis[f.ReadBy.SFI]; dup {
				d.failAt("files."+fname+".read_by.sfi", "SFI %d is also %s's", f.ReadBy.SFI, other)
			}
			sfis[f.ReadBy.SFI] = fname
		}
		if f.Read.Kind == AccessKey {
			d.checkKeyIndex(p, "files."+fname+".read.key", f.Read.Key)
		}
		if f.Write.Kind == AccessKey {
			d.checkKeyIndex(p, "files."+fname+".write.key", f.Write.Key)
		}
		for i, r := range f.Records {
			rp := fmt.Sprintf("files.%s.records[%d]", fname, i)
			if first, dup := items[r.Item]; dup {
				d.failAt(rp+".item", "item %s also in %s", r.Item, first)
			}
			items[r.Item] = rp
			if r.Read != nil && r.Read.Kind == AccessKey {
				d.checkKeyIndex(p, rp+".read.key", r.Read.Key)
			}
		}
	}
	for _, item := range BasicInfoItems {
		if _, ok := items[item]; !ok && item != ItemNameExt {
			d.failAt("files", "no record holds %s", item)
		}
	}

	// Keys.
	for _, k := range []string{"internal_auth", "read", "write"} {
		if _, ok := p.Crypto.Keys[k]; !ok {
			d.failAt("crypto.keys", "key %s missing", k)
		}
	}
	// One card key index is one key: two roles on one index would make the
	// card's key and the key holder's key ambiguous (EXTERNAL AUTHENTICATE
	// P2 names the key).
	roleOf := map[int]string{}
	for _, k := range sortedKeys(p.Crypto.Keys) {
		idx := p.Crypto.Keys[k]
		if other, dup := roleOf[idx]; dup {
			d.failAt("crypto.keys."+k, "index 0x%02X is also key %s's: one index, one key role", idx, other)
			continue
		}
		roleOf[idx] = k
	}
	holder := map[string]bool{}
	cardKeys := map[string]bool{}
	for i, h := range p.Crypto.HolderKeys {
		hp := fmt.Sprintf("crypto.holder_keys[%d]", i)
		if holder[h.Name] {
			d.failAt(hp+".name", "holder key %s declared twice", h.Name)
		}
		holder[h.Name] = true
		if h.CardKey == "" {
			continue
		}
		if _, ok := p.Crypto.Keys[h.CardKey]; !ok {
			d.failAt(hp+".card_key", "%q is not in crypto.keys", h.CardKey)
		} else if cardKeys[h.CardKey] {
			d.failAt(hp+".card_key", "card key %s has two holder keys", h.CardKey)
		}
		cardKeys[h.CardKey] = true
	}
	for _, k := range sortedKeys(p.Crypto.Keys) {
		if !cardKeys[k] {
			d.failAt("crypto.keys."+k, "no holder key has card_key: %s", k)
		}
	}
	if k := p.Crypto.InternalAuth.Key; k != "" {
		if _, ok := p.Crypto.Keys[k]; !ok {
			d.failAt("crypto.internal_auth.key", "%q is not in crypto.keys", k)
		}
	}

	// Commands.
	for _, name := range sortedKeys(p.Commands) {
		t := p.Commands[name]
		cp := "commands." + name
		phs := map[string]bool{}
		for _, ph := range t.Placeholders() {
			phs[ph] = true
		}
		if t.MACKey != "" && !holder[t.MACKey] {
			d.failAt(cp+".mac_key", "%q is not in crypto.holder_keys", t.MACKey)
		}
		if phs["mac"] && t.MACKey == "" {
			d.failAt(cp+".template", "{mac} needs a mac_key")
		}
		if phs["mac"] && !t.MACLast() {
			// The MAC covers the header and every data byte before it
			// (cardapp/secure MACInput): bytes after it would go unprotected.
			d.failAt(cp+".template", "{mac} must be the template's last item")
		}
		if !phs["mac"] && t.MACKey != "" {
			d.failAt(cp+".mac_key", "the template has no {mac}")
		}
		if t.EncKey != "" && !holder[t.EncKey] {
			d.failAt(cp+".enc_key", "%q is not in crypto.holder_keys", t.EncKey)
		}
		if (phs["cryptogram16"] || phs["enc_pin_block16"]) && t.EncKey == "" {
			d.failAt(cp+".template", "an encrypted placeholder needs an enc_key")
		}
		if t.Auth != "" {
			if _, ok := p.Crypto.Keys[t.Auth]; !ok {
				d.failAt(cp+".auth", "%q is not in crypto.keys", t.Auth)
			}
		}
	}

	// Activation and life cycle. The transport lock and its release step
	// come together: a profile says both or neither.
	if unblocks := slices.Contains(p.Activation.Steps, StepApplicationUnblock); unblocks != p.Activation.TransportLock {
		d.failAt("activation.transport_lock", "transport_lock is %v but the steps %s application_unblock", p.Activation.TransportLock,
			map[bool]string{true: "have", false: "lack"}[unblocks])
	}
	for i, s := range p.Activation.Steps {
		if cmd := stepCommand[s]; cmd != "" {
			if _, ok := p.Commands[cmd]; !ok {
				d.failAt(fmt.Sprintf("activation.steps[%d]", i), "step %s needs commands.%s", s, cmd)
			}
		}
	}
	for i, s := range p.Lifecycle {
		if s.Via == "" || s.Via == "activation" {
			continue
		}
		if _, ok := p.Commands[s.Via]; !ok {
			d.failAt(fmt.Sprintf("lifecycle[%d].via", i), "%q is neither a command nor activation", s.Via)
		}
	}

	// Quirks agree with the fields they name.
	quirkWant := map[string]bool{
		QuirkMFSelectFirst: p.Select.MFFirst,
		QuirkEFSelectP102:  p.Select.EFP1 == 0x02,
	}
	for _, q := range []string{QuirkMFSelectFirst, QuirkEFSelectP102} {
		if p.HasQuirk(q) != quirkWant[q] {
			d.failAt("quirks", "%s listed is %v but the select fields say %v", q, p.HasQuirk(q), quirkWant[q])
		}
	}
	for i, q := range p.Quirks {
		if (q == QuirkT0GetResponse || q == QuirkT0Resend6Cxx) && p.Protocol != T0 {
			d.failAt(fmt.Sprintf("quirks[%d]", i), "%s needs protocol T0", q)
		}
	}

	// read_info_min_apdus.
	n, err := p.ComputeReadInfoAPDUs()
	switch {
	case err != nil:
		d.failAt("read_info_min_apdus", "%v", err)
	case n != p.ReadInfoMinAPDUs:
		d.failAt("read_info_min_apdus", "is %d, the profile's fields give %d", p.ReadInfoMinAPDUs, n)
	}
}

var assumptionRefRE = regexp.MustCompile(`\bA-[A-Z0-9]+(?:-[A-Z0-9]+)*\b`)

// checkNamedAssumptions: every assumption id the file mentions (in a source
// note or a comment) is listed under assumptions.
func (d *decoder) checkNamedAssumptions(p *Profile, data []byte) {
	ids := map[string]bool{}
	for _, a := range p.Assumptions {
		ids[a.ID] = true
	}
	for i, line := range strings.Split(string(data), "\n") {
		for _, id := range assumptionRefRE.FindAllString(line, -1) {
			if !ids[id] {
				d.fail(i+1, "assumptions", "%s is named on this line but not listed", id)
			}
		}
	}
}

func (d *decoder) checkKeyIndex(p *Profile, path string, idx byte) {
	for _, v := range p.Crypto.Keys {
		if v == int(idx) {
			return
		}
	}
	d.failAt(path, "key index 0x%02X is not declared in crypto.keys", idx)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
