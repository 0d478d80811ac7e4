package conform

import (
	"fmt"
	"io"
	"strings"
)

// WriteTable prints the report for a person: one block per command (the
// bytes sent, the answer expected, the answer got, the verdict), then the
// summary. With wire, the APDUs as they crossed the wire are shown too.
func (r *Report) WriteTable(w io.Writer, wire bool) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("Conformance of the card in %q with profile %s", r.Reader, r.Profile)
	match := "matches no pattern of the profile (normal: no public list of SSSE ATRs exists)"
	if r.ATRMatches {
		match = "matches the profile's pattern"
	}
	p("ATR %s: %s", r.ATR, match)
	if !r.Keys {
		p("No key provider: the checks that need keys are replaced by the refusals the profile expects without them.")
	}
	p("")
	for _, c := range r.Checks {
		p("%3d  %-4s  %s", c.N, strings.ToUpper(c.Verdict), c.Name)
		if c.Command != "" {
			p("       sent      %s", c.Command)
		}
		if c.Expected != "" {
			p("       expected  %s", c.Expected)
		}
		if c.Got != "" {
			p("       got       %s", c.Got)
		}
		if c.Detail != "" {
			p("       why       %s", c.Detail)
		}
		if wire {
			for _, l := range c.Wire {
				p("       wire      %s", l)
			}
		}
	}
	p("")
	p("Summary: %d passed, %d failed, %d skipped", r.Summary.Pass, r.Summary.Fail, r.Summary.Skip)
	if r.OK {
		p("Result: the card conforms to profile %s", r.Profile)
		return
	}
	p("Result: NOT CONFORMING: %s", strings.Join(r.Failed, "; "))
}
