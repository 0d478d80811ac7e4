// Package config is the station's configuration file: who this terminal
// is (for iReadCardBas), where firmware-profile overrides live, and which
// key provider computes cryptograms. Both stationd and sscard read it.
//
// Each part of the station has a section of its own (a struct with a
// Validate method, listed in Config.Validate), so the daemon's section is
// one field and one line more.
package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/strictjson"
)

// DefaultPath is where the station looks when no --config is given and
// SSSTATION_CONFIG is unset.
const DefaultPath = "/etc/ssstation/station.json"

// maxFileSize bounds what Load reads: a configuration is a few hundred bytes.
const maxFileSize = 1 << 20

// Config is the station's configuration.
type Config struct {
	// TerminalNo and DeviceNo close every iReadCardBas string (card-reference §7).
	TerminalNo string `json:"terminal_no"`
	DeviceNo   string `json:"device_no"`
	// ProfilesDir overrides and extends the built-in firmware profiles.
	ProfilesDir string `json:"profiles_dir,omitempty"`
	// Keys chooses the key provider.
	Keys KeysConfig `json:"keys"`
	// DataDir holds the journal and the audit store (DefaultDataDir when
	// absent; an explicit "" is an error, not the current directory).
	DataDir string `json:"data_dir,omitempty"`
	// JournalRetentionDays: finished journal entries (done, failed,
	// abandoned) older than this are pruned when the journal is opened for
	// writing; 0 means the journal's default (90 days), -1 keeps them for
	// ever. Unfinished entries are never pruned (docs/journal.md).
	JournalRetentionDays int `json:"journal_retention_days,omitempty"`
	// Daemon is stationd's section (daemon.go).
	Daemon DaemonConfig `json:"daemon,omitempty"`
}

// Key providers.
const (
	ProviderNone     = "none"     // no keys: reads only (also what an absent "keys" means)
	ProviderTest     = "test"     // the published test keys: virtual cards and demos only
	ProviderSoftware = "software" // a key file on this machine (development)
	ProviderPSAM     = "psam"     // a PSAM card in a reader (production)
)

var providers = []string{ProviderPSAM, ProviderSoftware, ProviderTest, ProviderNone}

// KeysConfig chooses the key provider. Absent, the station has none: it
// reads cards, and every operation that needs a key says so.
type KeysConfig struct {
	Provider string `json:"provider"` // "psam", "software", "test" or "none"
	// File is the key file (mode 0600), for provider "software"; for
	// provider "test" a file marked "test_keys": true may replace the
	// built-in test keys.
	File string `json:"file,omitempty"`
	// PSAMReader names the reader holding the PSAM, for provider "psam". It
	// must not be the reader of the card being worked on.
	PSAMReader string `json:"psam_reader,omitempty"`
	// PSAMKeyTable maps the station's key names to the PSAM's key usage
	// codes and indexes (docs/psam.md); empty: the project's default table.
	PSAMKeyTable string `json:"psam_key_table,omitempty"`
}

// DefaultDataDir is where the journal lives when data_dir is absent.
const DefaultDataDir = "/var/lib/ssstation"

// Default is what a station runs with when there is no configuration file:
// no key provider (reads only), placeholder terminal and device numbers.
func Default() *Config {
	return &Config{TerminalNo: "000000000000", DeviceNo: "ssstation", DataDir: DefaultDataDir}
}

// Load reads a configuration file; a missing file at the default path
// gives the defaults. The file is decoded strictly (one JSON document, no
// key twice, no unknown key) and validated.
func Load(path string) (*Config, error) {
	explicit := path != ""
	if path == "" {
		path = os.Getenv("SSSTATION_CONFIG")
		explicit = path != ""
	}
	if path == "" {
		path = DefaultPath
	}
	c := Default()
	b, err := readFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := strictjson.Decode(b, c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("%s: %d bytes, larger than %d", path, fi.Size(), maxFileSize)
	}
	return os.ReadFile(path)
}

// Validate checks every section.
func (c *Config) Validate() error {
	var probs []string
	for _, f := range []struct{ name, v string }{{"terminal_no", c.TerminalNo}, {"device_no", c.DeviceNo}} {
		if err := CheckField(f.v); err != nil {
			probs = append(probs, fmt.Sprintf("%s %v", f.name, err))
		}
	}
	if strings.TrimSpace(c.DataDir) == "" {
		probs = append(probs, `data_dir is empty: name the directory for the journal (absent means `+DefaultDataDir+`; "" is not the current directory)`)
	}
	if err := c.Keys.Validate(); err != nil {
		probs = append(probs, err.Error())
	}
	// Other sections check themselves once they have a Validate method.
	for _, sec := range []any{&c.Daemon} {
		if v, ok := sec.(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				probs = append(probs, err.Error())
			}
		}
	}
	if len(probs) > 0 {
		return errors.New(strings.Join(probs, "; "))
	}
	return nil
}

