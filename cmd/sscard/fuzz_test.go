package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// fuzzHexRuns returns the runs of at least n hex digits in s: what an APDU
// line may carry of a PIN or a key, which no error text may repeat.
func fuzzHexRuns(s string, n int) []string {
	var runs []string
	start := -1
	for i := 0; i <= len(s); i++ {
		hex := i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f' || s[i] >= 'A' && s[i] <= 'F')
		switch {
		case hex && start < 0:
			start = i
		case !hex && start >= 0:
			if i-start >= n {
				runs = append(runs, s[start:i])
			}
			start = -1
		}
	}
	return runs
}

// fuzzCheckQuiet fails when err repeats a long hex run of the input.
func fuzzCheckQuiet(t *testing.T, err error, input string) {
	t.Helper()
	var ue usageError
	if !errors.As(err, &ue) {
		t.Fatalf("error is not a usage error (exit code 2): %T %v", err, err)
	}
	for _, run := range fuzzHexRuns(input, 8) {
		if strings.Contains(err.Error(), run) {
			t.Fatalf("error text repeats the hex %q of the input (it may hold a PIN): %v", run, err)
		}
	}
}

var fuzzAPDULineSeeds = []string{
	"00A404000F7378312E73682EC9E7BBE1B1A3D5CF",
	"00 A4 04 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF",
	"0x00 0xA4 0x00 0x00 0x02 0xEF 0x05", "0x00A4000002EF05", "00:b2:01:28:12", "00-84-00-00-08",
	"0020000003123456", "00B00000000000", "00A4000003EF05", "00A", "00 G1", "\uFEFF00A40000",
	"-v 00A40000", "0x", "", "0x0x00A40000", "\t00A40000\t",
}

// FuzzParseAPDULine fuzzes the sscard apdu verb's parser of one line of
// hex. A line it accepts is the bytes its digits spell (written any other
// way, they parse the same); a line it refuses gives a usage error that
// says where, never what.
func FuzzParseAPDULine(f *testing.F) {
	for _, s := range fuzzAPDULineSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		typed, err := parseTypedAPDU("line 1 of fuzz", s)
		if err != nil {
			fuzzCheckQuiet(t, err, s)
			return
		}
		if len(typed.raw) < 4 {
			t.Fatalf("accepted %d bytes", len(typed.raw))
		}
		enc, err := typed.cmd.Bytes()
		if err != nil {
			t.Fatalf("accepted an APDU that does not encode: %v", err)
		}
		if len(enc) > len(typed.raw) {
			t.Fatalf("re-encoding grew the APDU: % X from % X", enc, typed.raw)
		}
		for _, form := range []string{"%X", "% X", "%x", "% x"} {
			again, err := parseTypedAPDU("line 1 of fuzz", fmt.Sprintf(form, typed.raw))
			if err != nil || !bytes.Equal(again.raw, typed.raw) {
				t.Fatalf("the same bytes written %q: % X, %v; want % X", form, again.raw, err, typed.raw)
			}
		}
		var ox strings.Builder
		for _, b := range typed.raw {
			fmt.Fprintf(&ox, "0x%02X ", b)
		}
		if again, err := parseTypedAPDU("line 1 of fuzz", ox.String()); err != nil || !bytes.Equal(again.raw, typed.raw) {
			t.Fatalf("the same bytes written 0xNN: % X, %v", again.raw, err)
		}
	})
}

// FuzzReadAPDULines fuzzes what --from - reads: one APDU per line, # starts
// a comment, blank lines are skipped. What it returns is one parsed APDU
// per line that holds one, in order; what it refuses is a usage error
// that repeats no hex of the input.
func FuzzReadAPDULines(f *testing.F) {
	f.Add("00A4040000\n# a comment\n\n0084000008 # challenge\r\n")
	f.Add(strings.Join(fuzzAPDULineSeeds[:7], "\n"))
	f.Add("\uFEFF00A4040000\n")
	f.Add("# only a comment\n")
	f.Add("")
	f.Add("00A4040000\n-v\n")
	f.Add("0020000003123456\n00A4000003EF05\n")
	f.Fuzz(func(t *testing.T, in string) {
		env := &cli{stdin: strings.NewReader(in), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
		got, err := readAPDULines(env, "-")
		if err != nil {
			fuzzCheckQuiet(t, err, in)
			return
		}
		var want []string
		for _, line := range strings.Split(in, "\n") {
			line, _, _ = strings.Cut(line, "#")
			if line = strings.TrimSpace(line); line != "" {
				want = append(want, line)
			}
		}
		if len(got) != len(want) || len(got) == 0 || len(got) > maxAPDULines {
			t.Fatalf("%d APDUs read, %d lines hold one", len(got), len(want))
		}
		for i, typed := range got {
			one, err := parseTypedAPDU("x", want[i])
			if err != nil || !bytes.Equal(one.raw, typed.raw) {
				t.Fatalf("APDU %d: % X, but its line %q parses to % X, %v", i+1, typed.raw, want[i], one.raw, err)
			}
			if !strings.HasPrefix(typed.where, "line ") {
				t.Fatalf("APDU %d says where as %q", i+1, typed.where)
			}
		}
	})
}
