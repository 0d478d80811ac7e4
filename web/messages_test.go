package web

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// stationCodes reads every problem code the station can answer with from
// the sources that declare them (service.Code and the API's own codes).
func stationCodes(t *testing.T) []string {
	t.Helper()
	var codes []string
	for _, f := range []string{"../station/service/service.go", "../station/api/problem.go"} {
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok || vs.Type == nil {
				return true
			}
			typ := ""
			switch x := vs.Type.(type) {
			case *ast.Ident:
				typ = x.Name
			case *ast.SelectorExpr:
				typ = x.Sel.Name
			}
			if typ != "Code" {
				return true
			}
			for _, v := range vs.Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					codes = append(codes, s)
				}
			}
			return true
		})
	}
	if len(codes) < 20 {
		t.Fatalf("found only %d codes: the declarations moved?", len(codes))
	}
	return codes
}

// Every code the station answers with has a message in Chinese and in
// English in the SDK, so a counter page never shows a bare code.
func TestSDKHasAMessageForEveryCode(t *testing.T) {
	src, err := os.ReadFile("sscard.js")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	zhAt, enAt := strings.Index(s, "\n  zh: {"), strings.Index(s, "\n  en: {")
	end := strings.Index(s[enAt:], "\n  },") + enAt
	if zhAt < 0 || enAt < zhAt || end < enAt {
		t.Fatal("the MESSAGES table moved")
	}
	zh, en := s[zhAt:enAt], s[enAt:end]
	for _, c := range stationCodes(t) {
		re := regexp.MustCompile(`\n\s+` + regexp.QuoteMeta(c) + `: "[^"]+"`)
		if !re.MatchString(zh) {
			t.Errorf("no Chinese message for %s", c)
		}
		if !re.MatchString(en) {
			t.Errorf("no English message for %s", c)
		}
	}
}
