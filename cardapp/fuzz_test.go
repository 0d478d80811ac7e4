package cardapp_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"ssstation/cardapp"
	"ssstation/cardapp/records"
	profiles "ssstation/firmware-profiles"
)

// fuzzProfiles are the built-in profiles, in name order.
func fuzzProfiles(tb testing.TB) []*profiles.Profile {
	tb.Helper()
	set, err := profiles.Builtin()
	if err != nil {
		tb.Fatalf("built-in profiles: %v", err)
	}
	list := set.List()
	if len(list) == 0 {
		tb.Fatal("no built-in profile")
	}
	return list
}

// badText reports what must never reach an "an" record: the iReadCardBas
// separator and control characters (issue 8 §9, card-reference §7).
func badText(s string) bool {
	for _, r := range s {
		if r == '|' || r < 0x20 || r == 0x7F || r >= 0x80 && r < 0xA0 {
			return true
		}
	}
	return false
}

// leaks reports a value that appears in an error text. Only values that
// cannot occur in the fixed wording are checked: ones with a non-ASCII
// letter, and long digit runs.
func leaks(msg, v string) bool {
	if v == "" || !strings.Contains(msg, v) {
		return false
	}
	digits := 0
	for _, r := range v {
		if r >= '0' && r <= '9' {
			digits++
		}
		if r > unicode.MaxASCII && unicode.IsLetter(r) {
			return true
		}
	}
	return digits >= 10
}

// checkValidation asserts the properties of ValidateRequest's verdict on
// req for profile p: an accepted request satisfies every rule the station
// writes by, a refused one names fields and never echoes a value, and the
// request is never changed.
func checkValidation(t *testing.T, p *profiles.Profile, req *cardapp.PersonalizeRequest) {
	t.Helper()
	before := *req
	err := cardapp.ValidateRequest(p, req)
	if *req != before {
		t.Fatalf("ValidateRequest changed the request: %+v -> %+v", before, *req)
	}
	h, c := req.Holder, req.Card
	if err != nil {
		var ve *cardapp.ValidationError
		if !errors.As(err, &ve) || len(ve.Problems) == 0 || !errors.Is(err, cardapp.ErrInvalidData) {
			t.Fatalf("refusal is not a ValidationError with problems: %v", err)
		}
		for _, pr := range ve.Problems {
			if pr.Field == "" || pr.Msg == "" {
				t.Fatalf("problem without field or message: %+v", pr)
			}
		}
		msg := err.Error()
		for _, v := range []string{h.SSN, h.Name, strings.TrimSpace(h.Name), c.CardNumber} {
			if leaks(msg, v) {
				t.Fatalf("error text repeats a value (%q): %s", v, msg)
			}
		}
		return
	}
	if e := cardapp.CheckCitizenID(h.SSN); e != nil {
		t.Fatalf("accepted an invalid SSN: %v", e)
	}
	if h.Gender != "1" && h.Gender != "2" {
		t.Fatalf("accepted gender %q", h.Gender)
	}
	if h.BirthDate != strings.ToUpper(h.SSN)[6:14] {
		t.Fatalf("accepted birth date %q that differs from the SSN", h.BirthDate)
	}
	for _, d := range []string{h.BirthDate, c.IssueDate, c.ExpiryDate} {
		if _, e := time.Parse("20060102", d); e != nil {
			t.Fatalf("accepted date %q", d)
		}
	}
	if !(h.BirthDate < c.IssueDate && c.IssueDate < c.ExpiryDate) {
		t.Fatalf("accepted dates out of order: born %s, issued %s, expires %s", h.BirthDate, c.IssueDate, c.ExpiryDate)
	}
	if h.BirthDate >= time.Now().Format("20060102") {
		t.Fatalf("accepted a birth date in the future: %s", h.BirthDate)
	}
	name := strings.TrimSpace(h.Name)
	if name == "" || !utf8.ValidString(name) {
		t.Fatalf("accepted name %q", h.Name)
	}
	n, e := records.GBKLen(name)
	if e != nil {
		t.Fatalf("accepted a name GBK cannot encode: %q", name)
	}
	_, nameRec, _ := p.Record(profiles.ItemName)
	_, extRec, hasExt := p.Record(profiles.ItemNameExt)
	room := nameRec.Length
	if hasExt {
		room += extRec.Length
	}
	if n > room {
		t.Fatalf("accepted a name of %d GBK bytes for %d", n, room)
	}
	for _, v := range []string{name, c.CardNumber, c.CardType} {
		if badText(v) {
			t.Fatalf("accepted %q: '|' or a control character would reach the card", v)
		}
	}
	if len(h.Nationality) != 2 || len(h.Birthplace) != 6 || strings.Trim(h.Nationality+h.Birthplace, "0123456789") != "" {
		t.Fatalf("accepted nationality %q / birthplace %q", h.Nationality, h.Birthplace)
	}
	if c.CardNumber == "" {
		t.Fatal("accepted an empty card number")
	}
}

