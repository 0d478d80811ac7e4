package profiles

import (
	"strings"
	"testing"
)

// The shipped profiles read as the real card is read (card-reference §9):
// by record identifier with SFI 5 (EF05) and 6 (EF06), so no record number
// matters for a read and no SELECT EF is sent.
func TestBuiltinReadByIdentifierSFI(t *testing.T) {
	s, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s.List() {
		for name, sfi := range map[string]byte{"EF05": 5, "EF06": 6} {
			f := p.Files[name]
			if f.ReadBy.Mode != ReadByIdentifierSFI || f.ReadBy.SFI != sfi || f.ReadBy.Source == "" {
				t.Errorf("%s %s: read_by %+v", p.Name, name, f.ReadBy)
			}
			if f.SelectsEF() {
				t.Errorf("%s %s: selects the EF before reading", p.Name, name)
			}
		}
		// 00 B2 01 28 and 00 B2 08 30 as in the public trace.
		_, rec, _ := p.Record(ItemCardID)
		if p1, p2 := p.Files["EF05"].ReadCommand(rec); p1 != 0x01 || p2 != 0x28 {
			t.Errorf("%s: card_id read P1 P2 %02X %02X", p.Name, p1, p2)
		}
		_, rec, _ = p.Record(ItemSSN)
		if p1, p2 := p.Files["EF06"].ReadCommand(rec); p1 != 0x08 || p2 != 0x30 {
			t.Errorf("%s: ssn read P1 P2 %02X %02X", p.Name, p1, p2)
		}
		if p.Select.MFFirst {
			t.Errorf("%s: selects 3F00 first; public readers select SSSE right after reset", p.Name)
		}
		if p.Crypto.InternalAuth.Factor == "" {
			t.Errorf("%s: no internal auth factor", p.Name)
		}
	}
}

// The other read codings give their own P1 P2 and select the EF.
func TestReadCommandModes(t *testing.T) {
	rec := Record{Number: 4, Tag: 0x0A}
	for _, c := range []struct {
		by     ReadBy
		p1, p2 byte
		sel    bool
	}{
		{ReadBy{Mode: ReadByIdentifierSFI, SFI: 6}, 0x0A, 0x30, false},
		{ReadBy{Mode: ReadByTag}, 0x0A, 0x00, true},
		{ReadBy{Mode: ReadByRecordNumber}, 0x04, 0x04, true},
	} {
		f := &File{ReadBy: c.by}
		p1, p2 := f.ReadCommand(rec)
		if p1 != c.p1 || p2 != c.p2 || f.SelectsEF() != c.sel {
			t.Errorf("%s: %02X %02X select %v", c.by.Mode, p1, p2, f.SelectsEF())
		}
	}
}

// An ATR is optional: a profile without one loads (cards are identified by
// spec version and algorithm).
func TestATROptional(t *testing.T) {
	i := strings.Index(baseYAML, "atr:\n")
	j := strings.Index(baseYAML, "protocol:")
	if _, err := Load("t.yaml", []byte(baseYAML[:i]+baseYAML[j:])); err != nil {
		t.Fatal(err)
	}
}

// Loader hygiene (issue 8 §12): {mac} last, one key role per index; and
// read_by's own rules.
func TestLoadRejects(t *testing.T) {
	for _, c := range []struct {
		name, old, new, msg string
	}{
		{"mac not last", `template: "84 18 00 00 04 {mac}"`, `template: "84 18 00 00 05 {mac} 00"`, "{mac} must be the template's last item"},
		{"two roles one index", "    read: 0x0A\n", "    read: 0x04\n", "index 0x04 is also key"},
		{"sfi missing", "read_by: {mode: identifier_sfi, sfi: 5, source: s}", "read_by: {mode: identifier_sfi, source: s}", "required for mode identifier_sfi"},
		{"sfi on tag mode", "read_by: {mode: tag, source: s}", "read_by: {mode: tag, sfi: 6, source: s}", "only mode identifier_sfi uses an SFI"},
		{"sfi twice", "read_by: {mode: tag, source: s}", "read_by: {mode: identifier_sfi, sfi: 5, source: s}", "SFI 5 is also"},
		{"factor", "factor: card_id_tail", "factor: serial", `unknown factor "serial"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(baseYAML, c.old) {
				t.Fatalf("base lacks %q", c.old)
			}
			_, err := Load("t.yaml", []byte(strings.Replace(baseYAML, c.old, c.new, 1)))
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %q", err, c.msg)
			}
		})
	}
	if _, err := Load("t.yaml", []byte(strings.Replace(baseYAML, "factor: card_id_tail", "factor: challenge", 1))); err != nil {
		t.Fatalf("factor challenge: %v", err)
	}
}
