package profiles

import (
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load decodes and validates one profile. name is the file name used in error
// messages; when it ends in .yaml or .yml its stem must equal the profile name.
// Unknown fields are errors. On failure the error is an Errors.
func Load(name string, data []byte) (*Profile, error) {
	d := &decoder{file: name, lines: map[string]int{}}
	p := d.load(data)
	if len(d.errs) > 0 {
		sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
		return nil, d.errs
	}
	return p, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (d *decoder) load(data []byte) *Profile {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		line := 0
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		d.fail(line, "", "%s", msg)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		d.fail(1, "", "empty file")
		return nil
	}
	root := resolve(doc.Content[0])
	p := &Profile{SourceFile: d.file, Files: map[string]*File{}, Commands: map[string]Template{}}
	p.Crypto.Keys = map[string]int{}
	d.profile(root, p)
	if len(d.errs) == 0 {
		d.check(p)
		d.checkNamedAssumptions(p, data)
	}
	return p
}

var (
	nameRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	identRE      = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	holderRE     = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	specRE       = regexp.MustCompile(`^[0-9]\.[0-9]{2}$`)
	assumptionRE = regexp.MustCompile(`^[A-Z][A-Z0-9-]*$`)
)

func (d *decoder) profile(n *yaml.Node, p *Profile) {
	d.mapping(n, "", []field{
		{"schema", true, func(n *yaml.Node, path string) {
			p.Schema = d.str(n, path, true)
			if p.Schema != "" && p.Schema != SchemaV1 {
				d.fail(n.Line, path, "must be %q, got %q", SchemaV1, p.Schema)
			}
		}},
		{"name", true, func(n *yaml.Node, path string) {
			p.Name = d.str(n, path, true)
			if p.Name == "" {
				return
			}
			if !nameRE.MatchString(p.Name) {
				d.fail(n.Line, path, "must be lower case letters, digits, '.', '_' or '-', got %q", p.Name)
				return
			}
			base := filepath.Base(d.file)
			if ext := filepath.Ext(base); ext == ".yaml" || ext == ".yml" {
				if stem := strings.TrimSuffix(base, ext); stem != p.Name {
					d.fail(n.Line, path, "must equal the file name stem %q, got %q", stem, p.Name)
				}
			}
		}},
		{"description", true, func(n *yaml.Node, path string) { p.Description = d.str(n, path, true) }},
		{"spec_version", true, func(n *yaml.Node, path string) {
			p.SpecVersion = d.str(n, path, true)
			if p.SpecVersion != "" && !specRE.MatchString(p.SpecVersion) {
				d.fail(n.Line, path, "must look like \"2.00\", got %q", p.SpecVersion)
			}
		}},
		{"atr", false, func(n *yaml.Node, path string) { d.atrs(n, path, p) }},
		{"protocol", true, func(n *yaml.Node, path string) { p.Protocol = Protocol(d.oneOf(n, path, string(T0), string(T1))) }},
		{"select", true, func(n *yaml.Node, path string) { d.selectSpec(n, path, &p.Select) }},
		{"files", true, func(n *yaml.Node, path string) { d.files(n, path, p) }},
		{"pin", true, func(n *yaml.Node, path string) { d.pin(n, path, &p.PIN) }},
		{"crypto", true, func(n *yaml.Node, path string) { d.crypto(n, path, &p.Crypto) }},
		{"commands", true, func(n *yaml.Node, path string) { d.commands(n, path, p) }},
		{"activation", true, func(n *yaml.Node, path string) { d.activation(n, path, &p.Activation) }},
		{"lifecycle", false, func(n *yaml.Node, path string) { d.lifecycle(n, path, p) }},
		{"quirks", true, func(n *yaml.Node, path string) {
			d.seq(n, path, func(i int, v *yaml.Node, ip string) {
				q := d.str(v, ip, true)
				if q != "" && !knownQuirks[q] {
					d.fail(v.Line, ip, "unknown quirk %q", q)
				}
				p.Quirks = append(p.Quirks, q)
			})
		}},
		{"assumptions", true, func(n *yaml.Node, path string) { d.assumptions(n, path, p) }},
		{"read_info_min_apdus", true, func(n *yaml.Node, path string) { p.ReadInfoMinAPDUs = d.integer(n, path, 1, 255) }},
	})
}

func (d *decoder) atrs(n *yaml.Node, path string, p *Profile) {
	d.seq(n, path, func(i int, v *yaml.Node, ip string) {
		var a ATRPattern
		var patLine int
		hasMask := false
		d.mapping(v, ip, []field{
			{"pattern", true, func(n *yaml.Node, path string) { a.Pattern = d.hexBytes(n, path, 2, 33); patLine = n.Line }},
			{"mask", false, func(n *yaml.Node, path string) { a.Mask = d.hexBytes(n, path, 2, 33); hasMask = true }},
			{"priority", true, func(n *yaml.Node, path string) { a.Priority = d.integer(n, path, 0, maxInt) }},
			{"note", true, func(n *yaml.Node, path string) { a.Note = d.str(n, path, true) }},
		})
		if a.Pattern == nil {
			return
		}
		if !hasMask {
			a.Mask = make([]byte, len(a.Pattern))
			for j := range a.Mask {
				a.Mask[j] = 0xFF
			}
		}
		if a.Mask == nil {
			return
		}
		if len(a.Mask) != len(a.Pattern) {
			d.failAt(ip+".mask", "is %d bytes, pattern is %d", len(a.Mask), len(a.Pattern))
			return
		}
		for j := range a.Pattern {
			if a.Pattern[j]&^a.Mask[j] != 0 {
				d.fail(patLine, ip+".pattern", "byte %d (%02X) has bits outside the mask (%02X): it can never match", j, a.Pattern[j], a.Mask[j])
				return
			}
		}
		p.ATR = append(p.ATR, a)
	})
}

func (d *decoder) selectSpec(n *yaml.Node, path string, s *Select) {
	d.mapping(n, path, []field{
		{"mf_first", true, func(n *yaml.Node, path string) { s.MFFirst = d.boolean(n, path) }},
		{"ssse_aid", true, func(n *yaml.Node, path string) { s.SSSEAID = d.hexBytes(n, path, 5, 16) }},
		{"ef_p1", true, func(n *yaml.Node, path string) {
			if b := d.hexBytes(n, path, 1, 1); b != nil {
				s.EFP1 = b[0]
			}
		}},
		{"ef_p2", true, func(n *yaml.Node, path string) {
			if b := d.hexBytes(n, path, 1, 1); b != nil {
				s.EFP2 = b[0]
			}
		}},
		{"source", false, func(n *yaml.Node, path string) { s.Source = d.str(n, path, true) }},
	})
}

func (d *decoder) access(n *yaml.Node, path string) Access {
	if n.Kind == yaml.ScalarNode {
		switch s := n.Value; s {
		case string(AccessFree), string(AccessNever):
			return Access{Kind: AccessKind(s)}
		default:
			d.fail(n.Line, path, "must be free, never, {key: N} or {pin: true}, got %q", s)
			return Access{}
		}
	}
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		d.fail(n.Line, path, "must be free, never, {key: N} or {pin: true}")
		return Access{}
	}
	var a Access
	d.mapping(n, path, []field{
		{"key", false, func(n *yaml.Node, path string) { a = Access{Kind: AccessKey, Key: byte(d.integer(n, path, 0, 255))} }},
		{"pin", false, func(n *yaml.Node, path string) {
			if d.boolean(n, path) {
				a = Access{Kind: AccessPIN}
			} else {
				d.fail(n.Line, path, "must be true (write free or never instead)")
			}
		}},
	})
	return a
}

