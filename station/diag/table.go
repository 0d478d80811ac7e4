package diag

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// WriteTable prints the report for a person: one section per part, the
// problems last.
func (r *Report) WriteTable(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("Station diagnostics, %s", r.Time.Format("2006-01-02 15:04:05 UTC"))
	p("")
	if r.Service.Reachable {
		p("PC/SC service     reachable, %d reader(s)", r.Service.Readers)
	} else {
		p("PC/SC service     NOT REACHABLE: %s", r.Service.Error)
	}
	for _, rr := range r.Readers {
		p("")
		p("Reader            %s (%s)", rr.Name, rr.Role)
		if a := rr.Attributes; a != nil {
			p("  vendor          %s", orDash(strings.TrimSpace(a.VendorName+" "+a.IFDType)))
			p("  driver/IFD      %s", orDash(a.IFDVersion))
			if len(a.Missing) > 0 {
				p("  not reported    %s", strings.Join(a.Missing, ", "))
			}
		}
		if f := rr.Features; f != nil {
			p("  part 10         %s", orDash(strings.Join(f.Names, ", ")))
			pad := "none"
			switch {
			case f.PINPad.Verify && f.PINPad.Modify:
				pad = "verify and change"
			case f.PINPad.Verify:
				pad = "verify only"
			case f.PINPad.Modify:
				pad = "change only"
			}
			p("  PIN pad         %s", pad)
		}
		if !rr.CardPresent {
			p("  card            none")
		}
		if rr.Protocol != "" {
			p("  protocol        %s, max APDU data %d bytes", rr.Protocol, rr.MaxAPDUData)
		}
		if c := rr.Card; c != nil {
			p("  ATR             %s", c.ATR)
			if c.ATRDecoded != nil {
				var prot []string
				for _, t := range c.ATRDecoded.Protocols {
					prot = append(prot, t.String())
				}
				p("  ATR decoded     %s, offers %s, historical %s", c.ATRDecoded.Convention, strings.Join(prot, " "), c.ATRDecoded.Historical)
			}
			if c.ATRError != "" {
				p("  ATR problem     %s", c.ATRError)
			}
			if id := c.Identification; id != nil {
				p("  profile         %s (spec %s, %s)", id.Profile, id.SpecVersion, id.Algorithm)
				p("  why             %s", id.Reason)
			}
			if c.IdentifyError != "" {
				p("  card problem    %s", c.IdentifyError)
			}
			switch {
			case c.PIN != nil && c.PIN.Blocked:
				p("  PIN             BLOCKED")
			case c.PIN != nil:
				p("  PIN             %d tries left", c.PIN.TriesLeft)
			case c.PINNote != "":
				p("  PIN             %s", c.PINNote)
			}
			for _, f := range c.Files {
				state := "answers"
				if !f.Answers {
					state = "DOES NOT ANSWER " + f.SW + f.Error
				}
				p("  file %-10s %s  (%s)", f.Name, state, f.Command)
			}
			if l := c.Latency; l != nil {
				if l.OK > 0 {
					p("  latency         %d GET CHALLENGE: min %.2f ms, median %.2f ms, max %.2f ms", l.OK, l.MinMS, l.MedianMS, l.MaxMS)
				}
				if l.Error != "" {
					p("  latency problem %s", l.Error)
				}
			}
			if t := c.Transaction; t != nil {
				if t.OK {
					p("  transaction     ok (%.2f ms)", t.MS)
				} else {
					p("  transaction     FAILED: %s", t.Error)
				}
			}
		}
		if rr.Error != "" {
			p("  problem         %s", rr.Error)
		}
	}
	p("")
	k := r.Keys
	switch {
	case !k.Configured:
		p("Keys              %s: %s", k.Provider, k.Note)
	default:
		p("Keys              %s", k.Provider)
		if k.TestKeys {
			p("  TEST KEYS       the published test keys: nothing done with them proves or protects a real card")
		}
		for _, kc := range k.Keys {
			state := "answers (" + kc.Via + ")"
			if !kc.Answers {
				state = "DOES NOT ANSWER: " + kc.Error
			}
			p("  %-15s %s %s", kc.Name, kc.Algorithm, state)
		}
	}
	if k.PSAMPresent != nil {
		p("  PSAM            %s present: %v", k.PSAMReader, *k.PSAMPresent)
	}
	if r.Config != nil {
		p("")
		p("Configuration (secrets removed)")
		keys := make([]string, 0, len(r.Config))
		for key := range r.Config {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			v, _ := json.Marshal(r.Config[key])
			p("  %-15s %s", key, v)
		}
	}
	p("")
	for _, fh := range []struct {
		name string
		h    FileHealth
	}{{"Journal", r.Journal}, {"Store", r.Store}} {
		line := fmt.Sprintf("%-17s %s", fh.name, fh.h.State)
		if fh.h.Path != "" {
			line += " (" + fh.h.Path + ")"
		}
		if fh.h.State == "ok" {
			line += fmt.Sprintf(": %d entries, %d unfinished", fh.h.Entries, fh.h.Unfinished)
			if fh.h.AuditOK != nil {
				line += fmt.Sprintf(", audit chain intact: %v", *fh.h.AuditOK)
			}
		}
		if fh.h.Detail != "" {
			line += ": " + fh.h.Detail
		}
		p("%s", line)
	}
	p("")
	if r.OK {
		p("Result            all good")
		return
	}
	p("Result            %d PROBLEM(S) FOUND", len(r.Problems))
	for _, pr := range r.Problems {
		p("  - %s", pr)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
