// Package config is the station's configuration file: who this terminal
// is (for iReadCardBas), where firmware-profile overrides live, and which
// key provider computes cryptograms. Both stationd and sscard read it.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
)

// DefaultPath is where the station looks when no --config is given and
// SSSTATION_CONFIG is unset.
const DefaultPath = "/etc/ssstation/station.json"

// Config is the station's configuration.
type Config struct {
	// TerminalNo and DeviceNo close every iReadCardBas string (card-reference §7).
	TerminalNo string `json:"terminal_no"`
	DeviceNo   string `json:"device_no"`
	// ProfilesDir overrides and extends the built-in firmware profiles.
	ProfilesDir string `json:"profiles_dir,omitempty"`
	// Keys chooses the key provider.
	Keys KeysConfig `json:"keys"`
	// DataDir holds the journal and the audit store.
	DataDir string `json:"data_dir,omitempty"`
}

// KeysConfig chooses between the software keystore (development) and a
// PSAM card in a reader (production: keys never reach the host).
type KeysConfig struct {
	Provider string `json:"provider"` // "software" or "psam"
	// File is the software keystore (mode 0600), for provider "software".
	File string `json:"file,omitempty"`
	// PSAMReader names the reader holding the PSAM, for provider "psam".
	PSAMReader string `json:"psam_reader,omitempty"`
	// PSAMKeyTable maps the station's key names to the PSAM's key usage
	// codes and indexes (docs/psam.md); empty: the project's default table.
	PSAMKeyTable string `json:"psam_key_table,omitempty"`
}

// Default is what a fresh station runs with: the test keys, clearly marked.
func Default() *Config {
	return &Config{TerminalNo: "000000000000", DeviceNo: "ssstation", Keys: KeysConfig{Provider: "software"}, DataDir: "/var/lib/ssstation"}
}

// Load reads a configuration file; a missing file at the default path
// gives the defaults.
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
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Profiles loads the built-in profiles and the override directory.
func (c *Config) Profiles() (*profiles.Set, error) {
	if c.ProfilesDir != "" {
		return profiles.LoadDir(c.ProfilesDir)
	}
	return profiles.Builtin()
}

// KeyProvider opens the software keystore. (The PSAM provider needs a
// reader connection and is opened by the caller that owns the reader.)
func (c *Config) SoftwareKeys() (keys.Provider, error) {
	switch c.Keys.Provider {
	case "", "software":
		if c.Keys.File == "" {
			return keys.NewTestKeystore(), nil
		}
		return keys.LoadSoftwareKeystore(c.Keys.File)
	}
	return nil, fmt.Errorf("config: key provider %q is not the software keystore", c.Keys.Provider)
}
