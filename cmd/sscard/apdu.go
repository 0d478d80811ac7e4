package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
)

func init() {
	register("apdu", "send APDUs to a card and print the answers", cmdAPDU)
}

type apduResultJSON struct {
	Command  string   `json:"command"`
	Response string   `json:"response"`
	SW       string   `json:"sw"`
	Meaning  string   `json:"meaning"`
	Trace    []string `json:"trace,omitempty"`
}

func cmdAPDU(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("apdu")
	reader := fs.String("reader", "", "reader: a name, an index from `sscard readers`, or a unique part of a name")
	asJSON := fs.Bool("json", false, "print JSON")
	verbose := fs.Bool("v", false, "print every APDU exchanged (GET RESPONSE and resends too)")
	exclusive := fs.Bool("exclusive", false, "connect in exclusive mode")
	from := fs.String("from", "", "read APDUs from this file, one per line (- for standard input); # starts a comment")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	hexes := fs.Args()
	if *from != "" {
		lines, err := readAPDULines(env, *from)
		if err != nil {
			return err
		}
		hexes = append(hexes, lines...)
	}
	if len(hexes) == 0 {
		return usagef("give at least one APDU in hex, e.g. sscard apdu --reader 0 00A4040000")
	}
	// Everything is checked before anything is sent: a bad third APDU must
	// not leave the card half-way through a sequence.
	cmds := make([]apdu.Command, 0, len(hexes))
	for i, h := range hexes {
		raw, err := apdu.ParseHex(h)
		if err != nil {
			return usagef("APDU %d: %v", i+1, err)
		}
		if len(raw) > 4+3+apdu.MaxExtendedData+2 {
			return usagef("APDU %d: %d bytes is longer than the longest extended APDU (%d data bytes at most)", i+1, len(raw), apdu.MaxExtendedData)
		}
		c, err := apdu.ParseCommand(raw)
		if err != nil {
			return usagef("APDU %d (%s): %v", i+1, abbreviated(raw), err)
		}
		cmds = append(cmds, c)
	}

	pc, err := pcsc.Establish()
	if err != nil {
		return fmt.Errorf("cannot reach the smart card service (is pcscd running?): %w", err)
	}
	defer pc.Release()
	name, err := resolveReader(pc, *reader)
	if err != nil {
		return err
	}
	share := pcsc.ShareShared
	if *exclusive {
		share = pcsc.ShareExclusive
	}
	var trace []pcsc.TraceEvent
	card, err := pc.Connect(ctx, name, pcsc.ConnectOptions{Share: share, OnClose: pcsc.LeaveCard,
		Tracer: func(ev pcsc.TraceEvent) { trace = append(trace, ev) }})
	if err != nil {
		return err
	}
	defer card.Close()

	var results []apduResultJSON
	err = card.Transaction(ctx, func(ctx context.Context) error {
		for _, c := range cmds {
			trace = trace[:0]
			raw, _ := c.Bytes()
			resp, err := card.Transmit(ctx, c)
			if err != nil {
				return err
			}
			r := apduResultJSON{Command: spaced(raw), Response: spaced(resp.Data), SW: resp.SW.String(), Meaning: resp.SW.Meaning()}
			if *verbose {
				for _, ev := range trace {
					r.Trace = append(r.Trace, ev.String())
				}
			}
			results = append(results, r)
			if !*asJSON {
				printAPDUResult(env, r)
			}
		}
		return nil
	})
	if *asJSON {
		out := map[string]any{"reader": name, "atr": fmt.Sprintf("%X", card.ATR()), "protocol": pcsc.ProtocolName(card.Protocol()), "results": results}
		if err != nil {
			out["error"] = err.Error()
		}
		if werr := writeJSON(env.stdout, out); werr != nil {
			return werr
		}
	}
	return err
}

func readAPDULines(env *cli, path string) ([]string, error) {
	var r io.Reader = env.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, usagef("%v", err)
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, usagef("reading %s: %v", path, err)
	}
	return out, nil
}

// abbreviated shows a long APDU by its head and length, so an error about
// it stays readable.
func abbreviated(raw []byte) string {
	if len(raw) <= 24 {
		return spaced(raw)
	}
	return fmt.Sprintf("%s ... (%d bytes)", spaced(raw[:16]), len(raw))
}

func printAPDUResult(env *cli, r apduResultJSON) {
	if len(r.Trace) > 0 {
		for _, t := range r.Trace {
			fmt.Fprintln(env.stdout, t)
		}
	}
	fmt.Fprintf(env.stdout, "> %s\n", r.Command)
	if r.Response != "" {
		fmt.Fprintf(env.stdout, "< %s\n", r.Response)
	}
	fmt.Fprintf(env.stdout, "  SW %s: %s\n", r.SW, r.Meaning)
}
