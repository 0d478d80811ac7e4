// Command sscard is the technician's tool for the social security card
// station: readers, events, ATRs, raw APDUs, card reading, PIN work and
// issuance. Every verb takes --json.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"ssstation/station/config"
)

// verb is one sub-command.
type verb struct {
	summary string
	run     func(ctx context.Context, env *cli, args []string) error
}

// cli carries what verbs share: where output goes and how input is read.
type cli struct {
	stdout, stderr io.Writer
	stdin          io.Reader
}

var verbs = map[string]verb{}

func register(name, summary string, run func(ctx context.Context, env *cli, args []string) error) {
	verbs[name] = verb{summary: summary, run: run}
}

// stopGrace bounds how long sscard waits, after Ctrl-C or SIGTERM, for the
// verb to finish its step and record it (the journal marks an interrupted
// operation resumable). A second signal does not wait at all.
const stopGrace = 2 * time.Second

func main() {
	env := &cli{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	// A PIN prompt turns the terminal's echo off until it returns; a forced
	// exit must not leave the shell without echo.
	if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
		if st, err := term.GetState(fd); err == nil {
			restoreTerminal = func() { _ = term.Restore(fd, st) }
		}
	}
	sigs := make(chan os.Signal, 2)
	// SIGHUP too: a terminal closed in the middle of an operation gets the
	// same settled, journaled stop as Ctrl-C.
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	os.Exit(supervise(sigs, stopGrace, env.stderr, func(ctx context.Context) int {
		return run(ctx, env, os.Args[1:])
	}))
}

// restoreTerminal puts the terminal back as sscard found it (set by main
// when standard input is a terminal).
var restoreTerminal = func() {}

// supervise runs body on a context the first signal cancels. sscard then
// waits for body to return (its step settled and recorded) for at most
// grace; a second signal, or grace running out, ends it at once. Nothing
// sscard does can keep it alive past that: not a PC/SC call stuck in the
// service, not a read from a terminal or a pipe.
func supervise(sigs <-chan os.Signal, grace time.Duration, stderr io.Writer, body func(ctx context.Context) int) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- body(ctx) }()
	var sig os.Signal
	select {
	case code := <-done:
		return code
	case sig = <-sigs:
	}
	cancel()
	notice := time.NewTimer(250 * time.Millisecond)
	defer notice.Stop()
	limit := time.NewTimer(grace)
	defer limit.Stop()
	for {
		select {
		case code := <-done:
			if code == exitOK {
				return exitOK // it finished (watch ends this way)
			}
			return signalExit(sig)
		case <-notice.C:
			fmt.Fprintln(stderr, "sscard: interrupted; finishing the current step (interrupt again to quit at once)")
		case <-sigs:
			restoreTerminal()
			fmt.Fprintln(stderr, "sscard: quitting at once")
			return signalExit(sig)
		case <-limit.C:
			restoreTerminal()
			fmt.Fprintf(stderr, "sscard: still busy %v after the interruption: quitting\n", grace)
			return signalExit(sig)
		}
	}
}

// signalExit is the shell's convention: 128 + the signal number.
func signalExit(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 128 + int(syscall.SIGINT)
}

// exitUsage and exitFailure distinguish a bad command line from a failed operation.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks errors in how the command was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// helpRequest is -h or --help: its text goes to standard output, exit 0.
type helpRequest struct{ text string }

func (h helpRequest) Error() string { return h.text }

func isHelpArg(a string) bool { return a == "-h" || a == "-help" || a == "--help" || a == "help" }

