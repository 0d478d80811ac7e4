package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	psamhost "ssstation/cardapp/keys/psam"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc"
	"ssstation/station/config"
)

// cardFlags are the flags of every verb that works on a card.
type cardFlags struct {
	reader  *string
	config  *string
	asJSON  *bool
	verbose *bool
}

func addCardFlags(fs *flag.FlagSet) *cardFlags {
	return &cardFlags{
		reader:  fs.String("reader", "", "reader: a name, an index from `sscard readers`, or a unique part of a name"),
		config:  fs.String("config", "", "station configuration file (default $SSSTATION_CONFIG or "+config.DefaultPath+")"),
		asJSON:  fs.Bool("json", false, "print JSON"),
		verbose: fs.Bool("v", false, "print the APDU trace (PINs and keys redacted) on standard error"),
	}
}

// cardEnv is what a card verb works with.
type cardEnv struct {
	cfg  *config.Config
	set  *profiles.Set
	keys keys.Provider
}

func loadCardEnv(f *cardFlags) (*cardEnv, error) {
	cfg, err := loadConfig(*f.config) // notes test keys for every output
	if err != nil {
		return nil, err
	}
	set, err := cfg.Profiles()
	if err != nil {
		return nil, err
	}
	ce := &cardEnv{cfg: cfg, set: set}
	if cfg.Keys.Provider != config.ProviderPSAM {
		// No provider configured gives keys.None: reads work, and every
		// operation that needs a key refuses before its first APDU.
		if ce.keys, err = cfg.HostKeys(); err != nil {
			return nil, err
		}
	}
	return ce, nil
}

// attachKeys connects to the PSAM when the configuration puts the issuer
// keys there: a second reader, and a connection of its own. The keys
// never leave the PSAM; the station sends it diversification data and
// gets cryptograms and MACs back. The PSAM's reader must not be the
// card's (cardReader): both connections would wait for each other's
// transaction for ever.
func (ce *cardEnv) attachKeys(ctx context.Context, pc *pcsc.Context, cardReader string) (func(), error) {
	if ce.cfg.Keys.Provider != config.ProviderPSAM {
		return func() {}, nil
	}
	name, err := resolvePSAMReader(pc, ce.cfg.Keys.PSAMReader, cardReader)
	if err != nil {
		return nil, err
	}
	var opts []psamhost.Option
	if path := ce.cfg.Keys.PSAMKeyTable; path != "" {
		table, err := psamhost.LoadKeyTable(path)
		if err != nil {
			return nil, err
		}
		opts = append(opts, psamhost.WithKeyTable(table))
	}
	card, err := pc.Connect(ctx, name, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard})
	if err != nil {
		if errors.Is(err, pcsc.ErrNoCard) || errors.Is(err, pcsc.ErrCardRemoved) {
			return nil, fmt.Errorf("no PSAM in %q (keys.psam_reader in the station configuration): put the PSAM in that reader", name)
		}
		return nil, fmt.Errorf("PSAM in %q (keys.psam_reader in the station configuration): %w", name, err)
	}
	ce.keys = psamhost.New(card, opts...)
	return func() { ce.keys.Close(); ce.keys = nil; card.Close() }, nil
}

func (ce *cardEnv) options() cardapp.Options {
	return cardapp.Options{Keys: ce.keys}
}

// withCard connects to the card, identifies it and runs body inside one
// short transaction. Everything a person types is read before this.
func withCard(ctx context.Context, env *cli, f *cardFlags, ce *cardEnv, body func(ctx context.Context, app *cardapp.App, card *pcsc.Card) error) error {
	return withSession(ctx, env, f, ce, func(ctx context.Context, card *pcsc.Card) error {
		app, err := cardapp.Identify(ctx, card, ce.set, ce.options())
		if err != nil {
			return err
		}
		return body(ctx, app, card)
	})
}

// secrets reads PINs: from the terminal without echo, or one per line from
// standard input with --pin-stdin. Never from the command line.
type secrets struct {
	env   *cli
	stdin bool
	r     *bufio.Reader
}

func (s *secrets) read(prompt string) (string, error) {
	if s.stdin {
		if s.r == nil {
			s.r = bufio.NewReader(s.env.stdin)
		}
		line, err := s.r.ReadString('\n')
		if err != nil && line == "" {
			return "", usagef("--pin-stdin: standard input ended before the %s", strings.ToLower(prompt))
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fd := int(os.Stdin.Fd())
	if f, ok := s.env.stdin.(*os.File); !ok || f != os.Stdin || !term.IsTerminal(fd) {
		return "", usagef("no terminal to type the PIN on: use --pin-stdin and give the PIN on standard input")
	}
	fmt.Fprintf(s.env.stderr, "%s: ", prompt)
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(s.env.stderr)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// withSession connects to the card (and the PSAM, where the keys are
// there) and runs body inside one transaction, without identifying the
// card (the body does).
func withSession(ctx context.Context, env *cli, f *cardFlags, ce *cardEnv, body func(ctx context.Context, card *pcsc.Card) error) error {
	pc, err := pcsc.Establish()
	if err != nil {
		return fmt.Errorf("cannot reach the smart card service (is pcscd running?): %w", err)
	}
	defer pc.Release()
	name, err := resolveReader(pc, *f.reader)
	if err != nil {
		return err
	}
	if ce != nil {
		done, err := ce.attachKeys(ctx, pc, name)
		if err != nil {
			return err
		}
		defer done()
	}
	opts := pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard}
	if *f.verbose {
		opts.Tracer = func(ev pcsc.TraceEvent) { fmt.Fprintln(env.stderr, ev.String()) }
	}
	card, err := pc.Connect(ctx, name, opts)
	if err != nil {
		if errors.Is(err, pcsc.ErrNoCard) || errors.Is(err, pcsc.ErrCardRemoved) {
			// Wrapped, so that LegacyCode gives the interface's −2.
			return fmt.Errorf("no card in %q: %w", name, pcsc.ErrNoCard)
		}
		return err
	}
	defer card.Close()
	return card.Transaction(ctx, func(ctx context.Context) error { return body(ctx, card) })
}

// flagSet lets verbs return their FlagSet with extra flags attached.
type flagSet struct{ *flag.FlagSet }

func bytesReader(b []byte) *strings.Reader { return strings.NewReader(string(b)) }
