package bundle

import (
	"regexp"
	"strings"
)

// Removed replaces a secret value in a redacted line.
const Removed = "[removed]"

// The redactor's patterns. They err on the side of removing too much: a
// support bundle leaves the station, and a masked field costs a
// technician a question, a leaked PIN or token costs the holder.
var (
	// An ID number: a run of 15 to 18 digits (the 15-digit old form, the
	// 18-character form with a digit or X last), not part of a longer run
	// of digits or hex letters. Longer runs of digits (a timestamp in
	// nanoseconds, a card number) are left alone.
	idNumber = regexp.MustCompile(`(^|[^0-9A-Fa-f])([0-9]{17}[0-9Xx]|[0-9]{15})($|[^0-9A-Fa-f])`)

	// A field whose name says it holds a secret, as JSON ("pin": "123456")
	// or as key=value / key: value text: its value is removed. The names
	// are matched case-insensitively anywhere in the key (new_pin,
	// X-Api-Token, client_secret, Authorization, Cookie…).
	secretField = regexp.MustCompile(`(?i)("?[A-Za-z0-9_.-]*(pin|passw|secret|token|authorization|cookie|apikey|api_key|cryptogram|key)[A-Za-z0-9_.-]*"?\s*[:=]\s*)("(?:[^"\\]|\\.)*"|[^\s,;&{}\[\]"][^\s,;&}\]]*)`)

	// A bearer credential wherever it stands.
	bearer = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+`)

	// The station's API tokens (station/api: "sst_" and base64url).
	stationToken = regexp.MustCompile(`sst_[A-Za-z0-9_-]{8,}`)

	// A long hex string: a token hash, a key, a key cryptogram or an
	// APDU carrying one. 32 hex digits and more (a 16-byte 3DES or SM4
	// key); a card identification code (32 hex digits) is masked too,
	// the diagnostics and the audit result carry it where it matters.
	longHex = regexp.MustCompile(`\b[0-9A-Fa-f]{32,}\b`)
)

// benignKeys are field names the secret-field pattern would catch but
// that hold no secret and that a technician needs.
var benignKeys = []string{"token_name", "pin_entry", "pin_pad", "pinpad", "tries_left", "pin_tries", "key_id", "keys_source", "idempotency_key_seen"}

// Line redacts one log line: ID numbers masked (first 4 and last 2
// characters kept, as the audit trail keeps them), secret-looking fields,
// bearer credentials, station tokens and long hex strings removed.
func Line(s string) string {
	s = secretField.ReplaceAllStringFunc(s, func(m string) string {
		sub := secretField.FindStringSubmatch(m)
		key := strings.ToLower(strings.Trim(strings.TrimSpace(strings.TrimRight(strings.TrimSpace(sub[1]), ":=")), `"`))
		for _, b := range benignKeys {
			if key == b {
				return m
			}
		}
		if strings.HasPrefix(sub[3], `"`) {
			return sub[1] + `"` + Removed + `"`
		}
		return sub[1] + Removed
	})
	s = bearer.ReplaceAllString(s, "$1 "+Removed)
	s = stationToken.ReplaceAllString(s, "sst_"+Removed)
	s = longHex.ReplaceAllString(s, Removed)
	return IDNumbers(s)
}

// IDNumbers masks every ID-number-shaped run of digits in s, keeping its
// first 4 and last 2 characters. Every member of a bundle passes through
// it, whatever else redacted it already.
func IDNumbers(s string) string {
	// The pattern consumes one character on each side; run it until
	// nothing changes so that adjacent numbers are all masked.
	for i := 0; i < 4; i++ {
		t := idNumber.ReplaceAllStringFunc(s, func(m string) string {
			sub := idNumber.FindStringSubmatch(m)
			id := sub[2]
			return sub[1] + id[:4] + strings.Repeat("*", len(id)-6) + id[len(id)-2:] + sub[3]
		})
		if t == s {
			break
		}
		s = t
	}
	return s
}