func run(ctx context.Context, env *cli, args []string) int {
	testKeysInUse.Store(false)
	if len(args) == 0 || isHelpArg(args[0]) {
		printUsage(env.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	v, ok := verbs[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "sscard: unknown verb %q\n\n", args[0])
		printUsage(env.stderr)
		return exitUsage
	}
	err := v.run(ctx, env, args[1:])
	defer func() {
		if testKeysInUse.Load() {
			fmt.Fprintln(env.stderr, "sscard: TEST KEYS: the published test keys are in use (keys.provider \"test\"); nothing done with them proves or protects a real card")
		}
	}()
	if err == nil {
		return exitOK
	}
	var help helpRequest
	if errors.As(err, &help) {
		fmt.Fprint(env.stdout, help.text)
		return exitOK
	}
	var ue usageError
	if len(args) > 1 && isHelpArg(args[1]) {
		// A verb with sub-verbs (pin, profile) took -h for a sub-verb.
		fmt.Fprintf(env.stdout, "sscard %s: %s\n(sscard %s SUB -h for the flags of each)\n", args[0], v.summary, args[0])
		return exitOK
	}
	fmt.Fprintf(env.stderr, "sscard %s: %s\n", args[0], termSafeLines(err.Error()))
	if errors.As(err, &ue) {
		return exitUsage
	}
	var coded interface{ ExitCode() int } // e.g. a damaged journal (issue.go)
	if errors.As(err, &coded) {
		return coded.ExitCode()
	}
	return exitFailure
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: sscard VERB [flags]   (each verb takes --json; sscard VERB -h for its flags)")
	fmt.Fprintln(w)
	names := make([]string, 0, len(verbs))
	for n := range verbs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, verbs[n].summary)
	}
}

// testKeysInUse is set when the configuration chose the test keys
// (noteTestKeys): every JSON document then carries "test_keys": true and
// every run ends with a TEST KEYS line on standard error.
var testKeysInUse atomic.Bool

func noteTestKeys() { testKeysInUse.Store(true) }

// loadConfig is config.Load for every verb: a station on test keys is
// noted here, so each verb's output says so without the verb knowing.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if cfg.TestKeys() {
		noteTestKeys()
	}
	return cfg, nil
}

// writeJSON prints v as indented JSON, marked when test keys are in use.
func writeJSON(w io.Writer, v any) error {
	b, err := marshalMarked(v)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// writeJSONLine prints v as one line of JSON (event streams), marked the
// same way.
func writeJSONLine(env *cli, v any) error {
	b, err := marshalMarked(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(env.stdout, string(b))
	return err
}

// marshalMarked encodes v compactly (no HTML escaping) and, with test keys
// in use, adds "test_keys": true: first in an object; an array is wrapped
// as {"test_keys": true, "items": [...]}.
func marshalMarked(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	b := bytes.TrimSpace(buf.Bytes())
	if !testKeysInUse.Load() || len(b) < 2 {
		return b, nil
	}
	const mark = `{"test_keys":true`
	switch b[0] {
	case '{':
		if bytes.Equal(b, []byte("{}")) {
			return []byte(mark + "}"), nil
		}
		return append([]byte(mark+","), b[1:]...), nil
	case '[':
		return append(append([]byte(mark+`,"items":`), b...), '}'), nil
	}
	return b, nil
}

func spaced(b []byte) string { return fmt.Sprintf("% X", b) }

// termSafe makes text from a card, a file or an error safe to print on a
// terminal: control characters (escape sequences start with one),
// bidirectional overrides and invalid UTF-8 are shown escaped (\x1b,
// \u202e), so card data can neither move the cursor, recolour the screen,
// nor hide or reorder what is printed around it. Printable text, Chinese
// names included, is left as it is.
func termSafe(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r) && r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// termSafeLines is termSafe for a message of several lines.
func termSafeLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = termSafe(l)
	}
	return strings.Join(lines, "\n")
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || unsafeRune(r) {
			return true
		}
		i += n
	}
	return false
}

// unsafeRune: C0 controls but newline and tab are still escaped (card data
// never holds them), DEL, C1 controls, and the Unicode bidirectional
// controls.
func unsafeRune(r rune) bool {
	return r < 0x20 || r == 0x7F || (r >= 0x80 && r < 0xA0) ||
		r == 0x200E || r == 0x200F || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}
