package httpapi

import _ "embed"

// OpenAPI is the OpenAPI 3.1 description of score's public API, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte
