package api_test

import (
	"bufio"
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/api/web"
)

var (
	specPathRE   = regexp.MustCompile(`^  (/[^:\s]*):\s*$`)
	specMethodRE = regexp.MustCompile(`^    (get|put|post|delete|patch|head|options|trace):\s*$`)
	fiberParamRE = regexp.MustCompile(`:([A-Za-z0-9_]+)`)
)

// specOperations reads "METHOD /path" of every operation under the document's paths. The
// document keeps paths at two spaces and methods at four, which this reader relies on and
// checks by finding every path with at least one method.
func specOperations(t *testing.T, spec []byte) []string {
	t.Helper()
	var ops []string
	inPaths, path, methods := false, "", 0
	sc := bufio.NewScanner(bytes.NewReader(spec))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "\t") {
			t.Fatalf("a tab in openapi.yaml: %q", line)
		}
		if line != "" && line[0] != ' ' && line[0] != '#' {
			inPaths = strings.HasPrefix(line, "paths:")
			continue
		}
		if !inPaths {
			continue
		}
		if m := specPathRE.FindStringSubmatch(line); m != nil {
			if path != "" && methods == 0 {
				t.Fatalf("path %s has no operation", path)
			}
			path, methods = m[1], 0
			continue
		}
		if m := specMethodRE.FindStringSubmatch(line); m != nil && path != "" {
			ops = append(ops, strings.ToUpper(m[1])+" "+path)
			methods++
		}
	}
	if len(ops) == 0 {
		t.Fatal("no operations found in openapi.yaml")
	}
	slices.Sort(ops)
	return ops
}

func TestOpenAPIDescribesExactlyTheRoutes(t *testing.T) {
	e := newEnv(t)
	var routed []string
	for _, r := range e.App.GetRoutes(true) {
		if r.Method == "HEAD" { // Fiber adds HEAD to every GET; the document says so once
			continue
		}
		if strings.HasPrefix(r.Path, web.AssetPrefix) { // the page's script and styles: files, not operations
			continue
		}
		routed = append(routed, r.Method+" "+fiberParamRE.ReplaceAllString(r.Path, "{$1}"))
	}
	slices.Sort(routed)
	routed = slices.Compact(routed)
	documented := specOperations(t, api.OpenAPISpec())

	for _, op := range routed {
		if _, found := slices.BinarySearch(documented, op); !found {
			t.Errorf("routed but not in openapi.yaml: %s", op)
		}
	}
	for _, op := range documented {
		if _, found := slices.BinarySearch(routed, op); !found {
			t.Errorf("in openapi.yaml but not routed: %s", op)
		}
	}
	if len(routed) < 24 {
		t.Errorf("only %d routes", len(routed))
	}
}

func TestOpenAPIIsServedAsEmbedded(t *testing.T) {
	e := newEnv(t)
	r := e.Get("/openapi.yaml")
	if r.Status != 200 || !bytes.Equal(r.Body, api.OpenAPISpec()) {
		t.Fatalf("served %d, %d bytes; embedded %d bytes", r.Status, len(r.Body), len(api.OpenAPISpec()))
	}
}