// CheckField refuses what would break an iReadCardBas string or a
// terminal: the field separator '|', control characters (escape sequences
// start with one) and Unicode format characters (bidirectional overrides).
func CheckField(v string) error {
	for i, r := range v {
		switch {
		case r == '|':
			return fmt.Errorf("contains '|', the iReadCardBas field separator (character %d)", i+1)
		case isControl(r):
			return fmt.Errorf("contains a control character U+%04X (character %d)", r, i+1)
		}
	}
	return nil
}

func isControl(r rune) bool {
	return r < 0x20 || r == 0x7F || (r >= 0x80 && r < 0xA0) ||
		r == 0x200E || r == 0x200F || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || r == 0xFEFF || r == 0xFFFD
}

// Validate checks the provider name and what it needs.
func (k *KeysConfig) Validate() error {
	switch k.Provider {
	case "", ProviderNone:
		if k.File != "" || k.PSAMReader != "" || k.PSAMKeyTable != "" {
			return fmt.Errorf(`keys: a key file or PSAM reader is given but no "provider": set it to %s`, quoteAll(providers[:3]))
		}
	case ProviderTest:
		if k.PSAMReader != "" || k.PSAMKeyTable != "" {
			return errors.New(`keys: provider "test" takes no PSAM settings`)
		}
	case ProviderSoftware:
		if k.File == "" {
			return errors.New(`keys: provider "software" needs "file", the key file (mode 0600)`)
		}
		if k.PSAMReader != "" || k.PSAMKeyTable != "" {
			return errors.New(`keys: provider "software" takes no PSAM settings`)
		}
	case ProviderPSAM:
		if strings.TrimSpace(k.PSAMReader) == "" {
			return errors.New(`keys: provider "psam" needs "psam_reader", the reader holding the PSAM (sscard readers lists them); it must not be the card's reader`)
		}
		if k.File != "" {
			return errors.New(`keys: provider "psam" takes no key "file" (the keys stay in the PSAM)`)
		}
	default:
		msg := fmt.Sprintf("keys: %q is not a key provider: use %s", k.Provider, quoteAll(providers))
		if s := closest(k.Provider, providers); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return errors.New(msg)
	}
	return nil
}

// TestKeys reports whether the configuration asks for test keys.
func (c *Config) TestKeys() bool { return c.Keys.Provider == ProviderTest }

// Profiles loads the built-in profiles and the override directory.
func (c *Config) Profiles() (*profiles.Set, error) {
	if c.ProfilesDir != "" {
		return profiles.LoadDir(c.ProfilesDir)
	}
	return profiles.Builtin()
}

// HostKeys returns the key provider that lives in this process: [keys.None]
// for "none", the test keys for "test", the key file for "software". The
// PSAM provider needs a reader connection and is opened by the caller that
// owns the reader; for "psam" HostKeys returns an error.
func (c *Config) HostKeys() (keys.Provider, error) {
	switch c.Keys.Provider {
	case "", ProviderNone:
		return keys.None, nil
	case ProviderTest:
		if c.Keys.File == "" {
			return keys.NewTestKeystore(), nil
		}
		ks, err := keys.LoadSoftwareKeystore(c.Keys.File)
		if err != nil {
			return nil, err
		}
		if !ks.IsTestKeys() {
			ks.Close()
			return nil, fmt.Errorf(`config: provider "test" with key file %s, which is not marked "test_keys": true: real keys belong to provider "software"`, c.Keys.File)
		}
		return ks, nil
	case ProviderSoftware:
		ks, err := keys.LoadSoftwareKeystore(c.Keys.File)
		if err != nil {
			return nil, err
		}
		if ks.IsTestKeys() {
			ks.Close()
			return nil, fmt.Errorf(`config: key file %s holds test keys ("test_keys": true): set "provider": "test" so that every output says so`, c.Keys.File)
		}
		return ks, nil
	}
	return nil, fmt.Errorf("config: key provider %q is not in this process", c.Keys.Provider)
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// closest is the candidate within two edits of s, if any.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(strings.TrimSpace(s)), c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
