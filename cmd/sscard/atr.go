package main

import (
	"context"
	"fmt"
	"strings"

	"ssstation/pcsc/atr"
)

func init() {
	register("atr", "decode an ATR given in hex", cmdATR)
}

func cmdATR(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("atr")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("give the ATR in hex, e.g. sscard atr 3B 68 00 00 00 73 C8 40 12 00 90 00")
	}
	a, err := atr.ParseHex(strings.Join(fs.Args(), ""))
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.stdout, a)
	}
	fmt.Fprint(env.stdout, a.String())
	if !strings.HasSuffix(a.String(), "\n") {
		fmt.Fprintln(env.stdout)
	}
	return nil
}
