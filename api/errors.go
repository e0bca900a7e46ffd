package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/pushd/pushd/internal/httperror"
)

// Error codes of CONTRACT §5, named in internal/httperror for the API and
// the subscriber endpoints alike.
const (
	codeBadRequest       = httperror.CodeBadRequest
	codeUnauthorized     = httperror.CodeUnauthorized
	codeNotFound         = httperror.CodeNotFound
	codeMethodNotAllowed = httperror.CodeMethodNotAllowed
	codeTooLarge         = httperror.CodeTooLarge
	codeRateLimited      = httperror.CodeRateLimited
	codeUnavailable      = httperror.CodeUnavailable
	codeInternal         = httperror.CodeInternal
	codeConflict         = httperror.CodeConflict
	codeOutcomeUnknown   = httperror.CodeOutcomeUnknown
)

// writeError writes the JSON error shape {"error":{"code","message"}}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	httperror.Write(w, status, code, msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal","message":"encoding the response failed"}}`)
	}
	writeJSONBody(w, status, append(body, '\n'))
}

// writeJSONBody answers status with body, an encoded JSON value.
func writeJSONBody(w http.ResponseWriter, status int, body []byte) {
	httperror.SetJSONHeaders(w.Header())
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func retryAfter(w http.ResponseWriter, d time.Duration) {
	secs := int(d.Seconds() + 0.999)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
}
