package ssse

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// State is the SSSE application's life cycle state.
type State string

// The life cycle states (docs/cardsim.md; the profiles' `lifecycle` notes).
const (
	// StateBlank: initialized only: EF05 holds the card identification code
	// and the spec version; every other EF05/EF06 record is blank.
	StateBlank State = "blank"
	// StatePersonalized: written, not finalized: UPDATE RECORD still works.
	StatePersonalized State = "personalized"
	// StateFinalized: FINALIZE done; personalization writes are refused.
	StateFinalized State = "finalized"
	// StateTransportLocked: finalized and temporarily blocked for delivery;
	// APPLICATION UNBLOCK (activation) releases it.
	StateTransportLocked State = "transport_locked"
	// StateActive: in use.
	StateActive State = "active"
	// StateBlockedTemporary: APPLICATION BLOCK (temporary), e.g. loss reported.
	StateBlockedTemporary State = "blocked_temporary"
	// StateBlockedPermanent: APPLICATION BLOCK (permanent): answers 9303.
	StateBlockedPermanent State = "blocked_permanent"
	// StateCardBlocked: CARD BLOCK: every SELECT answers 6A81.
	StateCardBlocked State = "card_blocked"
)

// States lists every state, in life cycle order.
func States() []State {
	return []State{
		StateBlank, StatePersonalized, StateFinalized, StateTransportLocked, StateActive,
		StateBlockedTemporary, StateBlockedPermanent, StateCardBlocked,
	}
}

func (s State) valid() bool {
	for _, v := range States() {
		if s == v {
			return true
		}
	}
	return false
}

// KeysTest is the only value of Image.Keys: the card holds the project's
// test master keys (keys.TestKey) diversified for this card.
const KeysTest = "test"

// Image is an SSSE card image: a firmware profile name plus the card's data,
// as read from JSON (docs/cardsim.md). Like engine.Image it is a description
// only: New builds a fresh, independent card from it each time.
//
// Text fields are the values as the host reads them back (records.Decode):
// digits for cn records, UTF-8 text for an records (GBK on the card), hex for
// the card identification code. What depends on the profile (which records
// exist, their lengths, the PIN policy) is checked by New.
type Image struct {
	Comment string `json:"comment,omitempty"` // free text, ignored
	Profile string `json:"profile"`           // firmware profile name, e.g. "ss-v2-3des-t0"
	State   State  `json:"state"`

	CardID      string `json:"card_id"`      // EF05 tag 01: 16 bytes in hex (spaces allowed)
	CardType    string `json:"card_type"`    // EF05 tag 02
	SpecVersion string `json:"spec_version"` // EF05 tag 03; default: the profile's spec_version
	InitOrg     string `json:"init_org"`     // EF05 tag 04
	IssueDate   string `json:"issue_date"`   // EF05 tag 05, YYYYMMDD
	ExpiryDate  string `json:"expiry_date"`  // EF05 tag 06, YYYYMMDD
	CardNumber  string `json:"card_number"`  // EF05 tag 07

	Holder Holder   `json:"holder"`
	PIN    PINImage `json:"pin"`
	// Keys says which keys the card holds; only "test" (the default) exists.
	Keys string `json:"keys,omitempty"`

	// Card is what this card's batch does that its profile does not say: a
	// real card's own ATR, FCI, padding and record numbering. A host that
	// follows the public readers (select SSSE, branch on the spec version,
	// read by identifier) copes with all of it without a profile.
	Card *CardQuirks `json:"card,omitempty"`
}

