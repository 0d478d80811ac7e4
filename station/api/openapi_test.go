package api

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"ssstation/station/service"
)

// TestOpenAPICoversTheRouteTable: the document is valid OpenAPI 3 and
// names exactly the routes of the table (plus the preflights).
func TestOpenAPICoversTheRouteTable(t *testing.T) {
	doc := spec(t).Doc
	inTable := map[string]bool{}
	for _, rt := range RouteTable() {
		inTable[rt.Method+" "+rt.Pattern] = true
		item := doc.Paths.Find(rt.Pattern)
		if item == nil || item.GetOperation(rt.Method) == nil {
			t.Errorf("%s %s is not in the OpenAPI document", rt.Method, rt.Pattern)
			continue
		}
		op := item.GetOperation(rt.Method)
		public := rt.Access == AccessPublic || rt.Access == AccessPublicAnyOrigin
		if public != (op.Security != nil && len(*op.Security) == 0) {
			t.Errorf("%s %s: security in the document does not match the route table", rt.Method, rt.Pattern)
		}
		hasKey := false
		for _, p := range op.Parameters {
			if p.Value != nil && p.Value.Name == "Idempotency-Key" {
				hasKey = p.Value.Required
			}
		}
		if hasKey != rt.Idempotent {
			t.Errorf("%s %s: Idempotency-Key in the document (%v) does not match the table (%v)", rt.Method, rt.Pattern, hasKey, rt.Idempotent)
		}
		if item.Options == nil {
			t.Errorf("%s: no preflight in the document", rt.Pattern)
		}
	}
	docs, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range RouteTable() {
		if !strings.Contains(string(docs), "| `"+rt.Method+"` | `"+rt.Pattern+"` |") {
			t.Errorf("docs/api.md's route table lacks %s %s", rt.Method, rt.Pattern)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if method != "OPTIONS" && !inTable[method+" "+path] {
				t.Errorf("%s %s is documented but not served", method, path)
			}
		}
	}
}

// serviceCodes reads the Code constants from station/service's source,
// so a code added there without a row here fails this test.
func serviceCodes(t *testing.T) []service.Code {
	t.Helper()
	src, err := os.ReadFile("../service/service.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []service.Code
	for _, m := range regexp.MustCompile(`\bCode\s*=\s*"([A-Z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		out = append(out, service.Code(m[1]))
	}
	if len(out) < 20 {
		t.Fatalf("found only %d codes in service.go", len(out))
	}
	return out
}

// TestCodeTable: every code (the station's and ours) has a status row,
// and docs/api.md lists every one of them with its status.
func TestCodeTable(t *testing.T) {
	docs, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	codes := serviceCodes(t)
	for c := range codeTable {
		if !slices.Contains(codes, c) {
			codes = append(codes, c)
		}
	}
	for _, c := range codes {
		ci, ok := codeTable[c]
		if !ok {
			t.Errorf("code %s has no row in codeTable", c)
			continue
		}
		if ci.Status < 400 || ci.Title == "" {
			t.Errorf("code %s: row %+v", c, ci)
		}
		row := regexp.MustCompile("(?m)^\\| `" + string(c) + "` \\| " + strings.TrimSpace(itoa(ci.Status)) + " \\|")
		if !row.Match(docs) {
			t.Errorf("docs/api.md has no row \"| `%s` | %d |\"", c, ci.Status)
		}
	}
}

func itoa(n int) string {
	s := ""
	for n > 0 {
		s = string(rune('0'+n%10)) + s
		n /= 10
	}
	return s
}
