package profiles

import (
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The built-in profiles: ss-v1-3des, ss-v2-3des-t0, ss-v3-sm4.
//
//go:embed *.yaml
var builtinFS embed.FS

// Set is a registry of profiles by name.
type Set struct {
	byName map[string]*Profile
}

// Builtin loads the profiles embedded in the binary.
func Builtin() (*Set, error) {
	s := &Set{byName: map[string]*Profile{}}
	entries, err := builtinFS.ReadDir(".")
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range entries {
		data, err := builtinFS.ReadFile(e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p, err := Load(e.Name(), data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.byName[p.Name] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// LoadDir loads the built-in profiles, then every *.yaml and *.yml file in
// dir: a profile there replaces the built-in of the same name, or adds a new
// one. Any invalid file fails the whole load, so that a station never runs
// with a half-read override directory.
func LoadDir(dir string) (*Set, error) {
	s, err := Builtin()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("profiles: %w", err)
	}
	var errs []error
	from := map[string]string{}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		p, err := LoadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if other, dup := from[p.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: profile %s already defined in %s", path, p.Name, other))
			continue
		}
		from[p.Name] = path
		s.byName[p.Name] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// LoadFile loads one profile file; errors name the file by its path.
func LoadFile(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("profiles: %w", err)
	}
	return Load(path, data)
}

// Lint checks one profile file (for `sscard profile lint FILE`) and returns
// every problem found; none means the file is valid. Each problem is an
// *Error reading "file:line: field.path: message", but for an unreadable file.
func Lint(path string) []error {
	_, err := LoadFile(path)
	if err == nil {
		return nil
	}
	var es Errors
	if errors.As(err, &es) {
		return es.Unwrap()
	}
	return []error{err}
}

// List returns the profiles sorted by name.
func (s *Set) List() []*Profile {
	out := make([]*Profile, 0, len(s.byName))
	for _, p := range s.byName {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns the profile called name.
func (s *Set) Get(name string) (*Profile, bool) {
	p, ok := s.byName[name]
	return p, ok
}

// MatchATR returns the profiles with an ATR pattern matching atr, best
// priority first (ties by name).
func (s *Set) MatchATR(atr []byte) []*Profile {
	type hit struct {
		p    *Profile
		prio int
	}
	var hits []hit
	for _, p := range s.byName {
		if prio := p.MatchATR(atr); prio >= 0 {
			hits = append(hits, hit{p, prio})
		}
	}
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].prio != hits[j].prio {
			return hits[i].prio > hits[j].prio
		}
		return hits[i].p.Name < hits[j].p.Name
	})
	out := make([]*Profile, len(hits))
	for i, h := range hits {
		out[i] = h.p
	}
	return out
}

// String lists the names, for logs.
func (s *Set) String() string {
	names := make([]string, 0, len(s.byName))
	for _, p := range s.List() {
		names = append(names, p.Name)
	}
	return "profiles[" + strings.Join(names, " ") + "]"
}