func (d *decoder) files(n *yaml.Node, path string, p *Profile) {
	d.entries(n, path, func(name string, k, v *yaml.Node, fp string) {
		f := &File{Name: name}
		d.mapping(v, fp, []field{
			{"fid", true, func(n *yaml.Node, path string) {
				if b := d.hexBytes(n, path, 2, 2); b != nil {
					f.FID = [2]byte{b[0], b[1]}
				}
			}},
			{"kind", true, func(n *yaml.Node, path string) { f.Kind = d.oneOf(n, path, "record", "transparent") }},
			{"read", true, func(n *yaml.Node, path string) { f.Read = d.access(n, path) }},
			{"write", true, func(n *yaml.Node, path string) { f.Write = d.access(n, path) }},
			{"source", false, func(n *yaml.Node, path string) { f.Source = d.str(n, path, true) }},
			{"records", false, func(n *yaml.Node, path string) { d.records(n, path, f) }},
			{"read_by", false, func(n *yaml.Node, path string) { d.readBy(n, path, &f.ReadBy) }},
		})
		if f.Kind == "record" && f.ReadBy.Mode == "" {
			if _, ok := d.lines[fp+".read_by"]; !ok {
				d.fail(v.Line, fp+".read_by", "required field missing for a record file")
			}
		}
		if f.Kind == "transparent" && f.ReadBy.Mode != "" {
			d.failAt(fp+".read_by", "a transparent file has no records to read by")
		}
		if f.Kind == "record" && len(f.Records) == 0 {
			if _, ok := d.lines[fp+".records"]; !ok {
				d.fail(v.Line, fp+".records", "required field missing for a record file")
			}
		}
		if f.Kind == "transparent" && len(f.Records) > 0 {
			d.failAt(fp+".records", "a transparent file has no records")
		}
		p.Files[name] = f
	})
}

