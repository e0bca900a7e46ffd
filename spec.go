// Package pushd holds what the whole module shares at its root: the API
// description every other package serves and tests against.
package pushd

import _ "embed"

// OpenAPI is openapi.yaml, the description of pushd's HTTP API. The server
// serves it at /openapi.yaml and renders /docs from it; the api tests keep
// it equal to the router and valid OpenAPI 3.1.
//
//go:embed openapi.yaml
var OpenAPI []byte
