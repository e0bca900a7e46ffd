package api

import (
	"errors"
	"net/http"

	"github.com/pushd/pushd/stream"
)

// storeError answers a REST request whose store call failed. An outage
// (stream.ErrUnavailable: nothing was done, a retry may succeed) is 503
// unavailable with Retry-After and the message unavailable; anything else is
// a bug or bad data, not an outage, so it is 500 internal with a generic
// message, and the error goes to the log with the request id. what names
// the call in the log line.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, what, unavailable string, err error) {
	if errors.Is(err, stream.ErrUnavailable) {
		s.log.Warn("store error: "+what+" failed, store unavailable", "err", err, "request_id", requestID(r))
		retryAfter(w, s.opts.RetryAfter)
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, unavailable)
		return
	}
	s.log.Error("store error: "+what+" failed", "err", err, "request_id", requestID(r))
	writeError(w, http.StatusInternalServerError, codeInternal, "internal error")
}
