package strictjson

import (
	"errors"
	"strings"
	"testing"
)

type doc struct {
	Name  string `json:"name"`
	Inner struct {
		A int `json:"a"`
	} `json:"inner"`
	List []map[string]int `json:"list"`
}

func TestDecode(t *testing.T) {
	var d doc
	if err := Decode([]byte(`{"name": "x", "inner": {"a": 1}, "list": [{"a": 1, "b": 2}, {"a": 3}]}`+"\n"), &d); err != nil {
		t.Fatal(err)
	}
	if d.Name != "x" || d.Inner.A != 1 || len(d.List) != 2 {
		t.Fatalf("%+v", d)
	}
	cases := []struct{ in, want string }{
		{`{"name": "x"} {"name": "y"}`, "line 1, column 15: data after the end"},
		{"{\"name\": \"x\"}\ngarbage", "line 2, column 1: data after the end"},
		{`{"name": "x", "name": "y"}`, `key "name" appears twice`},
		{`{"name": "x", "NAME": "y"}`, `key "NAME" appears twice`},
		{`{"inner": {"a": 1, "a": 2}}`, `key "a" appears twice`},
		{`{"list": [{"a": 1}, {"a": 1, "a": 2}]}`, `key "a" appears twice`},
		{"\xEF\xBB\xBF{}", "byte order mark"},
		{"", "empty"},
		{"  \n ", "empty"},
		{`{"name": "x"`, "truncated"},
		{`{"nom": "x"}`, `unknown field "nom"`},
		{`{"name": 12}`, "name must be a JSON string"},
		{`{"name": "secret-value",}`, "syntax error"},
	}
	for _, c := range cases {
		var d doc
		err := Decode([]byte(c.in), &d)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.in, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "secret-value") {
			t.Errorf("%q: the error quotes a value: %v", c.in, err)
		}
	}
	// Same keys in different objects are fine.
	if err := Decode([]byte(`{"list": [{"a": 1}, {"a": 2}], "inner": {"a": 3}}`), &d); err != nil {
		t.Fatal(err)
	}
	if err := Decode(nil, &d); !errors.Is(err, ErrEmpty) {
		t.Fatal(err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"name": "x", "inner": {"a": 1}}`))
	f.Add([]byte(`{"a": 1, "A": 2}`))
	f.Add([]byte(`[1, 2] 3`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d doc
		_ = Decode(b, &d)
		var anyv any
		_ = Decode(b, &anyv)
	})
}
