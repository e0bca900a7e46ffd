package api

import (
	"bufio"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// openapiRoutes reads "METHOD /path" pairs from the paths section of
// openapi.yaml (two-space-indented paths, four-space-indented methods).
func openapiRoutes(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pathRe := regexp.MustCompile(`^  (/[^:]*):\s*$`)
	methodRe := regexp.MustCompile(`^    (get|put|post|delete|patch|head|options):\s*$`)
	out := map[string]bool{}
	inPaths, current := false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, " ") && line != "" {
			inPaths = line == "paths:"
			continue
		}
		if !inPaths {
			continue
		}
		if m := pathRe.FindStringSubmatch(line); m != nil {
			current = regexp.MustCompile(`\{(\w+)\}`).ReplaceAllString(m[1], ":$1")
			continue
		}
		if m := methodRe.FindStringSubmatch(line); m != nil && current != "" {
			out[strings.ToUpper(m[1])+" "+current] = true
		}
	}
	return out
}

// TestOpenAPIMatchesRouter fails when a route is registered but not
// described in openapi.yaml, or described but not registered.
func TestOpenAPIMatchesRouter(t *testing.T) {
	s := newTestServer(t, nil)
	documented := openapiRoutes(t)
	if len(documented) < 10 {
		t.Fatalf("parsed only %d routes from openapi.yaml: parser or file broken", len(documented))
	}
	registered := map[string]bool{}
	for _, r := range s.routes {
		if !r.asset && r.Method != "HEAD" {
			registered[r.Method+" "+r.Path] = true
		}
	}
	var missing, extra []string
	for r := range registered {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for r := range documented {
		if !registered[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes not in openapi.yaml: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("openapi.yaml describes routes the router lacks: %v", extra)
	}
}
