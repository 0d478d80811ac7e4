package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// DefaultListen is stationd's documented address: loopback only, port 18420.
const DefaultListen = "127.0.0.1:18420"

// DaemonConfig is stationd's section of station.json ("daemon").
type DaemonConfig struct {
	// Listen is the HTTP address (DefaultListen when empty). Anything but
	// loopback is a deliberate choice.
	Listen string `json:"listen,omitempty"`
	// Store is the bbolt file (DataDir/station.db when empty).
	Store string `json:"store,omitempty"`
	// Readers maps PC/SC reader names to stable ids and roles.
	Readers []ReaderConfig `json:"readers,omitempty"`
	// QueueSize bounds the operations waiting per reader (4 when zero).
	QueueSize int `json:"queue_size,omitempty"`
	// ShutdownGrace bounds how long SIGTERM waits for the operation in
	// progress ("30s" when empty).
	ShutdownGrace string `json:"shutdown_grace,omitempty"`
	// LogFormat is "json" (default; "console" on a terminal when empty) or "console".
	LogFormat string `json:"log_format,omitempty"`
	// LogLevel is a zerolog level name ("info" when empty).
	LogLevel string `json:"log_level,omitempty"`
	// Tokens are the API's callers; only hashes are kept.
	Tokens []TokenConfig `json:"tokens,omitempty"`
}

// ReaderConfig maps one reader. Name is the exact PC/SC name, or a unique
// part of it.
type ReaderConfig struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	Role string `json:"role"` // card, psam, ignore
}

// TokenConfig is one API token: its hash (never the token), its role and
// the exact browser origins allowed to use it.
type TokenConfig struct {
	Name    string   `json:"name"`
	Role    string   `json:"role"`
	Hash    string   `json:"sha256"` // hex SHA-256 of the token
	Origins []string `json:"origins,omitempty"`
}

// StorePath is the store file's path.
func (c *Config) StorePath() string {
	if c.Daemon.Store != "" {
		return c.Daemon.Store
	}
	return filepath.Join(c.DataDir, "station.db")
}

// Grace is the shutdown bound.
func (d DaemonConfig) Grace() time.Duration {
	if g, err := time.ParseDuration(d.ShutdownGrace); err == nil && g > 0 {
		return g
	}
	return 30 * time.Second
}

var readerIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Validate checks the daemon section.
func (d DaemonConfig) Validate() error {
	var probs []string
	ids := map[string]bool{}
	for i, r := range d.Readers {
		if r.Name == "" {
			probs = append(probs, fmt.Sprintf("daemon.readers[%d]: name is empty", i))
		}
		if !readerIDPattern.MatchString(r.ID) {
			probs = append(probs, fmt.Sprintf("daemon.readers[%d]: id %q is not 1-32 of a-z, 0-9 and '-'", i, r.ID))
		}
		if ids[r.ID] {
			probs = append(probs, fmt.Sprintf("daemon.readers[%d]: id %q used twice", i, r.ID))
		}
		ids[r.ID] = true
		switch r.Role {
		case "card", "psam", "ignore":
		default:
			probs = append(probs, fmt.Sprintf("daemon.readers[%d]: role %q is not card, psam or ignore", i, r.Role))
		}
	}
	if d.QueueSize < 0 || d.QueueSize > 64 {
		probs = append(probs, "daemon.queue_size is 1 to 64 (0: the default, 4)")
	}
	switch d.LogFormat {
	case "", "json", "console":
	default:
		probs = append(probs, fmt.Sprintf("daemon.log_format %q is not json or console", d.LogFormat))
	}
	if d.ShutdownGrace != "" {
		if g, err := time.ParseDuration(d.ShutdownGrace); err != nil || g <= 0 {
			probs = append(probs, fmt.Sprintf("daemon.shutdown_grace %q is not a duration such as 30s", d.ShutdownGrace))
		}
	}
	names := map[string]bool{}
	for i, t := range d.Tokens {
		if t.Name == "" || names[t.Name] {
			probs = append(probs, fmt.Sprintf("daemon.tokens[%d]: the name is empty or used twice", i))
		}
		names[t.Name] = true
		if h, err := hex.DecodeString(t.Hash); err != nil || len(h) != 32 {
			probs = append(probs, fmt.Sprintf("daemon.tokens[%d] (%s): sha256 is not 64 hex digits", i, t.Name))
		}
	}
	if len(probs) > 0 {
		return errors.New(strings.Join(probs, "; "))
	}
	return nil
}
