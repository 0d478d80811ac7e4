package journal

import (
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on field lengths (in bytes). Longer error texts are truncated,
// other fields refused.
const (
	maxOpID  = 64
	maxKind  = 32
	maxShort = 256 // Reader, Profile, step id and name
	maxText  = 2048
)

// normalize checks a Begin request and returns it normalised.
func normalize(e Entry) (Entry, error) {
	var err error
	if e.OpID == "" {
		e.OpID = NewOpID()
	}
	if len(e.OpID) > maxOpID || !allIn(e.OpID, isOpIDChar) {
		return e, fmt.Errorf("%w: op id %q (want 1..%d of A-Z a-z 0-9 . _ : -)", ErrInvalid, e.OpID, maxOpID)
	}
	if LooksLikeIDNumber(e.OpID) {
		return e, fmt.Errorf("%w: op id", ErrSensitive)
	}
	if e.Kind == "" || len(e.Kind) > maxKind || !allIn(e.Kind, isKindChar) {
		return e, fmt.Errorf("%w: kind %q (want 1..%d of a-z 0-9 _ -)", ErrInvalid, e.Kind, maxKind)
	}
	if e.CardID, err = normCardID(e.CardID); err != nil {
		return e, err
	}
	d := strings.ToLower(e.PayloadDigest)
	if b, err := hex.DecodeString(d); err != nil || len(b) != 32 {
		return e, fmt.Errorf("%w: payload digest must be a hex HMAC-SHA256 (64 hex chars), got %d chars", ErrInvalid, len(e.PayloadDigest))
	}
	e.PayloadDigest = d
	for _, f := range []struct {
		name, val string
		max       int
	}{
		{"reader", e.Reader, maxShort},
		{"profile", e.Profile, maxShort},
		{"note", e.Note, maxText},
		{"error", e.Error, maxText},
	} {
		if err := checkText(f.name, f.val, f.max); err != nil {
			return e, err
		}
	}
	return e, nil
}

func normCardID(id string) (string, error) {
	u := strings.ToUpper(id)
	if b, err := hex.DecodeString(u); err != nil || len(b) != 16 {
		return "", fmt.Errorf("%w: card id must be the 16-byte card identification code as 32 hex chars, got %d chars", ErrInvalid, len(id))
	}
	return u, nil
}

func checkStep(id, name string, index int) error {
	if id == "" || len(id) > maxShort || !allIn(id, isOpIDChar) {
		return fmt.Errorf("%w: step id %q (want 1..%d of A-Z a-z 0-9 . _ : -)", ErrInvalid, id, maxShort)
	}
	if LooksLikeIDNumber(id) {
		return fmt.Errorf("%w: step id", ErrSensitive)
	}
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("%w: empty step name", ErrInvalid)
	}
	if index < 0 {
		return fmt.Errorf("%w: step index %d", ErrInvalid, index)
	}
	return checkText("step name", name, maxShort)
}

// checkText refuses a free-text field that is too long, is not UTF-8,
// holds control characters other than tab and newline, or looks like it
// holds a citizen ID number.
func checkText(field, v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, field, max)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, field)
	}
	for _, r := range v {
		if unicode.IsControl(r) && r != '\t' && r != '\n' {
			return fmt.Errorf("%w: %s holds control character %U", ErrInvalid, field, r)
		}
	}
	if LooksLikeIDNumber(v) {
		return fmt.Errorf("%w: %s (the journal never stores holder data)", ErrSensitive, field)
	}
	return nil
}

// errText is the text kept for an error: ID-number-shaped runs removed,
// control characters replaced, truncated to maxText bytes.
func errText(err error) string {
	if err == nil {
		return ""
	}
	t := RedactIDNumbers(err.Error())
	t = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || (unicode.IsControl(r) && r != '\t' && r != '\n') {
			return '?'
		}
		return r
	}, t)
	if len(t) > maxText {
		cut := maxText
		for cut > 0 && !utf8.RuneStart(t[cut]) {
			cut--
		}
		t = t[:cut] + "…"
	}
	return t
}

// LooksLikeIDNumber reports whether s contains something shaped like an
// 18-character citizen ID number: a run of exactly 18 ASCII digits, or of
// exactly 17 digits followed by X or x, not part of a longer run of digits.
// It is a cheap guard against a programming mistake, not a detector: it
// does not check the date or the check digit (so it also refuses other
// 18-digit numbers), and it misses numbers written with separators,
// full-width digits, the old 15-digit form, or hex/base64-encoded data.
func LooksLikeIDNumber(s string) bool {
	return len(idRuns(s)) > 0
}

// RedactIDNumbers replaces every run LooksLikeIDNumber finds by
// "[ID number removed]".
func RedactIDNumbers(s string) string {
	runs := idRuns(s)
	if len(runs) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for _, r := range runs {
		b.WriteString(s[last:r[0]])
		b.WriteString("[ID number removed]")
		last = r[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// idRuns returns the [start, end) byte ranges of ID-number-shaped runs.
func idRuns(s string) [][2]int {
	var out [][2]int
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		switch n := j - i; {
		case n == 18:
			out = append(out, [2]int{i, j})
		case n == 17 && j < len(s) && (s[j] == 'X' || s[j] == 'x'):
			out = append(out, [2]int{i, j + 1})
		}
		i = j
	}
	return out
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isOpIDChar(r rune) bool {
	return r < utf8.RuneSelf && (isDigit(byte(r)) || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' ||
		r == '.' || r == '_' || r == ':' || r == '-')
}

func isKindChar(r rune) bool {
	return r < utf8.RuneSelf && (isDigit(byte(r)) || r >= 'a' && r <= 'z' || r == '_' || r == '-')
}

func allIn(s string, ok func(rune) bool) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !ok(r) {
			return false
		}
	}
	return true
}
