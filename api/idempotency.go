package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
)

// fingerprint identifies a request for its key: the path (which holds the path parameters)
// and the body in a canonical form, so that a client re-encoding the same JSON with other
// white space or field order is still "the same body".
func fingerprint(path string, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write(canonicalJSON(body))
	return h.Sum(nil)
}

func canonicalJSON(body []byte) []byte {
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
