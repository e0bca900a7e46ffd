package sse

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushd/pushd/auth"
	"github.com/pushd/pushd/internal/connwrite"
	"github.com/pushd/pushd/internal/httperror"
	"github.com/pushd/pushd/stream"
)

// Handler serves GET /sse.
type Handler struct {
	Manager     *stream.Manager
	Subscribers *auth.Subscribers
	// Padding is the size of the comment sent first so buffering proxies
	// flush the stream start.
	Padding int
	// Retry is the reconnect delay hinted to EventSource.
	Retry time.Duration
	// WriteTimeout bounds one write; a peer that does not read is dropped.
	WriteTimeout time.Duration
	// OnRefused answers a connection the manager did not admit (a limit,
	// shutdown) or could not attach (store unavailable), before any stream
	// byte; err is from Manager.Admit or Manager.Open, one that
	// stream.Refused reports.
	OnRefused func(w http.ResponseWriter, r *http.Request, err error)
	// ShutdownRetry spreads reconnects after a shutdown: each stream ends
	// with a retry: hint drawn uniformly from [ShutdownRetry/4,
	// ShutdownRetry], so a thousand clients do not come back in the same
	// millisecond. Zero: the stream just ends.
	ShutdownRetry time.Duration
	// Logger records the faults answered with 500 (slog.Default when nil).
	Logger *slog.Logger

	hangups hangups

	preambleOnce  sync.Once
	preambleBytes []byte
}

// ServeHTTP implements http.Handler: it authenticates the subscriber, opens
// its session (replaying what it missed after Last-Event-ID) and answers
// with the event stream, or with a JSON error before any stream byte.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, err := h.Subscribers.User(r)
	if err != nil {
		h.Manager.AuthFailed("sse", r.RemoteAddr, err)
		httperror.Write(w, http.StatusUnauthorized, httperror.CodeUnauthorized, err.Error())
		return
	}
	if err := h.Manager.Admit(user); err != nil {
		h.OnRefused(w, r, err)
		return
	}
	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = r.URL.Query().Get("lastEventId")
	}
	// The writer to abort exists only once the connection is taken over,
	// after Open: until then a session cut off as slow has nothing to
	// unblock.
	var abort atomic.Pointer[func()]
	s, err := h.Manager.Open(r.Context(), stream.SessionSpec{
		UserID: user, Transport: "sse", RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent(), LastEventID: lastID,
		OnSlow: func() {
			if f := abort.Load(); f != nil {
				(*f)() // unblock a write stuck on a peer that does not read
			}
		},
	})
	if err != nil {
		h.openFailed(w, r, err)
		return
	}

	hdr := w.Header()
	hdr["Content-Type"] = eventStream
	hdr["Cache-Control"] = noCache
	hdr["X-Accel-Buffering"] = accelNo
	preamble := h.preamble()

	// HTTP/1.x: take the connection over once the headers are decided, so
	// net/http's goroutine and buffers are released and an idle stream costs
	// no goroutine at all (the session's pump runs only while writing).
	if conn, brw, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = brw // nothing buffered to write; unread request bytes are dropped
		// The response head goes out with the first frames (connected and
		// the replay, queued by Open): one write per connect.
		c := &rawConn{Writer: connwrite.New(conn, h.WriteTimeout), conn: conn, h: h,
			head: [2][]byte{responseHead(r.ProtoMinor, hdr), preamble}}
		abort.Store(new(c.Abort))
		c.unwatch = h.hangups.watch(conn, s.Close)
		s.Start(c)
		return
	}

	// HTTP/2 (TLS): streams cannot be taken over; the handler goroutine
	// stays until the session finishes.
	rc := http.NewResponseController(w)
	abort.Store(new(func() { _ = rc.SetWriteDeadline(time.Now()) }))
	w.WriteHeader(http.StatusOK)
	c := &writerConn{w: w, rc: rc, timeout: h.WriteTimeout, done: make(chan struct{}), h: h}
	if c.write(preamble) != nil {
		s.Close()
		return
	}
	s.Start(c)
	select {
	case <-c.done:
	case <-r.Context().Done():
		s.Close()
		<-c.done
	}
}

// openFailed answers a connection Manager.Open refused: nothing when the client
// went away meanwhile, 503 or 429 with Retry-After through OnRefused for a
// refusal (a limit, a shutdown, a store outage), else 500 and a log line.
func (h *Handler) openFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, context.Canceled):
	case stream.Refused(err):
		h.OnRefused(w, r, err)
	default:
		logger := h.Logger
		if logger == nil {
			logger = slog.Default()
		}
		logger.Error("sse: opening the stream failed", "remote", r.RemoteAddr, "err", err, "request_id", w.Header().Get("X-Request-Id"))
		httperror.Write(w, http.StatusInternalServerError, httperror.CodeInternal, "internal error")
	}
}

