package api

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync/atomic"
)

// Request ids minted here are a random per-process prefix and a counter:
// unique without a random read per request.
var (
	requestIDPrefix = func() string {
		var b [6]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}()
	requestIDSeq atomic.Uint64
)

// maxRequestIDLen bounds a caller's X-Request-Id.
const maxRequestIDLen = 200

// withRequestID gives every request an id: the caller's X-Request-Id when it
// is 1–200 visible ASCII characters (anything else could forge log lines),
// else a new one. It is echoed in the response and named by the request's
// log lines. The id travels in the request's own header (replacing a
// rejected one) rather than in a derived context: r.WithContext would copy
// the whole Request on every call.
func withRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header[requestIDHeader]
		if len(id) == 0 || !validRequestID(id[0]) {
			id = []string{newRequestID()}
			if r.Header == nil {
				r.Header = make(http.Header)
			}
			r.Header[requestIDHeader] = id
		}
		w.Header()[requestIDHeader] = id[:1:1]
		h.ServeHTTP(w, r)
	})
}

// newRequestID mints an id: the process prefix, a dash and the counter.
func newRequestID() string {
	var buf [64]byte
	b := append(append(buf[:0], requestIDPrefix...), '-')
	return string(strconv.AppendUint(b, requestIDSeq.Add(1), 10))
}

// requestIDHeader is X-Request-Id in canonical form.
const requestIDHeader = "X-Request-Id"

// validRequestID reports whether a caller's X-Request-Id is kept.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// requestID is the id withRequestID gave r.
func requestID(r *http.Request) string {
	if id := r.Header[requestIDHeader]; len(id) > 0 {
		return id[0]
	}
	return ""
}
