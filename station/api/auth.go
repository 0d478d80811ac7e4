package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"ssstation/station/service"
)

// TokenRecord is what the configuration keeps of one token: never the
// token itself, only its SHA-256 (a token is 256 random bits, so a plain
// hash is enough; no password hashing needed).
type TokenRecord struct {
	Name    string       `json:"name" yaml:"name"`
	Role    service.Role `json:"role" yaml:"role"`
	Hash    string       `json:"sha256" yaml:"sha256"`                       // hex SHA-256 of the token
	Origins []string     `json:"origins,omitempty" yaml:"origins,omitempty"` // exact browser origins, e.g. https://counter.example.cn
}

// tokenPrefix marks our tokens so a leaked one is easy to recognise.
const tokenPrefix = "sst_"

// Roles lists the roles a token may have.
var Roles = []service.Role{service.RoleCounter, service.RoleBank, service.RoleTechnician, service.RoleAdmin}

// NewToken makes a token for `stationd token add`: the token is printed
// once; the record (with its hash) goes into the configuration.
func NewToken(name, role string, origins []string) (string, TokenRecord, error) {
	if name == "" || strings.ContainsAny(name, " \t\r\n") {
		return "", TokenRecord{}, errors.New("new token: the name must be one word")
	}
	r := service.Role(role)
	if !validRole(r) {
		return "", TokenRecord{}, fmt.Errorf("new token: unknown role %q (counter, bank, technician, admin)", role)
	}
	clean := make([]string, 0, len(origins))
	for _, o := range origins {
		c, err := CanonicalOrigin(o)
		if err != nil {
			return "", TokenRecord{}, fmt.Errorf("new token: %w", err)
		}
		clean = append(clean, c)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", TokenRecord{}, fmt.Errorf("new token: %w", err)
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	return tok, TokenRecord{Name: name, Role: r, Hash: HashToken(tok), Origins: clean}, nil
}

// HashToken is the hex SHA-256 a TokenRecord keeps.
func HashToken(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

func validRole(r service.Role) bool {
	for _, x := range Roles {
		if x == r {
			return true
		}
	}
	return false
}

// CanonicalOrigin checks an allow-list entry: scheme://host[:port], no
// path, no wildcard, lower case. Browsers send exactly that form.
func CanonicalOrigin(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil ||
		strings.Contains(o, "*") {
		return "", fmt.Errorf("origin %q is not of the form https://host[:port]", o)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// tokenSet looks tokens up by hash in constant time per record.
type tokenSet struct {
	recs       []TokenRecord
	hashes     [][]byte
	anyOrigins map[string]bool // union of every token's origins (for preflights)
}

func newTokenSet(recs []TokenRecord) (*tokenSet, error) {
	ts := &tokenSet{anyOrigins: map[string]bool{}}
	seen := map[string]bool{}
	for _, r := range recs {
		h, err := hex.DecodeString(r.Hash)
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("token %q: sha256 is not 64 hex digits", r.Name)
		}
		if !validRole(r.Role) {
			return nil, fmt.Errorf("token %q: unknown role %q", r.Name, r.Role)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("token %q: name used twice", r.Name)
		}
		seen[r.Name] = true
		r.Origins = slices.Clone(r.Origins) // canonicalised here, not in the caller's config
		for i, o := range r.Origins {
			c, err := CanonicalOrigin(o)
			if err != nil {
				return nil, fmt.Errorf("token %q: %w", r.Name, err)
			}
			r.Origins[i] = c
			ts.anyOrigins[c] = true
		}
		ts.recs = append(ts.recs, r)
		ts.hashes = append(ts.hashes, h)
	}
	return ts, nil
}

// lookup compares against every record (no early exit) so the time taken
// says nothing about which record, if any, matched.
func (ts *tokenSet) lookup(token string) (TokenRecord, bool) {
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i, h := range ts.hashes {
		if subtle.ConstantTimeCompare(sum[:], h) == 1 {
			found = i
		}
	}
	if found < 0 {
		return TokenRecord{}, false
	}
	return ts.recs[found], true
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}

// ownOrigin reports whether origin is this station's own (a page it serves
// itself, the console: http://127.0.0.1:port, http://localhost:port or
// http://[::1]:port). Every token may be used from there: those pages are
// the station's embedded files, and a token still has to be typed in.
func (s *server) ownOrigin(origin string) bool {
	p := strconv.Itoa(s.port)
	switch origin {
	case "http://127.0.0.1:" + p, "http://localhost:" + p, "http://[::1]:" + p:
		return true
	}
	return false
}

func (rec TokenRecord) allowsOrigin(origin string) bool {
	for _, o := range rec.Origins {
		if o == origin {
			return true
		}
	}
	return false
}

// hostAllowed: only loopback names with our port (DNS rebinding defence:
// a rebound name arrives with its own Host).
func hostAllowed(host string, port int) bool {
	h, p, err := net.SplitHostPort(host)
	if err != nil || p != strconv.Itoa(port) {
		return false
	}
	switch strings.ToLower(h) {
	case "127.0.0.1", "::1", "localhost":
		return true
	}
	return false
}

// corsAllowHeaders are the request headers a page may send.
const corsAllowHeaders = "Authorization, Content-Type, Idempotency-Key, Prefer, X-Operator-Id, Last-Event-ID"

// corsExposeHeaders are the response headers a page may read.
const corsExposeHeaders = "Location, Retry-After, Idempotent-Replayed, X-Request-Id, Preference-Applied, X-Station-Test-Keys"

func setCORS(w http.ResponseWriter, origin string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	h.Add("Vary", "Origin")
}

// roleAllows: admin includes every other role (decision documented in
// docs/api.md); the others only what the route lists.
func roleAllows(have service.Role, want []service.Role) bool {
	if have == service.RoleAdmin {
		return true
	}
	for _, r := range want {
		if r == have {
			return true
		}
	}
	return false
}

// maySeeSSN: counter staff check the holder's identity against the ID
// card, and admins issue cards; bank and technician tokens get it masked.
func maySeeSSN(r service.Role) bool {
	return r == service.RoleCounter || r == service.RoleAdmin
}
