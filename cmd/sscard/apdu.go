package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
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
	Redacted bool     `json:"redacted,omitempty"`
	Trace    []string `json:"trace,omitempty"`
}

// Limits of --from: a file or a pipe that never ends must not grow sscard
// without bound before anything is sent.
const (
	maxAPDULines   = 4096
	maxAPDULineLen = 2*(4+3+apdu.MaxExtendedData+2)*3/2 + 1024 // spaced hex of the longest APDU, and a comment
	maxAPDUInput   = 4 << 20                                   // all of --from: a few extended APDUs, thousands of short ones
)

// secretINS are the instructions whose data (and answer) is a PIN, a PIN
// block or an authentication cryptogram: redacted in every trace and in
// --json, whatever the class byte (84 24 is PIN UNBLOCK with a MAC).
var secretINS = map[byte]string{
	0x20: "VERIFY",
	0x21: "VERIFY",
	0x24: "CHANGE REFERENCE DATA",
	0x2C: "RESET RETRY COUNTER",
	0x5E: "RELOAD PIN",
	0x82: "EXTERNAL AUTHENTICATE",
	0x86: "GENERAL AUTHENTICATE",
	0x87: "GENERAL AUTHENTICATE",
	0x88: "INTERNAL AUTHENTICATE",
}

// carriesPIN reports a command whose data is a PIN: it must not come from
// the command line (every user sees it in ps, the shell keeps it), and the
// card is reset after it so that a verified PIN does not outlive sscard.
func carriesPIN(c apdu.Command) bool {
	switch c.INS {
	case 0x20, 0x21:
		return len(c.Data) > 0 // VERIFY without data only asks for the tries left
	case 0x24, 0x2C, 0x5E:
		return true
	}
	return false
}

// typedAPDU is one APDU as the user gave it.
type typedAPDU struct {
	where string // "APDU 2" or "line 7 of FILE"
	raw   []byte
	cmd   apdu.Command
}

