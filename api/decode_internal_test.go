package api

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// FuzzDecodeObject checks the hand-written walk over an object's top level against
// encoding/json: whatever decodeObject accepts, encoding/json reads as an object with the
// same fields and values, and decodeObject never accepts a non-object or malformed JSON.
func FuzzDecodeObject(f *testing.F) {
	for _, seed := range []string{
		`{"a":1,"b":"x"}`, ` { "a" : [1,{"b":"}"}] , "b" : "\"a\":" } `, `{"a":{"a":1},"b":null}`,
		`{"a":"\u0062","b":true}`, `{"\u0061":1}`, `{}`, `[]`, `{"a":1}{}`, `{"a":1,"a":2}`, `{"a":-0.5e+3}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		obj, err := decodeObject(data, "", "a", "b")
		var ref map[string]json.RawMessage
		refErr := json.Unmarshal(data, &ref)
		if err != nil {
			return // refusing more than encoding/json (unknown or repeated fields) is intended
		}
		if refErr != nil || ref == nil {
			t.Fatalf("accepted %q, which encoding/json refuses as an object: %v", data, refErr)
		}
		if len(ref) != len(obj.fields) {
			t.Fatalf("%q: fields %v, encoding/json %v", data, obj.fields, ref)
		}
		for k, v := range ref {
			var a, b bytes.Buffer
			if json.Compact(&a, v) != nil || json.Compact(&b, obj.fields[k]) != nil || a.String() != b.String() {
				t.Fatalf("%q: field %s is %q, encoding/json says %q", data, k, obj.fields[k], v)
			}
		}
	})
}

func TestValidatorsMatchTheirPatterns(t *testing.T) {
	idPattern := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	namePattern := regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
	intPattern := regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)
	inputs := []string{"", "a", "A-z_09", "a.b", "a:b", "a b", "é", "a/b", strings.Repeat("x", 64), strings.Repeat("x", 65),
		strings.Repeat("y", 128), strings.Repeat("y", 129), "0", "-0", "01", "-", "12", "-12", "1.0", "1e3", "+1", "--1", "a\x00"}
	for _, in := range inputs {
		if got, want := validID(in), idPattern.MatchString(in); got != want {
			t.Errorf("validID(%q) = %v, pattern says %v", in, got, want)
		}
		if got, want := validName(in), namePattern.MatchString(in); got != want {
			t.Errorf("validName(%q) = %v, pattern says %v", in, got, want)
		}
		if got, want := isJSONInt([]byte(in)), intPattern.MatchString(in); got != want {
			t.Errorf("isJSONInt(%q) = %v, pattern says %v", in, got, want)
		}
	}
}