// FuzzHolderValidation fuzzes every field of a personalization request
// against each built-in profile.
func FuzzHolderValidation(f *testing.F) {
	ps := fuzzProfiles(f)
	add := func(r cardapp.PersonalizeRequest, prof uint8) {
		h, c := r.Holder, r.Card
		f.Add(h.SSN, h.Name, h.Gender, h.Nationality, h.Birthplace, h.BirthDate,
			c.CardType, c.InitOrg, c.IssueDate, c.ExpiryDate, c.CardNumber, prof)
	}
	if b, err := os.ReadFile("../demo/holder-v2.json"); err == nil {
		if r, err := cardapp.DecodeRequest(b); err == nil {
			for i := range ps {
				add(*r, uint8(i))
			}
		}
	}
	base := cardapp.PersonalizeRequest{
		Holder: cardapp.HolderData{SSN: "111111198101011110", Name: "张三", Gender: "1", Nationality: "01",
			Birthplace: "639900", BirthDate: "19810101"},
		Card: cardapp.CardData{CardType: "1", InitOrg: "410100813475", IssueDate: "20101001",
			ExpiryDate: "20201001", CardNumber: "X00000019"},
	}
	add(base, 0)
	for _, mod := range []func(*cardapp.PersonalizeRequest){
		func(r *cardapp.PersonalizeRequest) { r.Holder.Name = "张|三" },
		func(r *cardapp.PersonalizeRequest) { r.Holder.Name = "  张三\t" },
		func(r *cardapp.PersonalizeRequest) { r.Holder.Name = "张\x1b[2J三" },
		func(r *cardapp.PersonalizeRequest) { r.Holder.Name = strings.Repeat("娜", 30) },
		func(r *cardapp.PersonalizeRequest) { r.Holder.SSN = "11111119810101111X" },
		func(r *cardapp.PersonalizeRequest) { r.Holder.BirthDate = "20991231" },
		func(r *cardapp.PersonalizeRequest) { r.Card.IssueDate, r.Card.ExpiryDate = "20201001", "20101001" },
		func(r *cardapp.PersonalizeRequest) { r.Card.CardNumber = "X0000|019" },
		func(r *cardapp.PersonalizeRequest) { r.Holder.Gender = "2" },
	} {
		r := base
		mod(&r)
		add(r, 1)
	}
	f.Fuzz(func(t *testing.T, ssn, name, gender, nationality, birthplace, birthDate,
		cardType, initOrg, issueDate, expiryDate, cardNumber string, prof uint8) {
		req := &cardapp.PersonalizeRequest{
			Holder: cardapp.HolderData{SSN: ssn, Name: name, Gender: gender, Nationality: nationality,
				Birthplace: birthplace, BirthDate: birthDate},
			Card: cardapp.CardData{CardType: cardType, InitOrg: initOrg, IssueDate: issueDate,
				ExpiryDate: expiryDate, CardNumber: cardNumber},
		}
		checkValidation(t, ps[int(prof)%len(ps)], req)
	})
}

// FuzzDecodeRequest fuzzes the JSON a request arrives in: a document that
// decodes is an object whose re-encoding decodes to the same request, and
// the request then validates (or not) with the properties above.
func FuzzDecodeRequest(f *testing.F) {
	ps := fuzzProfiles(f)
	if b, err := os.ReadFile("../demo/holder-v2.json"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		`{"holder":{"ssn":"111111198101011110","name":"张三","gender":"1","nationality":"01","birthplace":"639900","birth_date":"19810101"},"card":{"card_type":"1","init_org":"410100813475","issue_date":"20101001","expiry_date":"20201001","card_number":"X00000019"}}`,
		`{"holder":{"name":"a"},"holder":{"name":"b"}}`,
		`{"holder":{}} {"card":{}}`,
		`{"holder":{"name":"\u0000"},"extra":1}`,
		`[]`, `null`, ``, `{`, "\xef\xbb\xbf{}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := cardapp.DecodeRequest(b)
		if err != nil {
			if req != nil {
				t.Fatal("DecodeRequest returned a request with its error")
			}
			return
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := cardapp.DecodeRequest(again)
		if err != nil || !reflect.DeepEqual(back, req) {
			t.Fatalf("decode(encode(req)) = %+v, %v; want %+v", back, err, req)
		}
		for _, p := range ps {
			checkValidation(t, p, req)
		}
	})
}
