// Command cardsim puts simulated social security cards into pcscd's
// virtual readers (vsmartcard vpcd), one card per vpcd port, so that the
// station and its tests talk to them through real PC/SC.
//
//	cardsim --port 35963 [--port 35964 ...] [--card FILE|NAME | --replay FILE] [--t0]
//	        [--profiles DIR] [--host 127.0.0.1] [--control ADDR] [--verbose]
//	        [--print-image] [--list-cards]
//
// See docs/cardsim.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/control"
	"ssstation/internal/cardsim/engine"
	"ssstation/internal/cardsim/psam"
	"ssstation/internal/cardsim/replay"
	"ssstation/internal/cardsim/ssse"
	"ssstation/internal/cardsim/vpcd"
)

// options are the parsed command line. New flags add a field here and a
// line in parseFlags; card-shaping ones are read by buildCard.
type options struct {
	Ports      []int
	PSAMPorts  []int  // ports that get a PSAM instead of a card
	PSAMFile   string // PSAM image (default: the test PSAM)
	Host       string
	CardFile   string
	T0         bool
	Control    string
	Verbose    bool
	PrintImage bool
	ListCards  bool
	Profiles   string // profiles.LoadDir override directory for SSSE cards
	Replay     string // a transcript: the card answers from it (internal/cardsim/replay)
}

// portList is a repeatable --port flag; "35963,35964" works too.
type portList []int

