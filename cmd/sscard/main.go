// Command sscard is the technician's tool for the social security card
// station: readers, events, ATRs, raw APDUs, and (in later verbs) card
// reading, PIN work and issuance. Every verb takes --json.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cli{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	os.Exit(run(ctx, env, os.Args[1:]))
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

func run(ctx context.Context, env *cli, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
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
	if err := v.run(ctx, env, args[1:]); err != nil {
		fmt.Fprintf(env.stderr, "sscard %s: %v\n", args[0], err)
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
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

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func spaced(b []byte) string { return fmt.Sprintf("% X", b) }
