package main

import (
	"context"
	"fmt"
	"sort"

	profiles "ssstation/firmware-profiles"
)

func init() {
	register("profile", "firmware profiles: list | show NAME | lint FILE", cmdProfile)
}

func cmdProfile(ctx context.Context, env *cli, args []string) error {
	if len(args) == 0 {
		return usagef("sscard profile list|show NAME|lint FILE")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("profile " + sub)
	asJSON := fs.Bool("json", false, "print JSON")
	cfgPath := fs.String("config", "", "station configuration file (for its profiles_dir)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if sub == "lint" {
		if fs.NArg() == 0 {
			return usagef("sscard profile lint FILE...")
		}
		bad := 0
		for _, path := range fs.Args() {
			errs := profiles.Lint(path)
			for _, e := range errs {
				fmt.Fprintln(env.stdout, e)
			}
			if len(errs) == 0 {
				fmt.Fprintf(env.stdout, "%s: ok\n", path)
			}
			bad += len(errs)
		}
		if bad > 0 {
			return fmt.Errorf("%d problem(s) found", bad)
		}
		return nil
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	set, err := cfg.Profiles()
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		if *asJSON {
			type row struct {
				Name, SpecVersion, Algorithm, Protocol, Source string
			}
			var rows []row
			for _, p := range set.List() {
				rows = append(rows, row{p.Name, p.SpecVersion, p.Crypto.Algorithm, string(p.Protocol), p.SourceFile})
			}
			return writeJSON(env.stdout, rows)
		}
		for _, p := range set.List() {
			fmt.Fprintf(env.stdout, "%-16s spec %s  %-4s %s  %s\n", p.Name, p.SpecVersion, p.Crypto.Algorithm, p.Protocol, p.SourceFile)
		}
		return nil
	case "show":
		if fs.NArg() != 1 {
			return usagef("sscard profile show NAME")
		}
		p, ok := set.Get(fs.Arg(0))
		if !ok {
			return usagef("no profile %q (sscard profile list)", fs.Arg(0))
		}
		if *asJSON {
			return writeJSON(env.stdout, p)
		}
		printProfile(env, p)
		return nil
	}
	return usagef("unknown profile verb %q: list, show or lint", sub)
}

func printProfile(env *cli, p *profiles.Profile) {
	w := env.stdout
	fmt.Fprintf(w, "%s: spec %s, %s, %s (%s)\n%s\n\n", termSafe(p.Name), termSafe(p.SpecVersion), p.Crypto.Algorithm, p.Protocol, termSafe(p.SourceFile), termSafeLines(p.Description))
	for _, a := range p.ATR {
		fmt.Fprintf(w, "ATR     % X  mask % X  priority %d\n", a.Pattern, a.Mask, a.Priority)
	}
	fmt.Fprintf(w, "Select  3F00 first: %v, SSSE AID %X, EF P1 %02X\n", p.Select.MFFirst, p.Select.SSSEAID, p.Select.EFP1)
	for _, fname := range []string{"EF05", "EF06"} {
		f := p.Files[fname]
		if f == nil {
			continue
		}
		fmt.Fprintf(w, "%s    read %s, write %s\n", fname, f.Read, f.Write)
		for _, r := range f.Records {
			acc := ""
			if r.Read != nil {
				acc = " read " + r.Read.String()
			}
			fmt.Fprintf(w, "  record %d  tag %02X  %-12s %-2s %3d%s\n", r.Number, r.Tag, r.Item, r.Type, r.Length, acc)
		}
	}
	fmt.Fprintf(w, "PIN     %d-%d digits, %d tries, tries readable without spending one: %v\n", p.PIN.MinLength, p.PIN.MaxLength, p.PIN.Tries, p.PIN.RetriesByEmptyVerify)
	fmt.Fprintf(w, "Keys    %v, diversification %s %v, MAC %s\n", p.Crypto.Keys, p.Crypto.Diversification.Scheme, p.Crypto.Diversification.Levels, p.Crypto.MAC.Scheme)
	for _, name := range sortedTemplateNames(p) {
		t := p.Commands[name]
		fmt.Fprintf(w, "Command %-28s %s\n        %s\n", name, termSafe(t.Text), termSafe(t.Source))
	}
	fmt.Fprintf(w, "Read-info minimum APDUs: %d\n", p.ReadInfoMinAPDUs)
	fmt.Fprintf(w, "Assumptions (%d):\n", len(p.Assumptions))
	for _, a := range p.Assumptions {
		fmt.Fprintf(w, "  %s: %s\n", termSafe(a.ID), termSafeLines(a.Text))
	}
}

func sortedTemplateNames(p *profiles.Profile) []string {
	names := make([]string, 0, len(p.Commands))
	for n := range p.Commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