// The stream's fixed headers, as shared value slices (nothing writes into
// a header value in place).
var (
	eventStream = []string{"text/event-stream"}
	noCache     = []string{"no-cache"}
	accelNo     = []string{"no"}
)

// preamble is the retry: hint and the padding every stream starts with,
// built once: Retry and Padding do not change after the first request.
func (h *Handler) preamble() []byte {
	h.preambleOnce.Do(func() { h.preambleBytes = h.buildPreamble() })
	return h.preambleBytes
}

func (h *Handler) buildPreamble() []byte {
	var b bytes.Buffer
	b.WriteString("retry: ")
	b.WriteString(strconv.FormatInt(h.Retry.Milliseconds(), 10))
	b.WriteString("\n")
	if h.Padding > 0 {
		b.WriteByte(':')
		b.Write(bytes.Repeat([]byte{' '}, h.Padding))
		b.WriteString("\n")
	}
	b.WriteString("\n")
	return b.Bytes()
}

// responseHead renders the status line and headers of a hijacked response.
// There is no Content-Length and no chunking: the stream ends when the
// connection closes.
func responseHead(protoMinor int, hdr http.Header) []byte {
	n := 64
	var keysBuf [16]string
	keys := keysBuf[:0]
	for k, vs := range hdr {
		keys = append(keys, k)
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	slices.Sort(keys)
	b := make([]byte, 0, n)
	if protoMinor == 0 {
		b = append(b, "HTTP/1.0 200 OK\r\n"...)
	} else {
		b = append(b, "HTTP/1.1 200 OK\r\n"...)
	}
	for _, k := range keys {
		for _, v := range hdr[k] {
			b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
		}
	}
	b = append(b, "Date: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	return append(b, "\r\n\r\n"...)
}

// lastFrame is what a stream ending for r says last: a disconnect event (the
// client must not come back), a jittered retry: hint on shutdown, else
// nothing (a slow consumer's socket is full anyway).
func (h *Handler) lastFrame(r stream.CloseReason) []byte {
	switch {
	case r.Kind == stream.CloseDisconnect:
		return disconnectFrame(r.Reason)
	case r.Kind == stream.CloseShutdown && h.ShutdownRetry > 0:
		return retryFrame(h.ShutdownRetry/4 + rand.N(h.ShutdownRetry*3/4+1))
	}
	return nil
}

// rawConn is a hijacked HTTP/1.x connection: queued frames go out in one
// writev.
type rawConn struct {
	*connwrite.Writer
	conn    net.Conn
	h       *Handler
	unwatch func()
	// head is the response head and the preamble, until the first write
	// sends them ahead of its frames (only the session's writer touches
	// it).
	head [2][]byte
	sent bool
}

// withHead appends the response head to bufs when it has not gone out yet.
func (c *rawConn) withHead(bufs net.Buffers) net.Buffers {
	if c.sent {
		return bufs
	}
	c.sent = true
	return append(bufs, c.head[0], c.head[1])
}

func (c *rawConn) Write(items []stream.Item) error {
	return c.Send(func(bufs net.Buffers) net.Buffers { return frames(c.withHead(bufs), items) })
}

// TryWrite implements stream.InlineWriter.
func (c *rawConn) TryWrite(items []stream.Item) (bool, error) {
	return c.TrySend(func(bufs net.Buffers) net.Buffers { return frames(c.withHead(bufs), items) })
}

func (c *rawConn) Finish(r stream.CloseReason) {
	// A disconnect is announced so the client does not come back; slow
	// consumers and restarts just see the stream end and resume.
	// A stream ending before its first write still gets its head.
	if last := c.h.lastFrame(r); last != nil || !c.sent {
		_ = c.Send(func(bufs net.Buffers) net.Buffers {
			if bufs = c.withHead(bufs); last != nil {
				bufs = append(bufs, last)
			}
			return bufs
		})
	}
	c.unwatch()
	_ = c.conn.Close()
}

// writerConn streams through an http.ResponseWriter (HTTP/2).
type writerConn struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     bytes.Buffer
	done    chan struct{}
	h       *Handler
}

func (c *writerConn) write(b []byte) error {
	_ = c.rc.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.rc.Flush()
}

func (c *writerConn) Write(items []stream.Item) error {
	c.buf.Reset()
	for _, b := range frames(nil, items) {
		c.buf.Write(b)
	}
	return c.write(c.buf.Bytes())
}

func (c *writerConn) Finish(r stream.CloseReason) {
	if last := c.h.lastFrame(r); last != nil {
		_ = c.write(last)
	}
	close(c.done)
}
