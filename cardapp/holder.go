package cardapp

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"ssstation/cardapp/records"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/strictjson"
)

// PersonalizeRequest is what a blank card is written with. The card's own
// identification code and spec version were written when the card was
// initialized and are kept: the card's keys derive from the former.
type PersonalizeRequest struct {
	Holder HolderData `json:"holder"`
	Card   CardData   `json:"card"`
}

// HolderData is the person (EF06).
type HolderData struct {
	SSN         string `json:"ssn"`         // 18-character citizen ID number
	Name        string `json:"name"`        // full name; split into name and name extension where the profile has one
	Gender      string `json:"gender"`      // "1" male, "2" female
	Nationality string `json:"nationality"` // 2-digit ethnic group code (民族)
	Birthplace  string `json:"birthplace"`  // 6-digit region code
	BirthDate   string `json:"birth_date"`  // YYYYMMDD
}

// CardData is the card's own items (EF05).
type CardData struct {
	CardType   string `json:"card_type"`
	InitOrg    string `json:"init_org"`
	IssueDate  string `json:"issue_date"`
	ExpiryDate string `json:"expiry_date"`
	CardNumber string `json:"card_number"`
}

// ValidationError lists what is wrong with a request. It names fields,
// never their values: a value may be a name or an ID number.
type ValidationError struct{ Problems []FieldProblem }

// FieldProblem is one field's problem.
type FieldProblem struct {
	Field string `json:"field"`
	Msg   string `json:"message"`
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Msg
	}
	return "invalid personalization data: " + strings.Join(parts, "; ")
}

// ErrInvalidData matches every ValidationError.
var ErrInvalidData = errors.New("invalid personalization data")

func (e *ValidationError) Unwrap() error { return ErrInvalidData }

// write is one record to write: its file, record and the TLV bytes.
type write struct {
	File string
	Rec  profiles.Record
	TLV  []byte
}

// citizenIDWeights are GB 11643-1999's check digit weights.
var citizenIDWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// CheckCitizenID validates an 18-character citizen ID number: 17 digits, a
// check digit (0-9 or X) per GB 11643-1999, and a real birth date inside.
func CheckCitizenID(id string) error {
	if len(id) != 18 {
		return fmt.Errorf("must be 18 characters, got %d", len(id))
	}
	sum := 0
	for i := 0; i < 17; i++ {
		c := id[i]
		if c < '0' || c > '9' {
			return fmt.Errorf("character %d must be a digit", i+1)
		}
		sum += int(c-'0') * citizenIDWeights[i]
	}
	want := "10X98765432"[sum%11]
	got := id[17]
	if got == 'x' {
		got = 'X'
	}
	if got != want {
		return errors.New("check digit does not match")
	}
	if _, err := time.Parse("20060102", id[6:14]); err != nil {
		return errors.New("the birth date inside it is not a real date")
	}
	return nil
}

