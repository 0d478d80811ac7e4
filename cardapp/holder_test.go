package cardapp

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	profiles "ssstation/firmware-profiles"
)

// demoRequest is demo/holder-v2.json, the file the demo issues.
func demoRequest(t *testing.T) *PersonalizeRequest {
	t.Helper()
	b, err := os.ReadFile("../demo/holder-v2.json")
	if err != nil {
		t.Fatal(err)
	}
	req, err := DecodeRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func profile(t *testing.T, name string) *profiles.Profile {
	t.Helper()
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := set.Get(name)
	if !ok {
		t.Fatalf("no profile %s", name)
	}
	return p
}

// withCheckDigit completes 17 digits into a citizen ID number.
func withCheckDigit(first17 string) string {
	sum := 0
	for i := 0; i < 17; i++ {
		sum += int(first17[i]-'0') * citizenIDWeights[i]
	}
	return first17 + string("10X98765432"[sum%11])
}

func problemFields(err error) map[string]string {
	var ve *ValidationError
	out := map[string]string{}
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			out[p.Field] += p.Msg + ";"
		}
	}
	return out
}

// '|' would split the iReadCardBas string into more fields; control
// characters and escape sequences would reach every terminal that prints
// the card. Both are refused in every text (an) field, naming the field
// and never the value.
func TestTextFieldsRefuseSeparatorAndControls(t *testing.T) {
	p := profile(t, "ss-v2-3des-t0")
	if err := ValidateRequest(p, demoRequest(t)); err != nil {
		t.Fatalf("the demo holder is refused: %v", err)
	}
	bad := []string{"张|三", "张\x1b[2J三", "张\n三", "张\u202e三", "张\u0085三"}
	for _, v := range bad {
		for _, field := range []string{"holder.name", "card.card_number"} {
			req := demoRequest(t)
			if field == "holder.name" {
				req.Holder.Name = v
			} else {
				req.Card.CardNumber = "D4403|0077"
				if v != bad[0] {
					req.Card.CardNumber = strings.ReplaceAll(v, "张", "D44")
				}
			}
			err := ValidateRequest(p, req)
			if got := problemFields(err)[field]; got == "" {
				t.Errorf("%s = %q accepted: %v", field, v, err)
			}
			if err != nil && (strings.Contains(err.Error(), "张") || strings.Contains(err.Error(), "D44")) {
				t.Errorf("the error quotes the value: %v", err)
			}
		}
	}
}

func TestNameIsTrimmed(t *testing.T) {
	p := profile(t, "ss-v2-3des-t0")
	req := demoRequest(t)
	want, err := plan(p, req)
	if err != nil {
		t.Fatal(err)
	}
	req.Holder.Name = "  \t" + req.Holder.Name + "   "
	got, err := plan(p, req)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("surrounding spaces reached the card's name record")
	}
	req.Holder.Name = "   "
	if problemFields(ValidateRequest(p, req))["holder.name"] == "" {
		t.Fatal("a name of spaces was accepted")
	}
}

// A birth date in the future, or on or after the card's issue date, is a
// typing error.
func TestBirthDateInThePastAndBeforeIssue(t *testing.T) {
	p := profile(t, "ss-v2-3des-t0")
	future := time.Now().AddDate(1, 0, 0).Format("20060102")
	req := demoRequest(t)
	req.Holder.BirthDate = future
	req.Holder.SSN = withCheckDigit("440305" + future + "302")
	req.Card.IssueDate, req.Card.ExpiryDate = time.Now().AddDate(2, 0, 0).Format("20060102"), time.Now().AddDate(12, 0, 0).Format("20060102")
	if msg := problemFields(ValidateRequest(p, req))["holder.birth_date"]; !strings.Contains(msg, "past") {
		t.Fatalf("a birth date next year: %q", msg)
	}
	req = demoRequest(t)
	req.Card.IssueDate = "19870101"
	if msg := problemFields(ValidateRequest(p, req))["holder.birth_date"]; !strings.Contains(msg, "issue date") {
		t.Fatalf("a card issued before its holder was born: %q", msg)
	}
}

func TestDecodeRequestIsStrict(t *testing.T) {
	b, _ := os.ReadFile("../demo/holder-v2.json")
	cases := []struct {
		name string
		in   string
		want string
	}{
		{"trailing document", string(b) + `{"holder": {}}`, "data after the end"},
		{"duplicate key", strings.Replace(string(b), `"gender": "2",`, `"gender": "2", "gender": "1",`, 1), `"gender" appears twice`},
		{"duplicate key other case", strings.Replace(string(b), `"gender": "2",`, `"gender": "2", "Gender": "1",`, 1), `"Gender" appears twice`},
		{"unknown key", strings.Replace(string(b), `"gender"`, `"sex"`, 1), `unknown field "sex"`},
		{"BOM", "\xEF\xBB\xBF" + string(b), "byte order mark"},
		{"empty", "", "empty"},
		{"truncated", string(b[:len(b)/2]), "truncated"},
	}
	for _, c := range cases {
		_, err := DecodeRequest([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "440305198802143027") || strings.Contains(err.Error(), "欧阳") {
			t.Errorf("%s: the error quotes holder data: %v", c.name, err)
		}
	}
}

func FuzzValidateRequest(f *testing.F) {
	b, _ := os.ReadFile("../demo/holder-v2.json")
	f.Add(b)
	f.Add([]byte(`{"holder": {"name": "a|b"}}`))
	set, err := profiles.Builtin()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := DecodeRequest(in)
		if err != nil {
			return
		}
		for _, p := range set.List() {
			if _, err := plan(p, req); err == nil {
				for _, v := range []string{req.Holder.Name, req.Card.CardNumber} {
					if CheckText(v) != nil {
						t.Fatalf("profile %s accepted a text value CheckText refuses", p.Name)
					}
				}
			}
		}
	})
}
