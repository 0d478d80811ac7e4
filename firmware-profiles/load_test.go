package profiles

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// baseYAML is a small valid profile; the cases below break one thing each.
const baseYAML = `schema: ssstation.firmware-profile/v1
name: t
description: test profile
spec_version: "2.00"
atr:
  - pattern: "3B 02 14 50"
    mask: "FF FF FF FF"
    priority: 1
    note: test
protocol: T1
select:
  mf_first: false
  ssse_aid: "7378312E73682EC9E7BBE1B1A3D5CF"
  ef_p1: "00"
  ef_p2: "00"
files:
  EF05:
    fid: "EF05"
    kind: record
    read_by: {mode: identifier_sfi, sfi: 5, source: s}
    read: free
    write: {key: 0x04}
    records:
      - number: 1
        tag: 0x01
        item: card_id
        type: b
        length: 16
        source: s
      - {number: 3, tag: 0x03, item: spec_version, type: an, length: 4, source: s}
      - {number: 5, tag: 0x05, item: issue_date, type: cn, length: 4, source: s}
      - {number: 6, tag: 0x06, item: expiry_date, type: cn, length: 4, source: s}
      - {number: 7, tag: 0x07, item: card_number, type: an, length: 9, source: s}
  EF06:
    fid: "EF06"
    kind: record
    read_by: {mode: tag, source: s}
    read: free
    write: {key: 0x04}
    records:
      - {number: 1, tag: 0x08, item: ssn, type: an, length: 18, source: s}
      - {number: 2, tag: 0x09, item: name, type: an, length: 30, source: s}
pin:
  initial: "123456"
  min_length: 6
  max_length: 6
  tries: 3
  retries_by_empty_verify: false
  pad: "F"
  source: s
crypto:
  algorithm: 3DES
  keys:
    internal_auth: 0x00
    write: 0x04
    read: 0x0A
  holder_keys:
    - {name: internal-auth, card_key: internal_auth, source: s}
    - {name: ef-write, card_key: write, source: s}
    - {name: rkssse, card_key: read, source: s}
    - {name: app-unblock, source: s}
  diversification:
    scheme: pboc-div-v1
    levels: [region, card_id_tail]
    source: s
  mac:
    scheme: pboc-mac-v1
    iv: challenge
    source: s
  external_auth:
    scheme: challenge-ecb-16
    source: s
  internal_auth:
    key: internal_auth
    factor: card_id_tail
    source: s
commands:
  application_unblock:
    template: "84 18 00 00 04 {mac}"
    mac_key: app-unblock
    source: assumption
  pin_change:
    template: "80 5E 01 00 {lc} {old} FF {new}"
    source: confirmed
activation:
  steps: [internal_authenticate, application_unblock, pin_change_from_initial]
  transport_lock: true
  source: s
quirks: []
assumptions:
  - {id: A-ONE, text: t, source: s}
read_info_min_apdus: 11
`

