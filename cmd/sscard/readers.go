package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"ssstation/pcsc"
)

func init() {
	register("readers", "list readers, whether a card is present, and its ATR", cmdReaders)
}

type readerJSON struct {
	Reader      string `json:"reader"`
	CardPresent bool   `json:"card_present"`
	InUse       bool   `json:"in_use,omitempty"`
	Mute        bool   `json:"mute,omitempty"`
	ATR         string `json:"atr,omitempty"`
}

func cmdReaders(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("readers")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pc, err := pcsc.Establish()
	if err != nil {
		return fmt.Errorf("cannot reach the smart card service (is pcscd running?): %w", err)
	}
	defer pc.Release()
	names, err := pc.Readers()
	if err != nil {
		return err
	}
	st, err := pc.Status(names)
	if err != nil {
		return err
	}
	out := make([]readerJSON, 0, len(st))
	for _, s := range st {
		out = append(out, readerJSON{Reader: s.Reader, CardPresent: s.CardPresent, InUse: s.InUse, Mute: s.Mute, ATR: hexOrEmpty(s.ATR)})
	}
	if *asJSON {
		return writeJSON(env.stdout, map[string]any{"readers": out})
	}
	if len(out) == 0 {
		fmt.Fprintln(env.stdout, "No readers: the smart card service is running, but no reader is connected.")
		return nil
	}
	for i, r := range out {
		state := "no card"
		switch {
		case r.Mute:
			state = "card present but mute (no answer to reset)"
		case r.CardPresent:
			state = "card present"
		}
		if r.InUse {
			state += ", in use"
		}
		fmt.Fprintf(env.stdout, "%d: %s\n   %s", i, r.Reader, state)
		if r.ATR != "" {
			fmt.Fprintf(env.stdout, ", ATR %s", r.ATR)
		}
		fmt.Fprintln(env.stdout)
	}
	return nil
}

func hexOrEmpty(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return fmt.Sprintf("%X", b)
}

// resolveReader turns what the user typed into one reader name: an exact
// name, an index from `sscard readers`, or a unique part of a name.
func resolveReader(pc *pcsc.Context, want string) (string, error) {
	names, err := pc.Readers()
	if err != nil {
		return "", err
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no readers are connected")
	}
	if want == "" {
		if len(names) == 1 {
			return names[0], nil
		}
		return "", usagef("%d readers are connected; choose one with --reader (%s)", len(names), quoteList(names))
	}
	for _, n := range names {
		if n == want {
			return n, nil
		}
	}
	if i, err := strconv.Atoi(want); err == nil {
		if i >= 0 && i < len(names) {
			return names[i], nil
		}
		return "", usagef("reader index %d is out of range: %d readers are connected", i, len(names))
	}
	var hits []string
	for _, n := range names {
		if strings.Contains(strings.ToLower(n), strings.ToLower(want)) {
			hits = append(hits, n)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return "", usagef("unknown reader %q; connected readers: %s", want, quoteList(names))
	}
	return "", usagef("reader %q is ambiguous: %s", want, quoteList(hits))
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// newFlags makes a flag set whose errors are returned, not printed and exited.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("sscard "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			var sb strings.Builder
			fs.SetOutput(&sb)
			fs.PrintDefaults()
			return usagef("flags of %s:\n%s", fs.Name(), sb.String())
		}
		return usagef("%v", err)
	}
	return nil
}
