package engine_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"ssstation/internal/cardsim/engine"
)

func TestParseATR(t *testing.T) {
	img := engine.DefaultImage()
	info, err := engine.ParseATR(unhex(t, img.ATR))
	if err != nil || !slices.Equal(info.Protocols, []int{1}) || !info.HasTCK || len(info.Historical) != 13 {
		t.Fatalf("default ATR: %+v %v", info, err)
	}
	info, err = engine.ParseATR(unhex(t, img.ATRT0))
	if err != nil || !slices.Equal(info.Protocols, []int{0}) || info.HasTCK || len(info.Historical) != 13 {
		t.Fatalf("default T=0 ATR: %+v %v", info, err)
	}
	good := map[string][]int{
		"3B 00":          {0},
		"3B 02 41 42":    {0},
		"3F 00":          {0},
		"3B 80 80 01 01": {0, 1}, // T=0 then T=1, TCK 01
		"3B 6D 00 00 00 81 4E 43 23 86 97 15 99 00 BF 7C 7A": {0},
	}
	for atr, protos := range good {
		info, err := engine.ParseATR(unhex(t, atr))
		if err != nil || !slices.Equal(info.Protocols, protos) {
			t.Errorf("ParseATR(%s) = %+v, %v; want protocols %v", atr, info, err, protos)
		}
	}
	if got := engine.WithTCK(unhex(t, "3B 80 80 01")); got[len(got)-1] != 0x01 {
		t.Errorf("WithTCK = % X", got)
	}
	bad := map[string]string{
		"":                                  "shorter",
		"3B":                                "shorter",
		"3A 00":                             "TS",
		"3B 81 01 41":                       "no TCK",
		"3B 81 01 41 00":                    "TCK is 00, want C1",
		"3B 01 41 00":                       "no TCK allowed",
		"3B 10":                             "interface bytes",
		"3B 80":                             "before TD1",
		"3B 03 41 42":                       "historical",
		"3B 81 01 41 41 00":                 "extra",
		"3B 0F" + strings.Repeat(" 00", 32): "maximum",
	}
	for atr, want := range bad {
		_, err := engine.ParseATR(unhex(t, atr))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseATR(%s) = %v, want an error with %q", atr, err, want)
		}
	}
	if atr := engine.T0ATR([]byte("HIST")); string(atr) != "\x3B\x64\x00\x00HIST" {
		t.Errorf("T0ATR = % X", atr)
	}
}

