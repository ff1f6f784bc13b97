package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"

	"github.com/go-json-experiment/json/jsontext"
)

// fingerprintJCS marks a fingerprint made of the body in RFC 8785 canonical form (the first
// byte; the SHA-256 follows). Answers kept before it have a bare 32-byte SHA-256 of the body
// as encoding/json re-encodes it, and are compared with what that gives, so a retry across an
// upgrade is still the same request.
const fingerprintJCS = 2

// fingerprint identifies a request for its key: the path (which holds the path parameters)
// and the body in a canonical form, so that a client re-encoding the same JSON with other
// white space or field order is still "the same body". The canonical form is RFC 8785's:
// jsontext writes it in place, a tenth of the time of decoding into maps and encoding again.
func fingerprint(path string, body []byte) []byte {
	canonical := body
	if len(bytes.TrimSpace(body)) == 0 {
		canonical = nil
	} else if v := jsontext.Value(bytes.Clone(body)); v.Canonicalize() == nil {
		canonical = v
	}
	return sum(path, canonical, []byte{fingerprintJCS})
}

// sameRequest reports whether a kept answer's fingerprint is this request's, whose
// fingerprint is fp.
func sameRequest(kept []byte, fp []byte, path string, body []byte) bool {
	if len(kept) == sha256.Size {
		return bytes.Equal(kept, legacyFingerprint(path, body))
	}
	return bytes.Equal(kept, fp)
}

// legacyFingerprint is the fingerprint of answers kept before fingerprintJCS.
func legacyFingerprint(path string, body []byte) []byte {
	return sum(path, legacyCanonicalJSON(body), nil)
}

func sum(path string, canonical, prefix []byte) []byte {
	h := sha256.New()
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write(canonical)
	return h.Sum(prefix)
}

func legacyCanonicalJSON(body []byte) []byte {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return body
	}
	out, err := json.Marshal(v) // map keys come out sorted
	if err != nil {
		return body
	}
	return out
}