func (p *portList) String() string {
	s := make([]string, len(*p))
	for i, v := range *p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (p *portList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q: want 1..65535", part)
		}
		for _, have := range *p {
			if have == n {
				return fmt.Errorf("port %d given twice", n)
			}
		}
		*p = append(*p, n)
	}
	return nil
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var ports portList
	fs := flag.NewFlagSet("cardsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&ports, "port", "vpcd port to put a card into (repeatable; default 35963)")
	fs.StringVar(&o.Host, "host", "127.0.0.1", "host where pcscd's vpcd listens")
	fs.StringVar(&o.CardFile, "card", "", "card image JSON file, or a built-in SSSE card name (--list-cards) (default: the built-in image)")
	fs.BoolVar(&o.T0, "t0", false, "behave as a T=0 card (atr_t0, 61xx/GET RESPONSE, 6Cxx)")
	fs.StringVar(&o.Control, "control", "", "control channel: loopback host:port, or a unix socket path (contains /)")
	fs.BoolVar(&o.Verbose, "verbose", false, "log connections and APDUs (PIN and key data hidden) to stderr")
	fs.BoolVar(&o.PrintImage, "print-image", false, "print the built-in card image JSON and exit")
	fs.BoolVar(&o.ListCards, "list-cards", false, "list the built-in SSSE cards (name, profile, state) and exit")
	var psamPorts portList
	fs.Var(&psamPorts, "psam-port", "vpcd port to put a PSAM (the issuer keys' card) into (repeatable)")
	fs.StringVar(&o.PSAMFile, "psam", "", "PSAM image JSON file (default: the built-in test PSAM, docs/psam.md)")
	fs.StringVar(&o.Profiles, "profiles", "", "directory of firmware profiles overriding or adding to the built-in ones (SSSE cards)")
	fs.StringVar(&o.Replay, "replay", "", "transcript file (sscard record): the card answers from it; unmatched commands answer 6D00 and are counted (control: stats)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cardsim --port 35963 [--port ...] [--card FILE|NAME | --replay FILE] [--psam-port 35964 [--psam FILE]] [--t0] [--profiles DIR] [--host 127.0.0.1] [--control ADDR] [--list-cards]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.Ports = ports
	o.PSAMPorts = psamPorts
	if o.Replay != "" && (o.CardFile != "" || o.T0) {
		return o, errors.New("--replay: the transcript is the card (its ATR and protocol too): not with --card or --t0")
	}
	if len(o.Ports) == 0 && len(o.PSAMPorts) == 0 {
		o.Ports = []int{35963}
	}
	for _, p := range o.PSAMPorts {
		for _, q := range o.Ports {
			if p == q {
				return o, fmt.Errorf("port %d given for both a card and a PSAM", p)
			}
		}
	}
	return o, nil
}

// buildCard makes one card as the options describe. It is called once per
// port, so every slot has its own card state.
func buildCard(o options) (vpcd.Card, error) {
	if o.Replay != "" {
		return replay.Load(o.Replay)
	}
	img := engine.DefaultImage()
	if o.CardFile != "" {
		// An SSSE card (package ssse) runs under its firmware profile: an
		// image file with a "profile" field, or a built-in card name.
		var simg *ssse.Image
		var err error
		if b, rerr := os.ReadFile(o.CardFile); rerr == nil && ssse.IsImage(b) {
			if simg, err = ssse.LoadImageFile(o.CardFile); err != nil {
				return nil, err
			}
		} else if rerr != nil {
			simg, _ = ssse.Builtin(o.CardFile) // nil if not one: LoadImage reports the file
		}
		if simg != nil {
			if o.T0 {
				return nil, errors.New("--t0: an SSSE card's protocol comes from its firmware profile")
			}
			set, err := profiles.Builtin()
			if o.Profiles != "" {
				set, err = profiles.LoadDir(o.Profiles)
			}
			if err != nil {
				return nil, err
			}
			card, err := ssse.New(simg, set)
			if err != nil {
				return nil, fmt.Errorf("card %s: %w", o.CardFile, err)
			}
			return card, nil
		}
		if img, err = engine.LoadImage(o.CardFile); err != nil {
			return nil, err
		}
	}
	card, err := engine.New(img)
	if err != nil {
		return nil, err
	}
	if o.T0 {
		return engine.T0(card), nil
	}
	return card, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "cardsim:", err)
		return 2
	}
	if o.PrintImage {
		stdout.Write(engine.DefaultImageJSON())
		return 0
	}
	if o.ListCards {
		for _, name := range ssse.BuiltinNames() {
			img, err := ssse.Builtin(name)
			if err != nil {
				fmt.Fprintln(stderr, "cardsim:", err)
				return 1
			}
			fmt.Fprintf(stdout, "%-13s %-14s %s\n", name, img.Profile, img.State)
		}
		return 0
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := serve(ctx, o, stderr); err != nil {
		fmt.Fprintln(stderr, "cardsim:", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, o options, stderr io.Writer) error {
	logger := log.New(stderr, "cardsim: ", log.Lmicroseconds)
	slots := make([]*vpcd.Slot, 0, len(o.Ports))
	for _, p := range o.Ports {
		card, err := buildCard(o)
		if err != nil {
			return err
		}
		s := vpcd.NewSlot(net.JoinHostPort(o.Host, strconv.Itoa(p)), card)
		if o.Verbose {
			s.Logf = logger.Printf
			if rc, ok := card.(*replay.Card); ok {
				rc.SetLogf(logger.Printf)
			}
		}
		slots = append(slots, s)
	}
	for _, p := range o.PSAMPorts {
		var img *psam.Image
		if o.PSAMFile != "" {
			var err error
			if img, err = psam.LoadImage(o.PSAMFile); err != nil {
				return err
			}
		}
		card, err := psam.New(img)
		if err != nil {
			return err
		}
		s := vpcd.NewSlot(net.JoinHostPort(o.Host, strconv.Itoa(p)), card)
		if o.Verbose {
			s.Logf = logger.Printf
		}
		slots = append(slots, s)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	if o.Control != "" {
		ln, err := control.Listen(o.Control)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := control.Serve(ctx, ln, slots); err != nil {
				select {
				case errc <- fmt.Errorf("control: %w", err):
				default:
				}
				cancel()
			}
		}()
	}
	for _, s := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(ctx); err != nil {
				select {
				case errc <- err:
				default:
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
