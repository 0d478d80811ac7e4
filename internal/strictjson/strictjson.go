// Package strictjson decodes the station's hand-written JSON files (the
// station configuration, holder files) strictly: one document and nothing
// after it, no key given twice (encoding/json silently keeps the last, and
// matches keys without regard to case, so "ssn" and "SSN" collide too), no
// unknown field, no byte order mark. Errors give a line and column and never
// quote a value: a holder file holds names and ID numbers.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrEmpty is returned for input with no JSON document at all.
var ErrEmpty = errors.New("empty: no JSON document")

// ErrBOM is returned for input that starts with a UTF-8 byte order mark.
var ErrBOM = errors.New("starts with a byte order mark (BOM): save the file as UTF-8 without BOM")

// Decode decodes the single JSON document in data into v.
func Decode(data []byte, v any) error {
	if bytes.HasPrefix(data, []byte{0xEF, 0xBB, 0xBF}) {
		return ErrBOM
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return ErrEmpty
	}
	if err := checkStructure(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describe(data, dec.InputOffset(), err)
	}
	return nil
}

type frame struct {
	object  bool
	wantKey bool
	keys    map[string]bool
}

// checkStructure walks the tokens once: duplicate keys and trailing data.
func checkStructure(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*frame
	done := false
	for {
		off := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) > 0 {
				return fmt.Errorf("%s: the JSON document is truncated", position(data, off))
			}
			return nil
		}
		if done {
			return fmt.Errorf("%s: data after the end of the JSON document", position(data, skipSpace(data, off)))
		}
		if err != nil {
			return describe(data, dec.InputOffset(), err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.object {
					top.wantKey = true // after this value, a key
				}
				stack = append(stack, &frame{object: t == '{', wantKey: t == '{', keys: map[string]bool{}})
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		default:
			if top != nil && top.object && top.wantKey {
				key, _ := tok.(string)
				folded := strings.ToLower(key)
				if top.keys[folded] {
					return fmt.Errorf("%s: key %q appears twice in the same object (keys are matched without regard to case)", position(data, off), key)
				}
				top.keys[folded] = true
				top.wantKey = false
				continue
			}
			if top != nil && top.object {
				top.wantKey = true
			}
		}
		if len(stack) == 0 {
			done = true
		}
	}
}

func skipSpace(data []byte, off int64) int64 {
	for off < int64(len(data)) && strings.IndexByte(" \t\r\n", data[off]) >= 0 {
		off++
	}
	return off
}

// describe turns a decoding error into one with a position and no value.
func describe(data []byte, off int64, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("%s: JSON syntax error", position(data, syn.Offset))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the document"
		}
		return fmt.Errorf("%s: %s must be a JSON %s, not %s", position(data, typ.Offset), field, jsonType(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: the JSON document is truncated", position(data, off))
	}
	// Unknown fields ("json: unknown field \"x\"") name a key, not a value.
	return fmt.Errorf("%s: %s", position(data, off), strings.TrimPrefix(err.Error(), "json: "))
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "bool":
		return "boolean (true or false)"
	}
	return "number"
}

// position is "line L, column C" (1-based; columns count bytes).
func position(data []byte, off int64) string {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col := 1, 1
	for _, c := range data[:off] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("line %d, column %d", line, col)
}