func TestImageErrors(t *testing.T) {
	const atr = `"atr": "3B 00"`
	cases := []struct{ json, want string }{
		{`{`, "JSON ends early"},
		{"{\n" + atr + ",\n \"mf\": {]\n}", "line 3"},
		{`{` + atr + `, "mf": {}, "bogus": 1}`, `unknown field "bogus"`},
		{`{"mf": {}}`, `"atr" is required`},
		{`{"atr": "3B0", "mf": {}}`, "odd number of digits"},
		{`{"atr": "3B 81 01 41 00", "mf": {}}`, "atr: ATR TCK"},
		{`{` + atr + `, "atr_t0": "3B 80 80 01 01", "mf": {}}`, "want T=0 only"},
		{`{` + atr + `, "atr_t0": "3B 81 01 41", "mf": {}}`, "atr_t0: ATR offers"},
		{`{` + atr + `, "pin": {"value": "12a4", "tries": 3}, "mf": {}}`, "pin.value"},
		{`{` + atr + `, "pin": {"value": "", "tries": 3}, "mf": {}}`, "pin.value"},
		{`{` + atr + `, "pin": {"value": "1234", "tries": 0}, "mf": {}}`, "pin.tries 0"},
		{`{` + atr + `, "pin": {"value": "1234", "tries": 16}, "mf": {}}`, "pin.tries 16"},
		{`{` + atr + `, "pin": {"value": "1234", "tries": 3, "left": 4}, "mf": {}}`, "pin.left 4"},
		{`{` + atr + `, "mf": {"type": "ef"}}`, "mf: type"},
		{`{` + atr + `, "mf": {"fid": "3F01"}}`, "want 3F00"},
		{`{` + atr + `, "mf": {"children": [{"fid": "EF01"}]}}`, `mf/EF01: "type" is required`},
		{`{` + atr + `, "mf": {"children": [{"type": "xf", "fid": "EF01"}]}}`, `type "xf"`},
		{`{` + atr + `, "mf": {"children": [{"type": "ef"}]}}`, `"fid" is required`},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF0"}]}}`, "4 hex digits"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "GGGG"}]}}`, "4 hex digits"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "FFFF"}]}}`, "reserved"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "3F00"}]}}`, "MF's"},
		{`{` + atr + `, "mf": {"children": [{"type": "df", "fid": "3F00"}]}}`, "MF's"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01"}, {"type": "df", "fid": "EF01"}]}}`, "mf/EF01: fid EF01 already used by mf/EF01"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01", "sfi": 1}, {"type": "ef", "fid": "EF02", "sfi": 1}]}}`, "sfi 1 already used"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01", "sfi": 31}]}}`, "sfi 31"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01", "content": "0102", "size": 1}]}}`, "exceeds size 1"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01", "content": "01 0"}]}}`, "mf/EF01: content"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01", "records": ["01"]}]}}`, "on a transparent EF"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01", "structure": "record", "content": "01"}]}}`, "on a record EF"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01", "structure": "record", "record_size": 2, "records": ["010203"]}]}}`, "record 1 of 3 bytes exceeds record_size 2"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01", "structure": "record", "records": ["01", "XY"]}]}}`, "records[1] (record 2)"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01", "structure": "cyclic"}]}}`, `structure "cyclic"`},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01", "read": "maybe"}]}}`, "read: access"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01", "update": "key:1"}]}}`, "update: access"},
		{`{` + atr + `, "mf": {"children": [{"type": "ef", "fid": "EF01", "name": "A0"}]}}`, "no name or children"},
		{`{` + atr + `, "mf": {"children": [{"type": "df", "fid": "DF01", "content": "01"}]}}`, `"content" is an EF field`},
		{`{` + atr + `, "mf": {"children": [{"type": "df"}]}}`, "needs a fid, a name or both"},
		{`{` + atr + `, "mf": {"children": [{"type": "df", "name": "` + strings.Repeat("A0", 17) + `"}]}}`, "exceeds 16"},
		{`{` + atr + `, "mf": {"children": [{"type": "df", "fid": "DF01", "children": [{"type": "ef", "fid": "EF01", "sfi": 40}]}]}}`, "mf/DF01/EF01: sfi 40"},
		{`{` + atr + `, "mf": {}} {}`, "trailing data"},
	}
	for _, c := range cases {
		_, err := engine.ParseImage([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseImage(%s)\n  = %v\n  want an error containing %q", c.json, err, c.want)
		}
	}
}

func TestLoadImage(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "card.json")
	if err := os.WriteFile(good, []byte(testImage), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := engine.LoadImage(good)
	if err != nil {
		t.Fatal(err)
	}
	if img.PIN == nil || img.PIN.Value != "12345" {
		t.Fatalf("PIN %+v", img.PIN)
	}
	if _, err := engine.LoadImage(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Fatalf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"atr": "3B 00", "mf": {"children": [{"type": "ef"}]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.LoadImage(bad); err == nil || !strings.Contains(err.Error(), "bad.json") || !strings.Contains(err.Error(), "fid") {
		t.Fatalf("bad file: %v", err)
	}
	// The default image's JSON is a valid image file.
	def := filepath.Join(dir, "default.json")
	if err := os.WriteFile(def, engine.DefaultImageJSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.LoadImage(def); err != nil {
		t.Fatal(err)
	}
	// A blocked PIN at power-up.
	img, err = engine.ParseImage([]byte(`{"atr": "3B 00", "pin": {"value": "1234", "tries": 3, "left": 0}, "mf": {}}`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := engine.New(img)
	if err != nil {
		t.Fatal(err)
	}
	run(t, c, step{"00200000", "6983"})
}
