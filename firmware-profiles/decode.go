package profiles

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The YAML layer of the loader: errors located by line and field path, and
// the typed decoders (mapping, list, scalar, integer, hex...) that collect
// every problem instead of stopping at the first. load.go walks the schema
// with them; the cross-field rules are load.go's check.

// Error is one problem in a profile file, located by line and field path,
// e.g. "ss-v2-3des-t0.yaml:37: files.EF06.records[2].length: must be 1..255".
type Error struct {
	File string
	Line int    // 1-based; 0 when unknown
	Path string // dotted field path, [i] for list items (0-based); empty for the whole file
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem Load found, in file order; Load returns it as its error.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap gives the individual errors to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

type decoder struct {
	file  string
	errs  Errors
	lines map[string]int // field path -> line of its key (of the item, in a list)
}

func (d *decoder) fail(line int, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// failAt reports at the line recorded for path, or for its nearest recorded parent.
func (d *decoder) failAt(path, format string, args ...any) {
	line := 0
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := d.lines[p]; ok {
			line = l
			break
		}
	}
	d.fail(line, path, format, args...)
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

type field struct {
	name     string
	required bool
	fn       func(n *yaml.Node, path string)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "nothing"
		}
		return "a scalar"
	}
	return "something else"
}

// mapping decodes a mapping with a fixed set of fields.
func (d *decoder) mapping(n *yaml.Node, path string, fields []field) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "must be a mapping, got %s", kindName(n))
		return
	}
	seen := map[string]bool{}
	d.entries(n, path, func(key string, k, v *yaml.Node, fp string) {
		seen[key] = true
		for _, f := range fields {
			if f.name == key {
				f.fn(v, fp)
				return
			}
		}
		d.fail(k.Line, fp, "unknown field")
	})
	for _, f := range fields {
		if f.required && !seen[f.name] {
			d.fail(n.Line, join(path, f.name), "required field missing")
		}
	}
}

// entries walks a mapping's entries, rejecting non-scalar and duplicate keys.
func (d *decoder) entries(n *yaml.Node, path string, fn func(key string, k, v *yaml.Node, fp string)) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "must be a mapping, got %s", kindName(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.fail(k.Line, path, "keys must be scalars")
			continue
		}
		fp := join(path, k.Value)
		if seen[k.Value] {
			d.fail(k.Line, fp, "duplicate field")
			continue
		}
		seen[k.Value] = true
		d.lines[fp] = k.Line
		fn(k.Value, k, v, fp)
	}
}

// seq walks a list.
func (d *decoder) seq(n *yaml.Node, path string, fn func(i int, v *yaml.Node, ip string)) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n.Line, path, "must be a list, got %s", kindName(n))
		return
	}
	for i, v := range n.Content {
		v = resolve(v)
		ip := fmt.Sprintf("%s[%d]", path, i)
		d.lines[ip] = v.Line
		fn(i, v, ip)
	}
}

func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n.Line, path, "must be a scalar, got %s", kindName(n))
		return "", false
	}
	if n.ShortTag() == "!!null" {
		return "", true
	}
	return n.Value, true
}

// str decodes a string; nonEmpty rejects "" and null.
func (d *decoder) str(n *yaml.Node, path string, nonEmpty bool) string {
	s, ok := d.scalar(n, path)
	if ok && nonEmpty && strings.TrimSpace(s) == "" {
		d.fail(n.Line, path, "must not be empty")
	}
	return s
}

// oneOf decodes a string that must be one of the allowed values.
func (d *decoder) oneOf(n *yaml.Node, path string, allowed ...string) string {
	s, ok := d.scalar(n, path)
	if !ok {
		return ""
	}
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	d.fail(n.Line, path, "must be one of %s, got %q", strings.Join(allowed, ", "), s)
	return s
}

// integer decodes a decimal or 0x-hex integer within [lo, hi].
func (d *decoder) integer(n *yaml.Node, path string, lo, hi int) int {
	s, ok := d.scalar(n, path)
	if !ok {
		return 0
	}
	var v int64
	var err error
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		v, err = strconv.ParseInt(s[2:], 16, 64)
	} else {
		v, err = strconv.ParseInt(s, 10, 64)
	}
	if err != nil {
		d.fail(n.Line, path, "must be an integer (decimal or 0x hex), got %q", s)
		return 0
	}
	if v < int64(lo) || v > int64(hi) {
		if hi == maxInt {
			d.fail(n.Line, path, "must be at least %d, got %d", lo, v)
		} else {
			d.fail(n.Line, path, "must be %d..%d, got %d", lo, hi, v)
		}
		return 0
	}
	return int(v)
}

func (d *decoder) boolean(n *yaml.Node, path string) bool {
	s, ok := d.scalar(n, path)
	if !ok {
		return false
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	d.fail(n.Line, path, "must be true or false, got %q", s)
	return false
}

// hexBytes decodes hex digit pairs (spaces allowed) of lo..hi bytes.
func (d *decoder) hexBytes(n *yaml.Node, path string, lo, hi int) []byte {
	s, ok := d.scalar(n, path)
	if !ok {
		return nil
	}
	b, err := parseHex(s)
	if err != nil {
		d.fail(n.Line, path, "bad hex %q: %v", s, err)
		return nil
	}
	if len(b) < lo || len(b) > hi {
		if lo == hi {
			d.fail(n.Line, path, "must be %d bytes, got %d", lo, len(b))
		} else {
			d.fail(n.Line, path, "must be %d..%d bytes, got %d", lo, hi, len(b))
		}
		return nil
	}
	return b
}

const maxInt = int(^uint(0) >> 1)
