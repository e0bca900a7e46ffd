package api

import (
	"errors"
	"net/http"

	"github.com/pushd/pushd/stream"
)

// Limits that answer 429 or 503 (CONTRACT §9), the label values of
// pushd_rate_limited_total.
const (
	limitMaxConnections = iota
	limitMaxPerUser
	limitConnectRate
	limitUserRate
	limitREST
	numLimits
)

var limitNames = [numLimits]string{"max_connections", "max_connections_per_user", "connect_rate", "user_rate", "rest_rate"}

// admit guards the subscriber endpoints with what needs no token: shutdown,
// --connect-rate-limit per client address and --max-connections. Checked
// before the token, so a flood of connects costs no signature checks; the
// per-user limit follows once the user is known (refuse).
func (s *Server) admit(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			s.refuse(w, r, stream.ErrShuttingDown)
			return
		}
		if s.connectLimiter != nil {
			if ok, wait := s.connectLimiter.allow(hostOf(r.RemoteAddr)); !ok {
				s.metrics.limited[limitConnectRate].Inc()
				s.log.Debug("connection refused", "limit", limitNames[limitConnectRate], "remote", r.RemoteAddr, "request_id", requestID(r))
				retryAfter(w, wait)
				writeError(w, http.StatusTooManyRequests, codeRateLimited, "too many new connections from this address; retry after the Retry-After delay")
				return
			}
		}
		if err := s.manager.Admit(""); err != nil {
			s.refuse(w, r, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// refuse answers a subscriber connection the manager did not admit or could
// not attach, before any stream byte: 429 for the per-user limit, 503 with
// Retry-After for a full node, shutdown and a store outage.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	limit := -1
	status, msg := http.StatusServiceUnavailable, "store unavailable: cannot replay the stream"
	switch {
	case errors.Is(err, stream.ErrShuttingDown):
		msg = "server shutting down; reconnect (to another node) after the Retry-After delay"
	case errors.Is(err, stream.ErrNodeFull):
		limit, msg = limitMaxConnections, "this node holds its maximum number of connections (--max-connections); retry after the Retry-After delay"
	case errors.Is(err, stream.ErrUserFull):
		limit, status, msg = limitMaxPerUser, http.StatusTooManyRequests, "this user holds its maximum number of connections on this node (--max-connections-per-user)"
	}
	code := codeUnavailable
	if status == http.StatusTooManyRequests {
		code = codeRateLimited
	}
	if limit >= 0 {
		s.metrics.limited[limit].Inc()
		s.log.Debug("connection refused", "limit", limitNames[limit], "remote", r.RemoteAddr, "request_id", requestID(r))
	}
	retryAfter(w, s.opts.RetryAfter)
	writeError(w, status, code, msg)
}
