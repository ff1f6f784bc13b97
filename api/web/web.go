// Package web is the booking engine's page for people: a live seat map where a user picks a
// concert and date, joins the waiting queue, holds a seat, charges points and pays, plus a
// "popular today" panel and an operator view. It is plain HTML, CSS and JavaScript embedded in
// the binary: nothing to build, nothing to install. The page talks only to the public API
// (and to the admin API with a token typed into it), and follows the seat map through the
// seat-map stream (Server-Sent Events).
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"path"
	"sort"

	"github.com/gofiber/fiber/v2"
)

//go:embed static
var static embed.FS

// AssetPrefix is the path under which the page's scripts and styles are served. They are
// files of the page, not operations of the API, and the OpenAPI document leaves them out.
const AssetPrefix = "/assets/"

// contentSecurityPolicy lets the page run its own script and style and talk to its own
// origin, and nothing else: no inline script, no third party, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// Route is one path the page is served on, with its handler.
type Route struct {
	Path    string
	Handler fiber.Handler
}

// Routes returns the page at "/" and every asset under AssetPrefix, in a stable order.
func Routes() []Route {
	var routes []Route
	err := fs.WalkDir(static, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(name)
		if err != nil {
			return err
		}
		base := path.Base(name)
		p := AssetPrefix + base
		if base == "index.html" {
			p = "/"
		}
		routes = append(routes, Route{Path: p, Handler: serve(body, contentTypes[path.Ext(base)])})
		return nil
	})
	if err != nil { // the files are compiled in: this cannot fail at run time
		panic("web: embedded files: " + err.Error())
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].Path < routes[j].Path })
	return routes
}

// serve answers with one embedded file. Browsers revalidate it on every load (no-cache) and
// get 304 while it is unchanged, so a new binary's page is never mixed with an old script.
func serve(body []byte, contentType string) fiber.Handler {
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderCacheControl, "no-cache")
		c.Set(fiber.HeaderETag, etag)
		c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
		c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
		c.Set(fiber.HeaderContentSecurityPolicy, contentSecurityPolicy)
		if c.Get(fiber.HeaderIfNoneMatch) == etag {
			c.Status(fiber.StatusNotModified)
			return nil
		}
		c.Set(fiber.HeaderContentType, contentType)
		return c.Status(fiber.StatusOK).Send(body)
	}
}