// readBy decodes a record file's reading coding: {mode, sfi, source}.
func (d *decoder) readBy(n *yaml.Node, path string, r *ReadBy) {
	hasSFI := false
	d.mapping(n, path, []field{
		{"mode", true, func(n *yaml.Node, path string) {
			r.Mode = d.oneOf(n, path, ReadByIdentifierSFI, ReadByTag, ReadByRecordNumber)
		}},
		{"sfi", false, func(n *yaml.Node, path string) { r.SFI = byte(d.integer(n, path, 1, 30)); hasSFI = true }},
		{"source", true, func(n *yaml.Node, path string) { r.Source = d.str(n, path, true) }},
	})
	if r.Mode == ReadByIdentifierSFI && !hasSFI {
		d.failAt(path+".sfi", "required for mode %s", ReadByIdentifierSFI)
	}
	if r.Mode != ReadByIdentifierSFI && r.Mode != "" && hasSFI {
		d.failAt(path+".sfi", "only mode %s uses an SFI", ReadByIdentifierSFI)
	}
}

func (d *decoder) records(n *yaml.Node, path string, f *File) {
	numbers := map[int]string{}
	tags := map[byte]string{}
	d.seq(n, path, func(i int, v *yaml.Node, ip string) {
		var r Record
		var numNode, tagNode *yaml.Node
		d.mapping(v, ip, []field{
			{"number", true, func(n *yaml.Node, path string) { r.Number = d.integer(n, path, 1, 254); numNode = n }},
			{"tag", true, func(n *yaml.Node, path string) { r.Tag = byte(d.integer(n, path, 0, 255)); tagNode = n }},
			{"item", true, func(n *yaml.Node, path string) {
				r.Item = d.str(n, path, true)
				if r.Item != "" && !knownItems[r.Item] {
					d.fail(n.Line, path, "unknown item %q", r.Item)
				}
			}},
			{"type", true, func(n *yaml.Node, path string) { r.Type = d.oneOf(n, path, "b", "an", "cn") }},
			{"length", true, func(n *yaml.Node, path string) { r.Length = d.integer(n, path, 1, 255) }},
			{"read", false, func(n *yaml.Node, path string) { a := d.access(n, path); r.Read = &a }},
			{"optional", false, func(n *yaml.Node, path string) { r.Optional = d.boolean(n, path) }},
			{"source", true, func(n *yaml.Node, path string) { r.Source = d.str(n, path, true) }},
			{"note", false, func(n *yaml.Node, path string) { r.Note = d.str(n, path, true) }},
		})
		if numNode != nil && r.Number != 0 {
			if first, dup := numbers[r.Number]; dup {
				d.fail(numNode.Line, ip+".number", "duplicate record number %d (also %s)", r.Number, first)
			} else {
				numbers[r.Number] = ip
			}
		}
		if tagNode != nil {
			if first, dup := tags[r.Tag]; dup {
				d.fail(tagNode.Line, ip+".tag", "duplicate tag 0x%02X (also %s)", r.Tag, first)
			} else {
				tags[r.Tag] = ip
			}
		}
		f.Records = append(f.Records, r)
	})
}

