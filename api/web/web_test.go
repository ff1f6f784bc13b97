package web_test

import (
	"io"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/booking-engine/booking/api/web"
)

func newApp() (*fiber.App, []string) {
	fa := fiber.New(fiber.Config{DisableStartupMessage: true})
	var paths []string
	for _, r := range web.Routes() {
		fa.Get(r.Path, r.Handler)
		paths = append(paths, r.Path)
	}
	return fa, paths
}

func get(t *testing.T, fa *fiber.App, path string, header ...string) (int, map[string]string, string) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := fa.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	h := map[string]string{}
	for k := range resp.Header {
		h[k] = resp.Header.Get(k)
	}
	return resp.StatusCode, h, string(body)
}

func TestEveryFileIsServedWithItsTypeAndPolicy(t *testing.T) {
	fa, paths := newApp()
	tests := []struct {
		name, path, contentType string
	}{
		{name: "the page is HTML at /", path: "/", contentType: "text/html; charset=utf-8"},
		{name: "the script is JavaScript", path: web.AssetPrefix + "app.js", contentType: "text/javascript; charset=utf-8"},
		{name: "the style sheet is CSS", path: web.AssetPrefix + "app.css", contentType: "text/css; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !slices.Contains(paths, tt.path) {
				t.Fatalf("%s not routed; routes %v", tt.path, paths)
			}
			status, h, body := get(t, fa, tt.path)
			if status != 200 || h["Content-Type"] != tt.contentType || body == "" {
				t.Fatalf("%d %q, %d bytes", status, h["Content-Type"], len(body))
			}
			if !strings.Contains(h["Content-Security-Policy"], "script-src 'self'") || h["X-Content-Type-Options"] != "nosniff" {
				t.Fatalf("security headers missing: %v", h)
			}
			again, h2, body2 := get(t, fa, tt.path, "If-None-Match", h["Etag"])
			if h["Etag"] == "" || again != 304 || body2 != "" || h2["Etag"] != h["Etag"] {
				t.Fatalf("revalidation with ETag %q: %d, %d bytes", h["Etag"], again, len(body2))
			}
		})
	}
}

func TestThePageLoadsOnlyServedAssets(t *testing.T) {
	fa, paths := newApp()
	_, _, page := get(t, fa, "/")
	refs := regexp.MustCompile(`(?:src|href)="(/[^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 2 {
		t.Fatalf("the page references %d local files", len(refs))
	}
	for _, m := range refs {
		if !slices.Contains(paths, m[1]) {
			t.Errorf("the page loads %s, which is not served", m[1])
		}
	}
}

// TestTheScriptFindsEveryElementItUses guards against renaming an element in one file and
// not the other: the script looks elements up by id only.
func TestTheScriptFindsEveryElementItUses(t *testing.T) {
	fa, _ := newApp()
	_, _, page := get(t, fa, "/")
	_, _, script := get(t, fa, web.AssetPrefix+"app.js")
	used := regexp.MustCompile(`\bel\("([A-Za-z0-9_-]+)"\)`).FindAllStringSubmatch(script, -1)
	if len(used) < 20 {
		t.Fatalf("only %d element lookups found in app.js", len(used))
	}
	for _, m := range used {
		if !strings.Contains(page, `id="`+m[1]+`"`) {
			t.Errorf("app.js uses #%s, which index.html does not have", m[1])
		}
	}
}