// CardQuirks are per-card overrides of the profile (docs/cardsim.md).
type CardQuirks struct {
	// ATR is the card's own ATR (hex). An ATR offering T=0 only makes the
	// card a T=0 card (61xx / GET RESPONSE, 6Cxx), whatever the profile says.
	ATR string `json:"atr,omitempty"`
	// SSSEFCI is the exact answer to SELECT SSSE (hex), e.g. the real 1.00
	// card's 6F 16 84 0F <AID> A5 03 88 01 0B without 9F0C.
	SSSEFCI string `json:"ssse_fci,omitempty"`
	// ANPad is the byte that pads an (text) values: "00" (the default) or
	// "20" (spaces, as on the real 1.00 card).
	ANPad string `json:"an_pad,omitempty"`
	// RecordNumbers is "profile" (the default: the profile's record
	// numbers) or "sequential": each file's records numbered 1..n in the
	// profile's order, without gaps (a 1.00 card's EF06: 1..6).
	RecordNumbers string `json:"record_numbers,omitempty"`
}

// Record numbering of CardQuirks.RecordNumbers.
const (
	NumbersProfile    = "profile"
	NumbersSequential = "sequential"
)

// Holder is the EF06 data.
type Holder struct {
	SSN         string `json:"ssn,omitempty"`         // tag 08, the citizen ID number
	Name        string `json:"name,omitempty"`        // tags 09 (+ 4E): the full name, UTF-8
	Gender      string `json:"gender,omitempty"`      // tag 0A: "1" male, "2" female
	Nationality string `json:"nationality,omitempty"` // tag 0B, 2 digits
	Birthplace  string `json:"birthplace,omitempty"`  // tag 0C, region code
	BirthDate   string `json:"birth_date,omitempty"`  // tag 0D, YYYYMMDD
}

// PINImage is the card's PIN.
type PINImage struct {
	Value string `json:"value"` // the digits; within the profile's pin length
	// TriesLeft is the try counter at power-up, 0..profile pin.tries
	// (default: pin.tries); 0 is a blocked PIN.
	TriesLeft *int `json:"tries_left,omitempty"`
}

// field is one image field with its JSON path, for checks and messages.
type field struct {
	path  string
	value string
}

// itemOrder is the record items in EF05, EF06 order.
var itemOrder = []string{
	"card_id", "card_type", "spec_version", "init_org", "issue_date", "expiry_date", "card_number",
	"ssn", "name", "gender", "nationality", "birthplace", "birth_date",
}

// dataFields are the record-backed fields, by profile item name.
func (img *Image) dataFields() map[string]field {
	return map[string]field{
		"card_id":      {"card_id", img.CardID},
		"card_type":    {"card_type", img.CardType},
		"spec_version": {"spec_version", img.SpecVersion},
		"init_org":     {"init_org", img.InitOrg},
		"issue_date":   {"issue_date", img.IssueDate},
		"expiry_date":  {"expiry_date", img.ExpiryDate},
		"card_number":  {"card_number", img.CardNumber},
		"ssn":          {"holder.ssn", img.Holder.SSN},
		"name":         {"holder.name", img.Holder.Name},
		"gender":       {"holder.gender", img.Holder.Gender},
		"nationality":  {"holder.nationality", img.Holder.Nationality},
		"birthplace":   {"holder.birthplace", img.Holder.Birthplace},
		"birth_date":   {"holder.birth_date", img.Holder.BirthDate},
	}
}

// check validates what does not depend on the profile. Errors name the field.
func (img *Image) check() error {
	if strings.TrimSpace(img.Profile) == "" {
		return errors.New(`profile: required (a firmware profile name, e.g. "ss-v2-3des-t0")`)
	}
	if img.State == "" {
		return errors.New("state: required")
	}
	if !img.State.valid() {
		names := make([]string, 0, len(States()))
		for _, s := range States() {
			names = append(names, string(s))
		}
		return fmt.Errorf("state: %q, want one of %s", img.State, strings.Join(names, ", "))
	}
	if img.Keys != "" && img.Keys != KeysTest {
		return fmt.Errorf("keys: %q, want %q (the project's test master keys, diversified for the card)", img.Keys, KeysTest)
	}
	if img.CardID == "" {
		return errors.New("card_id: required (16 bytes in hex)")
	}
	if q := img.Card; q != nil {
		switch q.ANPad {
		case "", "00", "20":
		default:
			return fmt.Errorf(`card.an_pad: %q, want "00" or "20"`, q.ANPad)
		}
		switch q.RecordNumbers {
		case "", NumbersProfile, NumbersSequential:
		default:
			return fmt.Errorf("card.record_numbers: %q, want %q or %q", q.RecordNumbers, NumbersProfile, NumbersSequential)
		}
	}
	if !utf8.ValidString(img.Holder.Name) {
		return errors.New("holder.name: not valid UTF-8")
	}
	for _, f := range []field{
		{"issue_date", img.IssueDate}, {"expiry_date", img.ExpiryDate}, {"holder.birth_date", img.Holder.BirthDate},
	} {
		if f.value == "" {
			continue
		}
		if _, err := time.Parse("20060102", f.value); err != nil || len(f.value) != 8 {
			return fmt.Errorf("%s: %q is not a date YYYYMMDD", f.path, f.value)
		}
	}
	if img.PIN.Value == "" {
		return errors.New("pin.value: required")
	}
	if strings.Trim(img.PIN.Value, "0123456789") != "" {
		return errors.New("pin.value: digits only")
	}
	if img.PIN.TriesLeft != nil && *img.PIN.TriesLeft < 0 {
		return fmt.Errorf("pin.tries_left: %d is negative", *img.PIN.TriesLeft)
	}
	// What a blank card holds: the card identification code and the spec
	// version, written at card initialization; nothing else.
	if img.State == StateBlank {
		fs := img.dataFields()
		for _, item := range itemOrder {
			f := fs[item]
			if item == "card_id" || item == "spec_version" || f.value == "" {
				continue
			}
			return fmt.Errorf("%s: a blank card holds only card_id and spec_version (remove the field or change state)", f.path)
		}
	}
	return nil
}

// ParseImage decodes and checks an SSSE image: unknown fields, a missing
// profile name, an unknown state, bad dates and such are errors naming the
// field. The checks that need the profile are New's.
func ParseImage(b []byte) (*Image, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var img Image
	if err := dec.Decode(&img); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
			return nil, fmt.Errorf("JSON syntax error on line %d: %v", line, err)
		}
		return nil, fmt.Errorf("JSON: %v", err)
	}
	if err := dec.Decode(new(json.RawMessage)); err != io.EOF {
		return nil, errors.New("trailing data after the image object")
	}
	if err := img.check(); err != nil {
		return nil, err
	}
	return &img, nil
}

// LoadImageFile reads and checks an SSSE image file.
func LoadImageFile(path string) (*Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ssse image: %w", err)
	}
	img, err := ParseImage(b)
	if err != nil {
		return nil, fmt.Errorf("ssse image %s: %w", path, err)
	}
	return img, nil
}

// IsImage reports whether b is a JSON object with a "profile" member: an
// SSSE image rather than a generic engine image (which has none).
func IsImage(b []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(b, &probe) != nil {
		return false
	}
	_, ok := probe["profile"]
	return ok
}

//go:embed images/*.json
var builtinFS embed.FS

// BuiltinNames lists the built-in images, sorted.
func BuiltinNames() []string {
	entries, err := builtinFS.ReadDir("images")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// BuiltinJSON returns the JSON text of a built-in image.
func BuiltinJSON(name string) ([]byte, error) {
	if name == "" || strings.ContainsAny(name, `/\`) {
		return nil, fmt.Errorf("ssse: no built-in image %q (have %s)", name, strings.Join(BuiltinNames(), ", "))
	}
	b, err := builtinFS.ReadFile(path.Join("images", name+".json"))
	if err != nil {
		return nil, fmt.Errorf("ssse: no built-in image %q (have %s)", name, strings.Join(BuiltinNames(), ", "))
	}
	return b, nil
}

// Builtin returns a fresh copy of the built-in image called name.
func Builtin(name string) (*Image, error) {
	b, err := BuiltinJSON(name)
	if err != nil {
		return nil, err
	}
	img, err := ParseImage(b)
	if err != nil {
		return nil, fmt.Errorf("ssse: built-in image %s: %w", name, err)
	}
	return img, nil
}
