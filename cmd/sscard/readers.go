package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
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
		fmt.Fprintf(env.stdout, "%d: %s\n   %s", i, termSafe(r.Reader), state)
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
	name, err := pickReader(names, want)
	if err != nil {
		return "", usagef("%v; connected readers: %s", err, quoteList(names))
	}
	return name, nil
}

// resolvePSAMReader finds the reader the configuration names for the PSAM
// (keys.psam_reader) and refuses the card's own reader. Its messages point
// at the configuration, not at --reader.
func resolvePSAMReader(pc *pcsc.Context, want, cardReader string) (string, error) {
	const where = "keys.psam_reader in the station configuration"
	if strings.TrimSpace(want) == "" {
		return "", fmt.Errorf("%s is empty: name the reader that holds the PSAM", where)
	}
	names, err := pc.Readers()
	if err != nil {
		return "", err
	}
	name, err := pickReader(names, want)
	if err != nil {
		return "", fmt.Errorf("PSAM reader: %v (%s); connected readers: %s", err, where, quoteList(names))
	}
	if name == cardReader {
		return "", fmt.Errorf("the PSAM reader (%s) is %q, the reader of the card itself: the PSAM needs a reader of its own; choose the card's reader with --reader, or correct the configuration", where, name)
	}
	return name, nil
}

// pickReader matches want against names: an exact name, an index, or a
// unique part of a name (case-insensitive).
func pickReader(names []string, want string) (string, error) {
	for _, n := range names {
		if n == want {
			return n, nil
		}
	}
	if i, err := strconv.Atoi(want); err == nil {
		if i >= 0 && i < len(names) {
			return names[i], nil
		}
		return "", fmt.Errorf("reader index %d is out of range: %d readers are connected", i, len(names))
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
		return "", fmt.Errorf("unknown reader %q", want)
	}
	return "", fmt.Errorf("reader %q is ambiguous: %s", want, quoteList(hits))
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
			fs.SetOutput(io.Discard)
			return helpRequest{fmt.Sprintf("usage of %s:\n%s", fs.Name(), sb.String())}
		}
		return usagef("%v", err)
	}
	return checkLateFlags(fs, args)
}

// checkLateFlags refuses a flag given after the first argument: Go's flag
// parsing stops there, so `sscard apdu 00A4... --reader 0` would send
// "--reader" as an APDU. Arguments after "--" are taken as they are.
func checkLateFlags(fs *flag.FlagSet, args []string) error {
	if slices.Contains(args[:len(args)-fs.NArg()], "--") {
		return nil
	}
	for _, a := range fs.Args() {
		if !strings.HasPrefix(a, "-") || len(a) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if fs.Lookup(name) != nil || name == "h" || name == "help" {
			return usagef("flag %s comes after the other arguments: give flags first (%s [flags] ARGS...)", a, fs.Name())
		}
	}
	return nil
}
