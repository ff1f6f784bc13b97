package api

import (
	"github.com/booking-engine/booking/aggregates"

	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Request decoding is strict, so that a typo never silently turns into a default:
//   - the body is exactly one JSON object (nothing after it but white space);
//   - field names match exactly (encoding/json alone would match them case-insensitively),
//     unknown and repeated fields are rejected with 400 INVALID_REQUEST;
//   - a null value counts as an absent field;
//   - integers are JSON integers (no fraction, no exponent) that fit their range;
//   - times are RFC 3339 strings.
// The Content-Type header is not checked: clients such as `curl -d` send JSON labelled as a
// form, and the body has to be valid JSON of the right shape anyway.

// validID reports whether s is 1–64 characters of [A-Za-z0-9_-]: the pattern of userId,
// concertId and dateId (contract) and, bounded the same way, of the opaque reservationId and
// paymentId. (A loop: this runs several times per request, and a regexp costs ten times more.)
func validID(s string) bool { return aggregates.ValidID(s) }

// validName reports whether s is 1–128 characters of [A-Za-z0-9_.:-]: operator-facing names
// of projections and dead letters.
func validName(s string) bool { return validChars(s, 128, "_.:-") }

func validChars(s string, maxLen int, extra string) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// isJSONInt reports whether a JSON number has no fraction and no exponent.
func isJSONInt(r []byte) bool {
	if len(r) > 0 && r[0] == '-' {
		r = r[1:]
	}
	if len(r) == 0 || (r[0] == '0' && len(r) > 1) {
		return false
	}
	for _, c := range r {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// jsonObject is a decoded JSON object whose field names were checked.
type jsonObject struct {
	path   string // where the object sits in the body, for messages ("dates[1]")
	fields map[string]json.RawMessage
}

// decodeObject reads data as exactly one JSON object with only the allowed field names.
//
// json.Valid checks the syntax first (it allocates nothing), so the walk over the object's
// top level below only has to find where keys and values start and end. This is several
// times cheaper than json.Decoder's token API, which allocates an error value per field.
func decodeObject(data []byte, path string, allowed ...string) (jsonObject, error) {
	obj := jsonObject{path: path, fields: make(map[string]json.RawMessage, len(allowed))}
	if len(bytes.TrimSpace(data)) == 0 {
		if path == "" {
			return obj, invalidRequest("the request body must be a JSON object; it is empty")
		}
		return obj, invalidRequest("%s must be a JSON object", obj.describe())
	}
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v) // only to say where the syntax breaks
		return obj, invalidRequest("malformed JSON: %s", jsonErrText(err))
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return obj, invalidRequest("%s must be a JSON object", obj.describe())
	}
	i = skipSpace(data, i+1)
	if data[i] == '}' {
		return obj, nil
	}
	for {
		// data is valid JSON, so here is a key string, a colon, a value, then ',' or '}'.
		end := skipString(data, i)
		name, err := unquote(data[i:end])
		if err != nil {
			return obj, invalidRequest("malformed JSON: %s", jsonErrText(err))
		}
		if !contains(allowed, name) {
			return obj, invalidRequest("unknown field %q in %s", name, obj.describe())
		}
		if _, dup := obj.fields[name]; dup {
			return obj, invalidRequest("field %q appears twice in %s", name, obj.describe())
		}
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // the colon
		end = skipValue(data, i)
		obj.fields[name] = data[i:end:end]
		i = skipSpace(data, end)
		if data[i] == '}' {
			return obj, nil
		}
		i = skipSpace(data, i+1) // the comma
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at data[i] (a quote).
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++ // the escaped character; \uXXXX has no quote or backslash in its digits
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index after the valid JSON value that starts at data[i].
func skipValue(data []byte, i int) int {
	depth := 0
	for i < len(data) {
		switch c := data[i]; c {
		case '"':
			i = skipString(data, i)
			if depth == 0 {
				return i
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 { // the end of the enclosing object
				return i
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		case ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return i
}

// unquote decodes a JSON string literal, without allocating for the common plain case.
func unquote(lit []byte) (string, error) {
	if len(lit) >= 2 && bytes.IndexByte(lit, '\\') < 0 && utf8.Valid(lit) {
		return string(lit[1 : len(lit)-1]), nil
	}
	var s string
	err := json.Unmarshal(lit, &s)
	return s, err
}

// decodeEmpty accepts an absent body or an empty JSON object, for POSTs that take no input.
func decodeEmpty(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	_, err := decodeObject(data, "" /* no fields */)
	return err
}

func jsonErrText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", se.Error(), se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of input"
	}
	return err.Error()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (o jsonObject) describe() string {
	if o.path == "" {
		return "the request body"
	}
	return o.path
}

func (o jsonObject) name(field string) string {
	if o.path == "" {
		return field
	}
	return o.path + "." + field
}

// raw returns a field's value, or nil when it is absent or null.
func (o jsonObject) raw(field string) json.RawMessage {
	r, ok := o.fields[field]
	if !ok || string(r) == "null" {
		return nil
	}
	return r
}

// str returns a string field; present is false when it is absent or null.
func (o jsonObject) str(field string) (s string, present bool, err error) {
	r := o.raw(field)
	if r == nil {
		return "", false, nil
	}
	if r[0] != '"' {
		return "", true, invalidRequest("%s must be a string", o.name(field))
	}
	s, err = unquote(r)
	if err != nil {
		return "", true, invalidRequest("%s must be a string", o.name(field))
	}
	return s, true, nil
}

// requiredStr returns a string field that must be present.
func (o jsonObject) requiredStr(field string) (string, error) {
	s, present, err := o.str(field)
	if err != nil {
		return "", err
	}
	if !present {
		return "", invalidRequest("%s is required", o.name(field))
	}
	return s, nil
}

// requiredID returns a field that must hold an ID (1–64 of [A-Za-z0-9_-]).
func (o jsonObject) requiredID(field string) (string, error) {
	s, err := o.requiredStr(field)
	if err != nil {
		return "", err
	}
	if !validID(s) {
		return "", validationFailed("%s must be 1-64 characters of [A-Za-z0-9_-]", o.name(field))
	}
	return s, nil
}

// optionalID returns a field that, when present, holds an ID; "" when absent.
func (o jsonObject) optionalID(field string) (string, error) {
	s, present, err := o.str(field)
	if err != nil || !present {
		return "", err
	}
	if !validID(s) {
		return "", validationFailed("%s must be 1-64 characters of [A-Za-z0-9_-]", o.name(field))
	}
	return s, nil
}

// requiredInt returns an integer field in [lo, hi]. A wrong type is INVALID_REQUEST; a number
// out of range (int64 overflow included) is VALIDATION_FAILED.
func (o jsonObject) requiredInt(field string, lo, hi int64) (int64, error) {
	r := o.raw(field)
	if r == nil {
		return 0, invalidRequest("%s is required", o.name(field))
	}
	if !isJSONInt(r) {
		return 0, invalidRequest("%s must be an integer", o.name(field))
	}
	n, err := strconv.ParseInt(string(r), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, validationFailed("%s must be an integer from %d to %d", o.name(field), lo, hi)
	}
	return n, nil
}

// requiredTime returns an RFC 3339 time field, in UTC.
func (o jsonObject) requiredTime(field string) (time.Time, error) {
	s, err := o.requiredStr(field)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, validationFailed("%s must be an RFC 3339 time such as 2026-12-24T19:00:00Z", o.name(field))
	}
	return t.UTC(), nil
}

// array returns the elements of an array field; present is false when absent or null.
func (o jsonObject) array(field string, maxLen int) (elems []json.RawMessage, present bool, err error) {
	r := o.raw(field)
	if r == nil {
		return nil, false, nil
	}
	if r[0] != '[' || json.Unmarshal(r, &elems) != nil {
		return nil, true, invalidRequest("%s must be an array", o.name(field))
	}
	if len(elems) > maxLen {
		return nil, true, validationFailed("%s has more than %d elements", o.name(field), maxLen)
	}
	return elems, true, nil
}

// clampInt converts a validated int64 to int; the ranges used here all fit in 32 bits.
func clampInt(n int64) int {
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	if n < math.MinInt32 {
		return math.MinInt32
	}
	return int(n)
}