func (d *decoder) pin(n *yaml.Node, path string, pp *PINPolicy) {
	var initialLine, minLine int
	d.mapping(n, path, []field{
		{"initial", true, func(n *yaml.Node, path string) { pp.Initial = d.str(n, path, true); initialLine = n.Line }},
		{"min_length", true, func(n *yaml.Node, path string) { pp.MinLength = d.integer(n, path, 1, 2*maxPINBytes); minLine = n.Line }},
		{"max_length", true, func(n *yaml.Node, path string) { pp.MaxLength = d.integer(n, path, 1, 2*maxPINBytes) }},
		{"tries", true, func(n *yaml.Node, path string) { pp.Tries = d.integer(n, path, 1, 15) }},
		{"retries_by_empty_verify", true, func(n *yaml.Node, path string) { pp.RetriesByEmptyVerify = d.boolean(n, path) }},
		{"pad", true, func(n *yaml.Node, path string) {
			s, _ := d.scalar(n, path)
			if len(s) != 1 || !isHex(s[0]) {
				d.fail(n.Line, path, "must be one hex digit, got %q", s)
				return
			}
			pp.Pad = unhex(s[0])
		}},
		{"source", true, func(n *yaml.Node, path string) { pp.Source = d.str(n, path, true) }},
	})
	if pp.MinLength == 0 || pp.MaxLength == 0 {
		return
	}
	if pp.MinLength > pp.MaxLength {
		d.fail(minLine, path+".min_length", "exceeds max_length (%d > %d)", pp.MinLength, pp.MaxLength)
		return
	}
	if pp.Initial == "" {
		return
	}
	for _, c := range pp.Initial {
		if c < '0' || c > '9' {
			d.fail(initialLine, path+".initial", "must be digits, got %q", pp.Initial)
			return
		}
	}
	if l := len(pp.Initial); l < pp.MinLength || l > pp.MaxLength {
		d.fail(initialLine, path+".initial", "is %d digits, the policy allows %d..%d", l, pp.MinLength, pp.MaxLength)
	}
}

func (d *decoder) crypto(n *yaml.Node, path string, c *Crypto) {
	d.mapping(n, path, []field{
		{"algorithm", true, func(n *yaml.Node, path string) { c.Algorithm = d.oneOf(n, path, Alg3DES, AlgSM4) }},
		{"keys", true, func(n *yaml.Node, path string) {
			d.entries(n, path, func(name string, k, v *yaml.Node, fp string) {
				if !identRE.MatchString(name) {
					d.fail(k.Line, fp, "key names are lower_snake_case")
				}
				c.Keys[name] = d.integer(v, fp, 0, 255)
			})
		}},
		{"holder_keys", true, func(n *yaml.Node, path string) {
			d.seq(n, path, func(i int, v *yaml.Node, ip string) {
				var h HolderKey
				d.mapping(v, ip, []field{
					{"name", true, func(n *yaml.Node, path string) {
						h.Name = d.str(n, path, true)
						if h.Name != "" && !holderRE.MatchString(h.Name) {
							d.fail(n.Line, path, "holder key names are lower-kebab-case, got %q", h.Name)
						}
					}},
					{"card_key", false, func(n *yaml.Node, path string) { h.CardKey = d.str(n, path, true) }},
					{"source", true, func(n *yaml.Node, path string) { h.Source = d.str(n, path, true) }},
				})
				c.HolderKeys = append(c.HolderKeys, h)
			})
		}},
		{"diversification", true, func(n *yaml.Node, path string) {
			dv := &c.Diversification
			d.mapping(n, path, []field{
				{"scheme", true, func(n *yaml.Node, path string) { dv.Scheme = d.oneOf(n, path, DivSchemePBOCv1) }},
				{"levels", true, func(n *yaml.Node, path string) {
					d.seq(n, path, func(i int, v *yaml.Node, ip string) {
						l := d.str(v, ip, true)
						if l != "" && !knownLevels[l] {
							d.fail(v.Line, ip, "unknown diversification level %q", l)
						}
						dv.Levels = append(dv.Levels, l)
					})
					if n.Kind == yaml.SequenceNode && (len(n.Content) < 1 || len(n.Content) > 3) {
						d.fail(n.Line, path, "must list 1..3 levels")
					}
				}},
				{"source", true, func(n *yaml.Node, path string) { dv.Source = d.str(n, path, true) }},
			})
		}},
		{"mac", true, func(n *yaml.Node, path string) {
			d.mapping(n, path, []field{
				{"scheme", true, func(n *yaml.Node, path string) { c.MAC.Scheme = d.oneOf(n, path, MACSchemePBOCv1) }},
				{"iv", true, func(n *yaml.Node, path string) { c.MAC.IV = d.oneOf(n, path, IVChallenge) }},
				{"source", true, func(n *yaml.Node, path string) { c.MAC.Source = d.str(n, path, true) }},
			})
		}},
		{"external_auth", true, func(n *yaml.Node, path string) {
			d.mapping(n, path, []field{
				{"scheme", true, func(n *yaml.Node, path string) { c.ExternalAuth.Scheme = d.oneOf(n, path, ExtAuthChallengeECB16) }},
				{"source", true, func(n *yaml.Node, path string) { c.ExternalAuth.Source = d.str(n, path, true) }},
			})
		}},
		{"internal_auth", true, func(n *yaml.Node, path string) {
			d.mapping(n, path, []field{
				{"key", true, func(n *yaml.Node, path string) { c.InternalAuth.Key = d.str(n, path, true) }},
				{"factor", true, func(n *yaml.Node, path string) {
					c.InternalAuth.Factor = d.str(n, path, true)
					if f := c.InternalAuth.Factor; f != "" && f != FactorChallenge && !knownLevels[f] {
						d.fail(n.Line, path, "unknown factor %q (%s, or a diversification level name)", f, FactorChallenge)
					}
				}},
				{"source", true, func(n *yaml.Node, path string) { c.InternalAuth.Source = d.str(n, path, true) }},
			})
		}},
	})
}

