package handlers_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/upsell-dev/upsell/handlers"
)

// TestOpenAPIDescribesEveryRoute keeps /openapi.json and the routes in
// step: every registered route is described, and every described operation
// is registered.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	var spec struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(handlers.OpenAPI, &spec); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	if spec.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", spec.OpenAPI)
	}
	var described []string
	for path, item := range spec.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				described = append(described, strings.ToUpper(method)+" "+path)
			}
		}
	}
	registered := handlers.New(handlers.Config{}).Routes()
	slices.Sort(described)
	slices.Sort(registered)
	for _, r := range registered {
		if !slices.Contains(described, r) {
			t.Errorf("route %s is registered but not described in openapi.json", r)
		}
	}
	for _, d := range described {
		if !slices.Contains(registered, d) {
			t.Errorf("operation %s is described in openapi.json but not registered", d)
		}
	}
	if len(registered) < 21 {
		t.Errorf("only %d routes registered: %v", len(registered), registered)
	}
}
