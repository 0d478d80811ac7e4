package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"ssstation/station/api"
	"ssstation/station/config"
)

// multi collects a repeated flag.
type multi []string

func (m *multi) String() string     { return fmt.Sprint([]string(*m)) }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// tokenVerb is `stationd token add`: api.NewToken makes the token and its
// record; the record (hash only) is added to the configuration file's
// daemon.tokens and the token is printed once on standard output.
func tokenVerb(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "add" {
		return usageError{"usage: stationd token add --name NAME --role ROLE [--origin https://…] [--config FILE]"}
	}
	fs := flag.NewFlagSet("token add", flag.ContinueOnError)
	name := fs.String("name", "", "the token's name (one word; it goes into the audit trail)")
	role := fs.String("role", "", "counter, bank, technician or admin")
	cfgPath := fs.String("config", "", "configuration file (default $SSSTATION_CONFIG or "+config.DefaultPath+")")
	var origins multi
	fs.Var(&origins, "origin", "an exact browser origin allowed to use the token (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	path := *cfgPath
	if path == "" {
		path = os.Getenv("SSSTATION_CONFIG")
	}
	if path == "" {
		path = config.DefaultPath
	}
	tok, rec, err := api.NewToken(*name, *role, origins)
	if err != nil {
		return usageError{err.Error()}
	}
	if err := addTokenToConfig(path, config.TokenConfig{Name: rec.Name, Role: string(rec.Role), Hash: rec.Hash, Origins: rec.Origins}); err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// addTokenToConfig rewrites the configuration file with the record added,
// keeping every other setting as it is (the file is edited as JSON, not
// round-tripped through the Config type). The file is replaced atomically.
func addTokenToConfig(path string, rec config.TokenConfig) error {
	doc := map[string]json.RawMessage{}
	mode := os.FileMode(0o600)
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("config: %w", err)
	}
	daemonSec := map[string]json.RawMessage{}
	if raw, ok := doc["daemon"]; ok {
		if err := json.Unmarshal(raw, &daemonSec); err != nil {
			return fmt.Errorf("config %s: daemon: %w", path, err)
		}
	}
	var tokens []config.TokenConfig
	if raw, ok := daemonSec["tokens"]; ok {
		if err := json.Unmarshal(raw, &tokens); err != nil {
			return fmt.Errorf("config %s: daemon.tokens: %w", path, err)
		}
	}
	for _, t := range tokens {
		if t.Name == rec.Name {
			return usageError{fmt.Sprintf("a token named %q exists already", rec.Name)}
		}
	}
	tokens = append(tokens, rec)
	var err error
	if daemonSec["tokens"], err = json.Marshal(tokens); err != nil {
		return err
	}
	if doc["daemon"], err = json.Marshal(daemonSec); err != nil {
		return err
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".station.json.*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(out, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
