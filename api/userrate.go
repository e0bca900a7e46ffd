package api

import (
	"fmt"
	"net/http"

	"github.com/pushd/pushd/stream"
)

// userRateAllowed applies --user-rate-limit: messages per second published
// to one user (broadcasts aside), so one runaway producer cannot flood a
// browser. A batch takes all its users' tokens or none; over the limit the
// whole request is answered 429 naming the user, and nothing is stored.
func (s *Server) userRateAllowed(w http.ResponseWriter, r *http.Request, drafts []stream.Draft) bool {
	if s.userLimiter == nil {
		return true
	}
	want := make(map[string]int, 1)
	for _, d := range drafts {
		if d.UserID != "" {
			want[d.UserID]++
		}
	}
	if len(want) == 0 {
		return true
	}
	ok, user, wait := s.userLimiter.allowN(want)
	if ok {
		return true
	}
	s.metrics.limited[limitUserRate].Inc()
	msg := fmt.Sprintf("too many messages for user %q (--user-rate-limit); nothing was stored, retry after the Retry-After delay", user)
	if wait == 0 {
		// More messages for one user than the burst: never allowed at once.
		msg = fmt.Sprintf("%d messages for user %q in one request exceed the burst of %d (--user-rate-burst); nothing was stored, send fewer at a time",
			want[user], user, s.userLimiter.burst)
		wait = s.opts.RetryAfter
	}
	s.log.Debug("publish refused", "limit", limitNames[limitUserRate], "user", user, "request_id", requestID(r))
	retryAfter(w, wait)
	writeError(w, http.StatusTooManyRequests, codeRateLimited, msg)
	return false
}
