package httpapi

import _ "embed"

// OpenAPI is the OpenAPI 3.1 description of person's HTTP API, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte
