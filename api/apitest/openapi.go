package apitest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/api/web"
)

// Spec checks answers against the OpenAPI document the service serves (api/openapi.yaml),
// so that the document cannot drift from what the service says: every answer's status must
// be declared for its operation, its Content-Type must be one the document lists for that
// status, and its body must match the schema. Object schemas of answers are closed here: a
// field the document does not name is a drift too, although the document itself leaves
// additionalProperties open so that clients stay free to ignore new fields.
type Spec struct {
	doc     *openapi3.T
	router  routers.Router
	problem *openapi3.SchemaRef
}

// LoadSpec returns the document, loaded and checked once per test binary.
var LoadSpec = sync.OnceValues(func() (*Spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPISpec())
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi.yaml is not a valid document: %w", err)
	}
	// The listed server is localhost:8080; tests reach the service on any host and port.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route openapi.yaml: %w", err)
	}
	seen := map[*openapi3.Schema]bool{}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, resp := range op.Responses.Map() {
				for _, media := range resp.Value.Content {
					closeObjects(media.Schema, seen)
				}
			}
		}
	}
	problem := doc.Components.Schemas["Problem"]
	if problem == nil {
		return nil, errors.New("openapi.yaml has no Problem schema")
	}
	return &Spec{doc: doc, router: router, problem: problem}, nil
})

// closeObjects forbids properties that an object schema does not name, where the schema
// leaves that open.
func closeObjects(ref *openapi3.SchemaRef, seen map[*openapi3.Schema]bool) {
	if ref == nil || ref.Value == nil || seen[ref.Value] {
		return
	}
	s := ref.Value
	seen[s] = true
	if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
		closed := false
		s.AdditionalProperties.Has = &closed
	}
	for _, p := range s.Properties {
		closeObjects(p, seen)
	}
	closeObjects(s.Items, seen)
	for _, list := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
		for _, sub := range list {
			closeObjects(sub, seen)
		}
	}
}

// CheckAnswer is Spec.Check on the loaded document; a document that does not load is an
// error of every answer.
func CheckAnswer(req *http.Request, status int, header http.Header, body []byte) error {
	s, err := LoadSpec()
	if err != nil {
		return err
	}
	return s.Check(req, status, header, body)
}

// Check returns why an answer to req does not agree with the document, or nil. body is the
// whole body as sent (gzip is undone here); for a stream (text/event-stream) only the status
// and Content-Type are checked and body is ignored.
func (s *Spec) Check(req *http.Request, status int, header http.Header, body []byte) error {
	if err := s.check(req, status, header, body); err != nil {
		return fmt.Errorf("openapi.yaml: %s %s answered %d (%s): %w", req.Method, req.URL.RequestURI(), status, header.Get("Content-Type"), err)
	}
	return nil
}

func (s *Spec) check(req *http.Request, status int, header http.Header, body []byte) error {
	if strings.HasPrefix(req.URL.Path, web.AssetPrefix) {
		return nil // the page's files, not operations of the API
	}
	method := req.Method
	if method == http.MethodHead {
		method = http.MethodGet // every GET route answers HEAD, with the GET's status and no body
	}
	routed := req.Clone(req.Context())
	routed.Method = method
	route, params, err := s.router.FindRoute(routed)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return s.checkProblem(status, header, body, http.StatusNotFound, "an unknown path")
	case errors.Is(err, routers.ErrMethodNotAllowed):
		if header.Get("Allow") == "" {
			return errors.New("a 405 without an Allow header")
		}
		return s.checkProblem(status, header, body, http.StatusMethodNotAllowed, "a method the path does not have")
	case err != nil:
		return fmt.Errorf("find the operation: %w", err)
	}
	if status == http.StatusNotModified {
		return nil // conditional GETs; the document lists 304 where it is sent
	}
	resp := route.Operation.Responses.Status(status)
	if resp == nil {
		resp = route.Operation.Responses.Default()
	}
	if resp == nil {
		return errors.New("status not declared for this operation")
	}
	if req.Method == http.MethodHead {
		return nil
	}
	ct := header.Get("Content-Type")
	if len(resp.Value.Content) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("a body of %d bytes where the document declares none", len(body))
		}
		return nil
	}
	if resp.Value.Content.Get(ct) == nil {
		return fmt.Errorf("Content-Type %q not declared for this status (declared: %v)", ct, mediaTypes(resp.Value.Content))
	}
	mt, _, _ := mime.ParseMediaType(ct)
	if mt != "application/json" && mt != "application/problem+json" {
		return nil // the page, the document, metrics, streams: strings, only their type is checked
	}
	if header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("gzip body: %w", err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			return fmt.Errorf("gzip body: %w", err)
		}
		header = header.Clone()
		header.Del("Content-Encoding")
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: routed, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// checkProblem checks an answer to a request that no operation of the document matches:
// the document's conventions promise a problem with status want.
func (s *Spec) checkProblem(status int, header http.Header, body []byte, want int, what string) error {
	if status != want {
		return fmt.Errorf("%s, answered %d instead of %d", what, status, want)
	}
	if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt != api.ProblemContentType {
		return fmt.Errorf("%s, answered %q instead of %s", what, header.Get("Content-Type"), api.ProblemContentType)
	}
	value, err := decodeJSON(body)
	if err != nil {
		return err
	}
	if err := s.problem.Value.VisitJSON(value, openapi3.EnableJSONSchema2020()); err != nil {
		return fmt.Errorf("problem body: %w", err)
	}
	return nil
}

func mediaTypes(c openapi3.Content) []string {
	var out []string
	for k := range c {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func decodeJSON(body []byte) (any, error) {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("decode problem body %q: %w", body, err)
	}
	return v, nil
}

// isStream reports whether the answer is a stream whose body never ends by itself.
func isStream(header http.Header) bool {
	mt, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
	return mt == "text/event-stream"
}

// SpecTransport wraps base (nil: http.DefaultTransport) so that every answer that arrives
// through it is checked with Spec.Check; a disagreement fails t with Errorf (so it may be
// used from any goroutine) and the answer is handed on unchanged. Bodies are read in full
// first, except streams; a body that breaks off is handed on as it broke, unchecked.
func SpecTransport(t testing.TB, base http.RoundTripper) http.RoundTripper {
	t.Helper()
	if base == nil {
		base = http.DefaultTransport
	}
	return &specTransport{t: t, base: base}
}

type specTransport struct {
	t    testing.TB
	base http.RoundTripper
}

func (st *specTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := st.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if isStream(resp.Header) {
		if err := CheckAnswer(req, resp.StatusCode, resp.Header, nil); err != nil {
			st.t.Errorf("%v", err)
		}
		return resp, nil
	}
	body, readErr := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if readErr != nil {
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{readErr}))
		return resp, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	header := resp.Header
	if resp.Uncompressed {
		header = header.Clone()
		header.Del("Content-Encoding")
	}
	if err := CheckAnswer(req, resp.StatusCode, header, body); err != nil {
		st.t.Errorf("%v", err)
	}
	return resp, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// SpecProxy serves a checking reverse proxy to base until the test ends and returns its URL,
// for clients that are not Go (curl in the README's walkthrough).
func SpecProxy(t testing.TB, base string) string {
	t.Helper()
	target, err := url.Parse(base)
	if err != nil {
		t.Fatalf("proxy to %q: %v", base, err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = SpecTransport(t, nil)
	proxy.FlushInterval = -1 // streams pass at once
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL
}
