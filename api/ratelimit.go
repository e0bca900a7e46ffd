package api

import (
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyedLimiter keeps one token bucket per key (a client address, a user) in
// a table of at most maxKeys buckets, so a flood of distinct keys cannot grow
// it without bound. When the table is full, buckets that have refilled are
// dropped first (a full bucket is the same as a new one, so nothing is
// forgotten); if a flood leaves none, arbitrary buckets go, which at worst
// gives those keys a fresh burst.
type keyedLimiter struct {
	mu      sync.Mutex
	perSec  rate.Limit
	burst   int
	maxKeys int
	buckets map[string]*rate.Limiter
	swept   time.Time
}

// defaultMaxKeys bounds each limiter's table: about 200 bytes a bucket.
const defaultMaxKeys = 100_000

func newKeyedLimiter(perSec float64, burst, maxKeys int) *keyedLimiter {
	if burst < 1 {
		burst = max(int(perSec), 1)
	}
	return &keyedLimiter{perSec: rate.Limit(perSec), burst: burst, maxKeys: maxKeys, buckets: make(map[string]*rate.Limiter)}
}

// allow takes one token of key; when there is none it reports how long to
// wait.
func (l *keyedLimiter) allow(key string) (bool, time.Duration) {
	ok, _, wait := l.allowN(map[string]int{key: 1})
	return ok, wait
}

// allowN takes n tokens of each key in want, all or none. When one key lacks
// them it returns that key and how long to wait (0 when n exceeds the burst
// and can never be granted at once).
func (l *keyedLimiter) allowN(want map[string]int) (ok bool, denied string, wait time.Duration) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	taken := make([]*rate.Reservation, 0, len(want))
	for key, n := range want {
		r := l.bucketLocked(key, now).ReserveN(now, n)
		if d := r.DelayFrom(now); !r.OK() || d > 0 {
			r.CancelAt(now)
			for _, t := range taken {
				t.CancelAt(now)
			}
			if !r.OK() {
				d = 0
			}
			return false, key, d
		}
		taken = append(taken, r)
	}
	return true, "", 0
}

func (l *keyedLimiter) bucketLocked(key string, now time.Time) *rate.Limiter {
	if b := l.buckets[key]; b != nil {
		return b
	}
	if len(l.buckets) >= l.maxKeys {
		l.evictLocked(now)
	}
	b := rate.NewLimiter(l.perSec, l.burst)
	l.buckets[key] = b
	return b
}

// evictLocked makes room: refilled buckets at most once a second (a walk of
// the table), then arbitrary ones, a sixteenth of the table at a time so a
// flood does not pay for an eviction on every new key.
func (l *keyedLimiter) evictLocked(now time.Time) {
	if now.Sub(l.swept) >= time.Second {
		l.swept = now
		for k, b := range l.buckets {
			if b.TokensAt(now) >= float64(l.burst) {
				delete(l.buckets, k)
			}
		}
	}
	if len(l.buckets) < l.maxKeys {
		return
	}
	drop := max(l.maxKeys/16, 1)
	for k := range l.buckets { // map order: arbitrary victims
		delete(l.buckets, k)
		if drop--; drop == 0 {
			break
		}
	}
}

// size is the number of buckets held (tests).
func (l *keyedLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// rateLimited applies --rate-limit per client address to a REST route.
func (s *Server) rateLimited(h http.HandlerFunc) http.HandlerFunc {
	if s.limiter == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := s.limiter.allow(hostOf(r.RemoteAddr)); !ok {
			s.metrics.limited[limitREST].Inc()
			retryAfter(w, wait)
			writeError(w, http.StatusTooManyRequests, codeRateLimited, "too many requests; retry after the Retry-After delay")
			return
		}
		h(w, r)
	}
}