func cmdAPDU(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("apdu")
	reader := fs.String("reader", "", "reader: a name, an index from `sscard readers`, or a unique part of a name")
	asJSON := fs.Bool("json", false, "print JSON")
	verbose := fs.Bool("v", false, "print every APDU exchanged (GET RESPONSE and resends too)")
	exclusive := fs.Bool("exclusive", false, "connect in exclusive mode")
	from := fs.String("from", "", fmt.Sprintf("read APDUs from this file, one per line (- for standard input; at most %d); # starts a comment. PIN commands must come this way", maxAPDULines))
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// Everything is checked before anything is sent: a bad third APDU must
	// not leave the card half-way through a sequence.
	var cmds []typedAPDU
	for i, h := range fs.Args() {
		t, err := parseTypedAPDU(fmt.Sprintf("APDU %d", i+1), h)
		if err != nil {
			return err
		}
		if carriesPIN(t.cmd) {
			return usagef("%s is a %s carrying a PIN: a command line is visible to every user of this machine and kept in the shell's history; give it on standard input instead: sscard apdu --reader R --from - (then type it)", t.where, secretINS[t.cmd.INS])
		}
		cmds = append(cmds, t)
	}
	if *from != "" {
		more, err := readAPDULines(env, *from)
		if err != nil {
			return err
		}
		cmds = append(cmds, more...)
	}
	if len(cmds) == 0 {
		return usagef("give at least one APDU in hex, e.g. sscard apdu --reader 0 00A4040000")
	}
	// The bytes of PIN and authentication commands are zeroed once sent.
	// Best effort only: the hex text they were typed as is a Go string (the
	// line read from --from), which cannot be cleared and lives until the
	// garbage collector reuses it; sscard is a short-lived process.
	defer func() {
		for _, t := range cmds {
			if t.cmd.Sensitive {
				clear(t.raw)
				clear(t.cmd.Data)
			}
		}
	}()
	pinCommand := false
	for i := range cmds {
		if name, ok := secretINS[cmds[i].cmd.INS]; ok {
			cmds[i].cmd.Sensitive, cmds[i].cmd.Name = true, name
		}
		pinCommand = pinCommand || carriesPIN(cmds[i].cmd)
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
	if err := checkSendable(cmds, card.MaxAPDUData()); err != nil {
		return err
	}

	var results []apduResultJSON
	err = card.Transaction(ctx, func(ctx context.Context) error {
		if pinCommand {
			// Asked before the first APDU, so a PIN verified here never
			// outlives the transaction, whatever happens in it.
			card.ResetAtEnd()
		}
		for _, t := range cmds {
			trace = trace[:0]
			resp, err := card.Transmit(ctx, t.cmd)
			if err != nil {
				return err
			}
			r := apduResultJSON{Command: spaced(t.raw), Response: spaced(resp.Data), SW: resp.SW.String(), Meaning: resp.SW.Meaning()}
			if t.cmd.Sensitive {
				r.Command, r.Redacted = pcsc.RedactCommand(t.raw), true
				if len(resp.Data) > 0 {
					r.Response = fmt.Sprintf("[%d bytes redacted]", len(resp.Data))
				}
			}
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
	if pinCommand && !*asJSON {
		fmt.Fprintln(env.stdout, "(the card was reset after the PIN command: its verification does not outlive sscard)")
	}
	if *asJSON {
		out := map[string]any{"reader": name, "atr": fmt.Sprintf("%X", card.ATR()), "protocol": pcsc.ProtocolName(card.Protocol()), "results": results}
		if pinCommand {
			out["card_reset"] = true
		}
		if err != nil {
			out["error"] = err.Error()
		}
		if werr := writeJSON(env.stdout, out); werr != nil {
			return werr
		}
	}
	return err
}

// checkSendable refuses what the connection would not carry as typed: an
// APDU typed in the extended form that fits the short one (it would be
// re-encoded), an extended APDU on a connection without extended lengths
// (its Le would be cut or its data chained under another class byte), and
// data longer than one APDU carries.
func checkSendable(cmds []typedAPDU, maxData int) error {
	for _, t := range cmds {
		enc, err := t.cmd.Bytes()
		if err != nil {
			return usagef("%s: %v", t.where, err)
		}
		if !bytes.Equal(enc, t.raw) {
			return usagef("%s is written with extended length fields but fits a short APDU; sscard sends APDUs as typed: write it in the short form", t.where)
		}
		if t.cmd.Extended() && maxData <= apdu.MaxShortData {
			return usagef("%s is an extended APDU, and this connection takes short APDUs only (the reader or the card lacks extended lengths, or the protocol is T=0); sscard does not split or chain what you typed", t.where)
		}
		if len(t.cmd.Data) > maxData {
			return usagef("%s has %d data bytes; this connection carries at most %d per APDU; sscard does not chain what you typed", t.where, len(t.cmd.Data), maxData)
		}
	}
	return nil
}

// parseTypedAPDU reads one APDU in hex: spaces, tabs, ':' and '-' between
// digits are allowed, and so is a 0x before each byte or the whole. Its
// errors say where, never what: the line may hold a PIN.
func parseTypedAPDU(where, s string) (typedAPDU, error) {
	t := typedAPDU{where: where}
	if strings.HasPrefix(s, "\uFEFF") {
		return t, usagef("%s starts with a byte order mark (BOM): save the file as plain text (UTF-8 without BOM)", where)
	}
	if looksLikeFlag(s) {
		return t, usagef("%s looks like a flag, not hex: give flags before the APDUs", where)
	}
	var digits []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == ':' || c == '-':
		case c == '0' && i+1 < len(s) && (s[i+1] == 'x' || s[i+1] == 'X') && len(digits)%2 == 0:
			i++ // 0x before a byte
		case c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			digits = append(digits, c)
		default:
			return t, usagef("%s: character %d is not a hex digit", where, i+1)
		}
	}
	if len(digits) == 0 {
		return t, usagef("%s is empty", where)
	}
	if len(digits)%2 != 0 {
		return t, usagef("%s has an odd number of digits (%d)", where, len(digits))
	}
	if len(digits)/2 > 4+3+apdu.MaxExtendedData+2 {
		return t, usagef("%s: %d bytes is longer than the longest extended APDU (%d data bytes at most)", where, len(digits)/2, apdu.MaxExtendedData)
	}
	t.raw = make([]byte, len(digits)/2)
	for i := range t.raw {
		t.raw[i] = unhex(digits[2*i])<<4 | unhex(digits[2*i+1])
	}
	c, err := apdu.ParseCommand(t.raw)
	if err != nil {
		return t, usagef("%s: %v", where, err)
	}
	t.cmd = c
	return t, nil
}

// looksLikeFlag: a leading '-' and a letter no hex digit is ("-v",
// "--reader=0"); "-00 A4" is hex with a separator in front.
func looksLikeFlag(s string) bool {
	if !strings.HasPrefix(s, "-") {
		return false
	}
	name, _, _ := strings.Cut(strings.TrimLeft(s, "-"), "=")
	if name == "" {
		return false
	}
	for _, c := range name {
		if c >= 'g' && c <= 'z' || c >= 'G' && c <= 'Z' {
			return true
		}
	}
	return false
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// readAPDULines reads --from: one APDU per line, # to the end of a line is
// a comment, blank lines are skipped. It reads line by line (a pipe that
// never ends is never slurped) and stops with an error at maxAPDULines
// APDUs, a line longer than maxAPDULineLen or maxAPDUInput bytes in all:
// every APDU is checked before the first is sent, so the input is bounded.
func readAPDULines(env *cli, path string) ([]typedAPDU, error) {
	var r io.Reader = env.stdin
	name := "standard input"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, usagef("%v", err)
		}
		defer f.Close()
		r, name = f, path
	}
	var out []typedAPDU
	lr := &io.LimitedReader{R: r, N: maxAPDUInput + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 1<<16), maxAPDULineLen)
	n := 0
	for sc.Scan() {
		n++
		line, _, _ := strings.Cut(sc.Text(), "#")
		if n == 1 {
			if strings.HasPrefix(line, "\uFEFF") {
				return nil, usagef("%s starts with a byte order mark (BOM): save it as plain text (UTF-8 without BOM)", name)
			}
		}
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		if lr.N <= 0 {
			return nil, usagef("%s is longer than %d bytes: split it", name, maxAPDUInput)
		}
		if len(out) == maxAPDULines {
			return nil, usagef("%s has more than %d APDUs: split it", name, maxAPDULines)
		}
		t, err := parseTypedAPDU(fmt.Sprintf("line %d of %s", n, name), line)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if lr.N <= 0 {
		return nil, usagef("%s is longer than %d bytes: split it", name, maxAPDUInput)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, usagef("line %d of %s is longer than %d characters, more than the longest APDU", n+1, name, maxAPDULineLen)
		}
		return nil, usagef("reading %s: %v", name, err)
	}
	if len(out) == 0 {
		return nil, usagef("%s ended before any APDU (it is empty, or holds only comments)", name)
	}
	return out, nil
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