func TestBaseYAMLLoads(t *testing.T) {
	p, err := Load("t.yaml", []byte(baseYAML))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "t" || len(p.Files["EF05"].Records) != 5 || p.Files["EF05"].Records[0].Tag != 0x01 {
		t.Errorf("%+v", p)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, c := range []struct {
		name     string
		old, new string // replace old (once) by new in baseYAML
		at       string // the line containing this, after the edit, is the error line
		path     string
		msg      string // the message starts with this
	}{
		{"unknown field", "  ef_p2: \"00\"\n", "  ef_p2: \"00\"\n  colour: blue\n", "colour: blue", "select.colour", "unknown field"},
		{"unknown top field", "quirks: []\n", "quirks: []\nextra: 1\n", "extra: 1", "extra", "unknown field"},
		{"duplicate field", "  tries: 3\n", "  tries: 3\n  tries: 4\n", "tries: 4", "pin.tries", "duplicate field"},
		{"bad hex", `ssse_aid: "7378312E73682EC9E7BBE1B1A3D5CF"`, `ssse_aid: "7378312E7G682EC9E7BBE1B1A3D5CF"`, "ssse_aid", "select.ssse_aid", `bad hex "7378312E7G682EC9E7BBE1B1A3D5CF": invalid hex digit 'G'`},
		{"odd hex", `ef_p1: "00"`, `ef_p1: "0"`, "ef_p1", "select.ef_p1", `bad hex "0": odd number of hex digits`},
		{"duplicate record number", "{number: 2, tag: 0x09", "{number: 1, tag: 0x09", "{number: 1, tag: 0x09", "files.EF06.records[1].number", "duplicate record number 1 (also files.EF06.records[0])"},
		{"duplicate tag", "{number: 2, tag: 0x09", "{number: 2, tag: 0x08", "{number: 2, tag: 0x08", "files.EF06.records[1].tag", "duplicate tag 0x08"},
		{"record length 0", "        length: 16\n", "        length: 0\n", "length: 0", "files.EF05.records[0].length", "must be 1..255, got 0"},
		{"record length 256", "        length: 16\n", "        length: 256\n", "length: 256", "files.EF05.records[0].length", "must be 1..255, got 256"},
		{"record type", "        type: b\n", "        type: x\n", "type: x", "files.EF05.records[0].type", `must be one of b, an, cn, got "x"`},
		{"record item", "        item: card_id\n", "        item: card_ident\n", "item: card_ident", "files.EF05.records[0].item", `unknown item "card_ident"`},
		{"record number not int", "      - number: 1\n", "      - number: one\n", "number: one", "files.EF05.records[0].number", `must be an integer (decimal or 0x hex), got "one"`},
		{"record without source", "        source: s\n", "", "      - number: 1", "files.EF05.records[0].source", "required field missing"},
		{"key index", "    write: {key: 0x04}\n    records:\n      - number: 1", "    write: {key: 0x104}\n    records:\n      - number: 1", "key: 0x104", "files.EF05.write.key", "must be 0..255, got 260"},
		{"access", "    read: free\n    write: {key: 0x04}\n    records:\n      - number: 1", "    read: open\n    write: {key: 0x04}\n    records:\n      - number: 1", "read: open", "files.EF05.read", `must be free, never, {key: N} or {pin: true}, got "open"`},
		{"undeclared key index", "    write: {key: 0x04}\n    records:\n      - number: 1", "    write: {key: 0x05}\n    records:\n      - number: 1", "key: 0x05", "files.EF05.write.key", "key index 0x05 is not declared in crypto.keys"},
		{"template unknown placeholder", `"84 18 00 00 04 {mac}"`, `"84 18 00 00 04 {mac} {le}"`, "{le}", "commands.application_unblock.template", "unknown placeholder {le}"},
		{"template without source", "    mac_key: app-unblock\n    source: assumption\n", "    mac_key: app-unblock\n", `template: "84 18`, "commands.application_unblock.source", "required field missing"},
		{"template empty source", "    source: confirmed\n", "    source: \"\"\n", `source: ""`, "commands.pin_change.source", "must not be empty"},
		{"template mac without key", "    mac_key: app-unblock\n", "", `template: "84 18`, "commands.application_unblock.template", "{mac} needs a mac_key"},
		{"template unknown mac key", "    mac_key: app-unblock\n", "    mac_key: app-block\n", "mac_key: app-block", "commands.application_unblock.mac_key", `"app-block" is not in crypto.holder_keys`},
		{"unknown command", "  pin_change:\n", "  pin_chnage:\n", "pin_chnage:", "commands.pin_chnage", "unknown command"},
		{"mask length mismatch", `mask: "FF FF FF FF"`, `mask: "FF FF FF"`, "mask:", "atr[0].mask", "is 3 bytes, pattern is 4"},
		{"pattern outside mask", `mask: "FF FF FF FF"`, `mask: "FF FF FF 00"`, "pattern:", "atr[0].pattern", "byte 3 (50) has bits outside the mask (00): it can never match"},
		{"missing name", "name: t\n", "", "schema:", "name", "required field missing"},
		{"name not file", "name: t\n", "name: u\n", "name: u", "name", `must equal the file name stem "t", got "u"`},
		{"schema", "schema: ssstation.firmware-profile/v1\n", "schema: ssstation.firmware-profile/v2\n", "schema:", "schema", `must be "ssstation.firmware-profile/v1"`},
		{"protocol", "protocol: T1\n", "protocol: T=1\n", "protocol:", "protocol", `must be one of T0, T1, got "T=1"`},
		{"algorithm", "algorithm: 3DES\n", "algorithm: AES\n", "algorithm:", "crypto.algorithm", `must be one of 3DES, SM4, got "AES"`},
		{"level", "levels: [region, card_id_tail]", "levels: [region, card_no]", "levels:", "crypto.diversification.levels[1]", `unknown diversification level "card_no"`},
		{"pin min > max", "  min_length: 6\n", "  min_length: 8\n", "min_length: 8", "pin.min_length", "exceeds max_length (8 > 6)"},
		{"pin initial", "  initial: \"123456\"\n", "  initial: \"1234\"\n", "initial:", "pin.initial", "is 4 digits, the policy allows 6..6"},
		{"pin digits", "  initial: \"123456\"\n", "  initial: \"12345x\"\n", "initial:", "pin.initial", `must be digits, got "12345x"`},
		{"bool", "  mf_first: false\n", "  mf_first: yes\n", "mf_first:", "select.mf_first", `must be true or false, got "yes"`},
		{"empty assumption", "  - {id: A-ONE, text: t, source: s}\n", "  - {id: A-ONE, text: \"\", source: s}\n", "id: A-ONE", "assumptions[0].text", "must not be empty"},
		{"duplicate assumption", "  - {id: A-ONE, text: t, source: s}\n", "  - {id: A-ONE, text: t, source: s}\n  - {id: A-ONE, text: u, source: s}\n", "text: u", "assumptions[1].id", `duplicate assumption id "A-ONE"`},
		{"quirk unknown", "quirks: []\n", "quirks: [fast]\n", "quirks:", "quirks[0]", `unknown quirk "fast"`},
		{"quirk mismatch", "quirks: []\n", "quirks: [mf_select_first]\n", "quirks:", "quirks", "mf_select_first listed is true but the select fields say false"},
		{"quirk protocol", "quirks: []\n", "quirks: [t0_get_response]\n", "quirks:", "quirks[0]", "t0_get_response needs protocol T0"},
		{"read info", "read_info_min_apdus: 11\n", "read_info_min_apdus: 10\n", "read_info_min_apdus", "read_info_min_apdus", "is 10, the profile's fields give 11"},
		{"missing basic item", "      - {number: 7, tag: 0x07, item: card_number, type: an, length: 9, source: s}\n", "", "files:", "files", "no record holds card_number"},
		{"activation step", "steps: [internal_authenticate,", "steps: [internal_authentication,", "steps:", "activation.steps[0]", `unknown step "internal_authentication"`},
		{"transport lock without its release", "  transport_lock: true\n", "  transport_lock: false\n", "transport_lock:", "activation.transport_lock", "transport_lock is false but the steps have application_unblock"},
		{"activation needs command", "  pin_change:\n    template: \"80 5E 01 00 {lc} {old} FF {new}\"\n    source: confirmed\n", "", "steps:", "activation.steps[2]", "step pin_change_from_initial needs commands.pin_change"},
		{"holder card key", "{name: rkssse, card_key: read,", "{name: rkssse, card_key: reed,", "card_key: reed", "crypto.holder_keys[2].card_key", `"reed" is not in crypto.keys`},
		{"assumption named not listed", "    source: assumption\n", "    source: assumption A-TWO\n", "A-TWO", "assumptions", "A-TWO is named on this line but not listed"},
		{"yaml syntax", "  tries: 3\n", "  tries: [3\n", "", "", ""},
		{"not a mapping", "select:\n  mf_first: false\n", "select: 3F00\nxselect:\n  mf_first: false\n", "select: 3F00", "select", "must be a mapping, got a scalar"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if strings.Count(baseYAML, c.old) != 1 {
				t.Fatalf("old text found %d times", strings.Count(baseYAML, c.old))
			}
			text := strings.Replace(baseYAML, c.old, c.new, 1)
			_, err := Load("t.yaml", []byte(text))
			if err == nil {
				t.Fatal("loaded")
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %T %v", err, err)
			}
			// The error for the broken field; the first one unless the
			// edit also breaks something on an earlier line.
			e := es[0]
			for _, x := range es {
				if x.Path == c.path {
					e = x
					break
				}
			}
			if c.name == "yaml syntax" {
				if e.Line == 0 || !strings.HasPrefix(e.Error(), fmt.Sprintf("t.yaml:%d: ", e.Line)) {
					t.Errorf("syntax error not located: %v", e)
				}
				return
			}
			line := lineOf(t, text, c.at)
			want := fmt.Sprintf("t.yaml:%d: %s: %s", line, c.path, c.msg)
			if !strings.HasPrefix(e.Error(), want) {
				t.Errorf("got  %s\nwant %s...", e, want)
			}
			if e.Line != line || e.Path != c.path || e.File != "t.yaml" {
				t.Errorf("fields %+v", e)
			}
		})
	}
}

func TestLoadCollectsEveryError(t *testing.T) {
	text := strings.Replace(baseYAML, "  tries: 3\n", "  tries: 0\n", 1)
	text = strings.Replace(text, "protocol: T1\n", "protocol: T2\n", 1)
	_, err := Load("t.yaml", []byte(text))
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("%v", err)
	}
	if es[0].Path != "protocol" || es[1].Path != "pin.tries" {
		t.Errorf("order: %v", err)
	}
	if !strings.Contains(err.Error(), "\n") {
		t.Error("Errors.Error does not list each on its own line")
	}
}

func TestLoadEmpty(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n"} {
		if _, err := Load("t.yaml", []byte(text)); err == nil || !strings.Contains(err.Error(), "t.yaml") {
			t.Errorf("%q: %v", text, err)
		}
	}
	if _, err := Load("t.yaml", []byte("- a\n- b\n")); err == nil || !strings.Contains(err.Error(), "t.yaml:1: must be a mapping, got a list") {
		t.Errorf("list: %v", err)
	}
}