func (d *decoder) commands(n *yaml.Node, path string, p *Profile) {
	d.entries(n, path, func(name string, k, v *yaml.Node, fp string) {
		if !knownCommands[name] {
			d.fail(k.Line, fp, "unknown command")
			return
		}
		t := Template{Name: name}
		d.mapping(v, fp, []field{
			{"template", true, func(n *yaml.Node, path string) {
				t.Text = d.str(n, path, true)
				if t.Text == "" {
					return
				}
				parts, err := parseTemplate(t.Text)
				if err != nil {
					d.fail(n.Line, path, "%v", err)
					return
				}
				t.parts = parts
			}},
			{"source", true, func(n *yaml.Node, path string) { t.Source = d.str(n, path, true) }},
			{"mac_key", false, func(n *yaml.Node, path string) { t.MACKey = d.str(n, path, true) }},
			{"enc_key", false, func(n *yaml.Node, path string) { t.EncKey = d.str(n, path, true) }},
			{"auth", false, func(n *yaml.Node, path string) { t.Auth = d.str(n, path, true) }},
			{"note", false, func(n *yaml.Node, path string) { t.Note = d.str(n, path, true) }},
		})
		p.Commands[name] = t
	})
}

func (d *decoder) activation(n *yaml.Node, path string, a *Activation) {
	d.mapping(n, path, []field{
		{"steps", true, func(n *yaml.Node, path string) {
			d.seq(n, path, func(i int, v *yaml.Node, ip string) {
				s := d.str(v, ip, true)
				if _, ok := stepCommand[s]; s != "" && !ok {
					d.fail(v.Line, ip, "unknown step %q", s)
				}
				a.Steps = append(a.Steps, s)
			})
		}},
		{"transport_lock", true, func(n *yaml.Node, path string) { a.TransportLock = d.boolean(n, path) }},
		{"note", false, func(n *yaml.Node, path string) { a.Note = d.str(n, path, true) }},
		{"source", true, func(n *yaml.Node, path string) { a.Source = d.str(n, path, true) }},
	})
}

func (d *decoder) lifecycle(n *yaml.Node, path string, p *Profile) {
	d.seq(n, path, func(i int, v *yaml.Node, ip string) {
		var s LifecycleState
		d.mapping(v, ip, []field{
			{"state", true, func(n *yaml.Node, path string) { s.State = d.str(n, path, true) }},
			{"via", false, func(n *yaml.Node, path string) { s.Via = d.str(n, path, false) }},
			{"note", true, func(n *yaml.Node, path string) { s.Note = d.str(n, path, true) }},
			{"source", false, func(n *yaml.Node, path string) { s.Source = d.str(n, path, true) }},
		})
		p.Lifecycle = append(p.Lifecycle, s)
	})
}

func (d *decoder) assumptions(n *yaml.Node, path string, p *Profile) {
	ids := map[string]string{}
	d.seq(n, path, func(i int, v *yaml.Node, ip string) {
		var a Assumption
		d.mapping(v, ip, []field{
			{"id", true, func(n *yaml.Node, path string) {
				a.ID = d.str(n, path, true)
				if a.ID == "" {
					return
				}
				if !assumptionRE.MatchString(a.ID) {
					d.fail(n.Line, path, "must be upper case letters, digits and '-', got %q", a.ID)
				} else if first, dup := ids[a.ID]; dup {
					d.fail(n.Line, path, "duplicate assumption id %q (also %s)", a.ID, first)
				} else {
					ids[a.ID] = ip
				}
			}},
			{"text", true, func(n *yaml.Node, path string) { a.Text = d.str(n, path, true) }},
			{"source", true, func(n *yaml.Node, path string) { a.Source = d.str(n, path, true) }},
		})
		p.Assumptions = append(p.Assumptions, a)
	})
}
