package api

import "net/http"

// The headers of every JSON answer, as shared value slices: assigning them
// skips http.Header.Set's canonicalisation and its slice per value on each
// request. Sharing is safe because nothing writes into a header's value
// slice in place (Add appends, and a capacity of one makes it copy).
var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
	noSniff         = []string{"nosniff"}
)

// writeJSONBody answers status with body, an encoded JSON value.
func writeJSONBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
