package profiles_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	profiles "ssstation/firmware-profiles"
)

// FuzzLoad feeds profile YAML to the loader. Whatever the bytes, Load
// never panics; a refusal is an Errors list whose every entry names the
// file; an accepted profile is deterministic, loads under its own file
// name, and answers the questions the station asks of it.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("*.yaml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		// Renamed to the stem of the file name the fuzz target loads it as.
		stem := strings.TrimSuffix(filepath.Base(name), ".yaml")
		renamed := strings.Replace(string(b), "\nname: "+stem+"\n", "\nname: fuzz\n", 1)
		if _, err := profiles.Load("fuzz.yaml", []byte(renamed)); err != nil {
			f.Fatalf("built-in %s renamed does not load: %v", name, err)
		}
		f.Add([]byte(renamed))
	}
	if len(files) == 0 {
		f.Fatal("no built-in profile YAML beside the test")
	}
	for _, s := range []string{
		"", "---", "name: x", "[]", "{", "a: &a [*a, *a]", "name: x\nname: y\n",
		"schema: 1\nname: \"\\xff\"\n", "? [a]\n: b\n", "!!binary AAAA",
	} {
		f.Add([]byte(s))
	}
	atrs := [][]byte{
		{0x3B, 0x88, 0x81, 0x31, 0xFE, 0x45, 0x53, 0x53, 0x43, 0x31, 0x33, 0x44, 0x45, 0x53, 0x90},
		{0x3B, 0x6D, 0x00, 0x00, 0x00, 0x81}, {},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := profiles.Load("fuzz.yaml", data)
		if err != nil {
			if p != nil {
				t.Fatal("Load returned a profile with its error")
			}
			var es profiles.Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("refusal is not a non-empty Errors: %T %v", err, err)
			}
			for _, e := range es {
				if e.File != "fuzz.yaml" || e.Msg == "" || e.Line < 0 {
					t.Fatalf("error without its file, line or message: %+v", e)
				}
			}
			return
		}
		// "fuzz.yaml" loads only a profile named fuzz: the name is the stem.
		if p.Name != "fuzz" {
			t.Fatalf("profile %q loaded from fuzz.yaml", p.Name)
		}
		again, err := profiles.Load("fuzz.yaml", data)
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("second Load differs: %v", err)
		}
		if _, err := profiles.Load("other.yaml", data); err == nil {
			t.Fatal("the profile loaded under another file name")
		}
		if p.Files == nil || p.Commands == nil {
			t.Fatal("accepted profile without files or commands")
		}
		if n, err := p.ComputeReadInfoAPDUs(); err == nil && n != p.ReadInfoMinAPDUs {
			t.Fatalf("read_info_min_apdus %d, computed %d", p.ReadInfoMinAPDUs, n)
		}
		for _, item := range []string{profiles.ItemName, profiles.ItemNameExt, profiles.ItemSSN, profiles.ItemCardNumber} {
			file, rec, ok := p.Record(item)
			if ok && (file == "" || rec.Item != item || strings.TrimSpace(rec.Type) == "") {
				t.Fatalf("Record(%s) = %q %+v", item, file, rec)
			}
		}
		for _, a := range atrs {
			_ = p.MatchATR(a)
		}
		for name := range p.Commands {
			if _, ok := p.Template(name); !ok {
				t.Fatalf("command %q listed but Template does not find it", name)
			}
		}
	})
}
