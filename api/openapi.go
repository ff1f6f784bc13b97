package api

import _ "embed"

// openAPISpec is the OpenAPI 3.1 description of this API, served at GET /openapi.yaml.
// openapi_test.go keeps it and the registered routes in step.
//
//go:embed openapi.yaml
var openAPISpec []byte

// OpenAPISpec returns the OpenAPI 3.1 document of the API (YAML).
func OpenAPISpec() []byte { return append([]byte(nil), openAPISpec...) }
