// Command stationd is the station's local service: counter and bank
// software call its HTTP API (station/api) on loopback; its readers and
// cards are driven by station/daemon.
//
//	stationd [serve] [--config FILE] [--listen ADDR] [--store FILE] ...
//	stationd token add --name NAME --role ROLE [--origin https://…] [--config FILE]
//	stationd version
//
// Settings come from the configuration file (station.json, "daemon"
// section), then environment variables, then flags: each later one wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"ssstation/station/config"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	verb := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	var err error
	switch verb {
	case "serve":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err = serve(ctx, args, stderr)
	case "token":
		err = tokenVerb(args, stdout)
	case "version":
		fmt.Fprintln(stdout, "stationd", version)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "stationd: unknown verb %q\n", verb)
		usage(stderr)
		return 2
	}
	if err != nil {
		var ue usageError
		fmt.Fprintf(stderr, "stationd %s: %v\n", verb, err)
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage:
  stationd [serve] [flags]     run the service (stationd serve -h for flags)
  stationd token add --name NAME --role counter|bank|technician|admin [--origin https://host[:port]]...
                               make a token: printed once, its hash goes into the configuration
  stationd version`)
}

// settings are the serve settings after file, environment and flags.
type settings struct {
	cfg        *config.Config
	configPath string
	listen     string
	store      string
	queue      int
	logFormat  string
	logLevel   string
	grace      time.Duration
}

// loadSettings applies the configuration file, then the environment, then
// the flags.
func loadSettings(args []string, stderr io.Writer) (*settings, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (default $SSSTATION_CONFIG or "+config.DefaultPath+")")
	listen := fs.String("listen", "", "HTTP address (env STATIOND_LISTEN; default "+config.DefaultListen+")")
	storePath := fs.String("store", "", "the bbolt store file (env STATIOND_STORE; default DATA_DIR/station.db)")
	dataDir := fs.String("data-dir", "", "data directory (env STATIOND_DATA_DIR)")
	queue := fs.Int("queue-size", 0, "operations waiting per reader (env STATIOND_QUEUE_SIZE; default 4)")
	logFormat := fs.String("log-format", "", "json or console (env STATIOND_LOG_FORMAT; default json, console on a terminal)")
	logLevel := fs.String("log-level", "", "debug, info, warn, error (env STATIOND_LOG_LEVEL; default info)")
	grace := fs.Duration("shutdown-grace", 0, "how long SIGTERM waits for the operation in progress (env STATIOND_SHUTDOWN_GRACE; default 30s)")
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return nil, err
	}
	s := &settings{cfg: cfg, configPath: *cfgPath, listen: cfg.Daemon.Listen, queue: cfg.Daemon.QueueSize,
		logFormat: cfg.Daemon.LogFormat, logLevel: cfg.Daemon.LogLevel, grace: cfg.Daemon.Grace()}
	pick := func(dst *string, env, flagVal string) {
		if v := os.Getenv(env); v != "" {
			*dst = v
		}
		if flagVal != "" {
			*dst = flagVal
		}
	}
	pick(&cfg.DataDir, "STATIOND_DATA_DIR", *dataDir)
	s.store = cfg.StorePath()
	pick(&s.store, "STATIOND_STORE", *storePath)
	pick(&s.listen, "STATIOND_LISTEN", *listen)
	pick(&s.logFormat, "STATIOND_LOG_FORMAT", *logFormat)
	pick(&s.logLevel, "STATIOND_LOG_LEVEL", *logLevel)
	if v := os.Getenv("STATIOND_QUEUE_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, usageError{"STATIOND_QUEUE_SIZE must be a positive number"}
		}
		s.queue = n
	}
	if *queue > 0 {
		s.queue = *queue
	}
	if v := os.Getenv("STATIOND_SHUTDOWN_GRACE"); v != "" {
		g, err := time.ParseDuration(v)
		if err != nil || g <= 0 {
			return nil, usageError{"STATIOND_SHUTDOWN_GRACE must be a duration such as 30s"}
		}
		s.grace = g
	}
	if *grace > 0 {
		s.grace = *grace
	}
	if s.listen == "" {
		s.listen = config.DefaultListen
	}
	if s.queue <= 0 {
		s.queue = 4
	}
	return s, nil
}

// newLogger is zerolog to stderr: JSON unless asked for console (or left
// unset on a terminal).
func newLogger(format, level string, w io.Writer) (zerolog.Logger, error) {
	lvl := zerolog.InfoLevel
	if level != "" {
		l, err := zerolog.ParseLevel(level)
		if err != nil {
			return zerolog.Nop(), usageError{fmt.Sprintf("unknown log level %q", level)}
		}
		lvl = l
	}
	console := format == "console"
	if format == "" {
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			console = true
		}
	} else if format != "json" && format != "console" {
		return zerolog.Nop(), usageError{fmt.Sprintf("unknown log format %q (json or console)", format)}
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	out := w
	if console {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Str("service", "stationd").Logger(), nil
}
