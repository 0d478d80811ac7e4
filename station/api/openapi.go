package api

import (
	_ "embed"
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// openapiYAML is the OpenAPI 3 document, kept in YAML for its anchors and
// comments and served as JSON (GET /v1/openapi.json).
//
//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPIJSON returns the document as JSON.
func OpenAPIJSON() ([]byte, error) { return openAPIJSON() }

func openAPIJSON() ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("api: openapi.yaml: %w", err)
	}
	delete(doc, "x-op-responses") // only there for its anchor
	// Every path answers CORS preflights the same way: described here
	// once rather than repeated in the YAML.
	if paths, ok := doc["paths"].(map[string]any); ok {
		for _, item := range paths {
			if m, ok := item.(map[string]any); ok {
				m["options"] = preflightOperation()
			}
		}
	}
	j, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("api: openapi.yaml: %w", err)
	}
	return j, nil
}

func preflightOperation() map[string]any {
	hdr := func(desc string) map[string]any {
		return map[string]any{"description": desc, "schema": map[string]any{"type": "string"}}
	}
	return map[string]any{
		"summary":  "CORS preflight: an allow-listed origin gets it echoed with the methods and headers; any other origin gets 403 without CORS headers.",
		"security": []any{},
		"tags":     []any{"station"},
		"responses": map[string]any{
			"204": map[string]any{
				"description": "Allowed (or not a CORS preflight: Allow lists the methods).",
				"headers": map[string]any{
					"Access-Control-Allow-Origin":          hdr("the requesting origin, never *"),
					"Access-Control-Allow-Methods":         hdr("the route's methods"),
					"Access-Control-Allow-Headers":         hdr(corsAllowHeaders),
					"Access-Control-Allow-Private-Network": hdr("true, when the preflight asks for it"),
					"Vary":                                 hdr("Origin"),
				},
			},
			"default": map[string]any{"$ref": "#/components/responses/Problem"},
		},
	}
}
