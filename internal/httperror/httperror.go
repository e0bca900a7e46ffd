// Package httperror names the error codes of pushd's HTTP answers (CONTRACT
// §5) and writes the one JSON error shape they share,
// {"error":{"code","message"}}, for the REST API and the subscriber
// endpoints alike.
package httperror

import (
	"encoding/json"
	"net/http"
)

// Error codes, the "code" of an error answer.
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooLarge         = "payload_too_large"
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
	CodeConflict         = "conflict"
	CodeOutcomeUnknown   = "outcome_unknown"
)

type body struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Write answers status with the JSON error {"error":{"code","message"}},
// one line, never cached.
func Write(w http.ResponseWriter, status int, code, msg string) {
	var b body
	b.Error.Code = code
	b.Error.Message = msg
	out, _ := json.Marshal(b) // two strings: encoding cannot fail
	SetJSONHeaders(w.Header())
	w.WriteHeader(status)
	_, _ = w.Write(append(out, '\n'))
}

// SetJSONHeaders sets the headers of every JSON answer: its type, no
// caching, and no content sniffing.
func SetJSONHeaders(h http.Header) {
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	h["X-Content-Type-Options"] = noSniff
}

// The JSON answers' header values, as shared slices: assigning them skips
// http.Header.Set's canonicalisation and a slice per value on every
// request. Sharing is safe because nothing writes into a header's value
// slice in place (Add appends, and a capacity of one makes it copy).
var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
	noSniff         = []string{"nosniff"}
)