// plan validates the request against the profile and returns the records
// to write, EF06 first then EF05 (the order of public issuance code).
// Nothing is sent to the card before this passes.
func plan(p *profiles.Profile, req *PersonalizeRequest) ([]write, error) {
	var probs []FieldProblem
	bad := func(field, format string, args ...any) {
		probs = append(probs, FieldProblem{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	h, c := req.Holder, req.Card
	// Names are written without the spaces a form or a file adds around them.
	h.Name = strings.TrimSpace(h.Name)

	if err := CheckCitizenID(h.SSN); err != nil {
		bad("holder.ssn", "%v", err)
	} else {
		if h.BirthDate != "" && h.BirthDate != h.SSN[6:14] {
			bad("holder.birth_date", "differs from the birth date in the ID number")
		}
		if g := h.SSN[16]; (g-'0')%2 == 1 && h.Gender == "2" || (g-'0')%2 == 0 && h.Gender == "1" {
			bad("holder.gender", "differs from the gender coded in the ID number")
		}
	}
	if h.Gender != "1" && h.Gender != "2" {
		bad("holder.gender", `must be "1" (male) or "2" (female)`)
	}
	for _, d := range []struct{ field, v string }{{"holder.birth_date", h.BirthDate}, {"card.issue_date", c.IssueDate}, {"card.expiry_date", c.ExpiryDate}} {
		if _, err := time.Parse("20060102", d.v); err != nil {
			bad(d.field, "must be a real date YYYYMMDD")
		}
	}
	if c.IssueDate != "" && c.ExpiryDate != "" && c.ExpiryDate <= c.IssueDate {
		bad("card.expiry_date", "must be after the issue date")
	}
	if _, err := time.Parse("20060102", h.BirthDate); err == nil {
		if h.BirthDate >= time.Now().Format("20060102") {
			bad("holder.birth_date", "must lie in the past")
		}
		if c.IssueDate != "" && h.BirthDate >= c.IssueDate {
			bad("holder.birth_date", "must be before the card's issue date")
		}
	}
	if strings.TrimSpace(h.Name) == "" {
		bad("holder.name", "is empty")
	} else if _, err := records.GBKLen(h.Name); err != nil {
		bad("holder.name", "has a character GBK cannot encode")
	}
	digits := func(field, v string, n int) {
		if len(v) != n || strings.Trim(v, "0123456789") != "" {
			bad(field, "must be %d digits", n)
		}
	}
	digits("holder.nationality", h.Nationality, 2)
	digits("holder.birthplace", h.Birthplace, 6)
	if c.CardNumber == "" {
		bad("card.card_number", "is empty")
	}

	// Split the name where the profile has a name extension.
	name, ext := h.Name, ""
	_, nameRec, _ := p.Record(profiles.ItemName)
	_, extRec, hasExt := p.Record(profiles.ItemNameExt)
	if len(probs) == 0 {
		var err error
		if name, ext, err = records.SplitGBK(h.Name, nameRec.Length); err != nil {
			bad("holder.name", "has a character GBK cannot encode")
		}
		if ext != "" && !hasExt {
			bad("holder.name", "is longer than the %d bytes a %s card holds (it has no name extension)", nameRec.Length, p.SpecVersion)
		}
		if hasExt {
			if n, _ := records.GBKLen(ext); n > extRec.Length {
				bad("holder.name", "is longer than the %d bytes of name and name extension", nameRec.Length+extRec.Length)
			}
		}
	}
	values := map[string]string{
		profiles.ItemSSN: strings.ToUpper(h.SSN), profiles.ItemName: name, profiles.ItemNameExt: ext,
		profiles.ItemGender: h.Gender, profiles.ItemNationality: h.Nationality, profiles.ItemBirthplace: h.Birthplace,
		profiles.ItemBirthDate: h.BirthDate,
		profiles.ItemCardType:  c.CardType, profiles.ItemInitOrg: c.InitOrg, profiles.ItemIssueDate: c.IssueDate,
		profiles.ItemExpiryDate: c.ExpiryDate, profiles.ItemCardNumber: c.CardNumber,
	}
	var out []write
	for _, fname := range []string{"EF06", "EF05"} {
		f := p.Files[fname]
		if f == nil {
			continue
		}
		for _, r := range f.Records {
			if r.Item == profiles.ItemCardID || r.Item == profiles.ItemSpecVersion {
				continue // written at card initialization
			}
			v, ok := values[r.Item]
			if !ok {
				bad(r.Item, "the profile has a record this station does not know how to fill")
				continue
			}
			field := "holder." + r.Item
			if fname == "EF05" {
				field = "card." + r.Item
			}
			if r.Type == records.TypeText {
				if err := CheckText(v); err != nil {
					bad(field, "%v", err)
					continue
				}
			}
			enc, err := records.Encode(r.Type, r.Length, v)
			if err != nil {
				if errors.Is(err, records.ErrTooLong) {
					bad(field, "too long for its %d-byte field", r.Length)
				} else {
					bad(field, "cannot be encoded as %s", r.Type)
				}
				continue
			}
			out = append(out, write{File: fname, Rec: r, TLV: records.TLV(r.Tag, enc)})
		}
	}
	if len(probs) > 0 {
		return nil, &ValidationError{Problems: probs}
	}
	return out, nil
}

// CheckText refuses what must never be written into an "an" (text) record:
// the field separator '|' of the iReadCardBas string (card-reference §7), a
// control character (terminal escape sequences start with one) and the
// Unicode bidirectional controls, which reorder what a screen shows. The
// error names the position, never the value.
func CheckText(v string) error {
	for i, r := range []rune(v) {
		switch {
		case r == '|':
			return fmt.Errorf("character %d is '|', the separator of the iReadCardBas string", i+1)
		case r < 0x20 || r == 0x7F || (r >= 0x80 && r < 0xA0):
			return fmt.Errorf("character %d is a control character (U+%04X)", i+1, r)
		case r == 0x200E || r == 0x200F || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || r == 0xFEFF:
			return fmt.Errorf("character %d is an invisible formatting character (U+%04X)", i+1, r)
		}
	}
	return nil
}

// maxRequestSize bounds a holder file: a request is a few hundred bytes.
const maxRequestSize = 64 << 10

// DecodeRequest reads a personalization request (a holder file or a
// request body) strictly: one JSON document, no key twice (in any case),
// no unknown key, no byte order mark. Errors give a line and column and
// never quote a value. It does not validate the values: [ValidateRequest]
// does, against the card's profile.
func DecodeRequest(b []byte) (*PersonalizeRequest, error) {
	if len(b) > maxRequestSize {
		return nil, fmt.Errorf("%d bytes, more than the %d a personalization request may have", len(b), maxRequestSize)
	}
	var req PersonalizeRequest
	if err := strictjson.Decode(b, &req); err != nil {
		return nil, err
	}
	return &req, nil
}

// ValidateRequest checks a request against a profile without touching a card.
func ValidateRequest(p *profiles.Profile, req *PersonalizeRequest) error {
	_, err := plan(p, req)
	return err
}
