// Package api is pushd's HTTP surface: the REST API of CONTRACT §5
// (httprouter), API-key auth, JSON errors, the subscriber endpoints /sse and
// /ws, health, metrics, and the embedded browser client and demo page.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/pushd/pushd/auth"
	"github.com/pushd/pushd/sse"
	"github.com/pushd/pushd/stream"
	"github.com/pushd/pushd/ws"
)

// Options configure the HTTP surface.
type Options struct {
	APIKey           string
	Tokens           *auth.Tokens
	AuthRequired     bool
	AuthTimeout      time.Duration
	HeartbeatTimeout time.Duration
	// AllowedOrigins are the origins allowed by CORS and the WebSocket
	// Origin check: empty means the same origin only, "*" any.
	AllowedOrigins  []string
	MaxMessageBytes int64
	// MaxBatchBytes is the body limit of POST /api/ws/push/batch.
	MaxBatchBytes int64
	// PublicURL is the base of wsUrl/sseUrl when behind a proxy.
	PublicURL  string
	SSEPadding int
	// RateLimit is REST requests per second per client address (0 = off),
	// with bursts of RateBurst.
	RateLimit  float64
	RateBurst  int
	RetryAfter time.Duration
	// WriteTimeout bounds one socket write to a subscriber (a peer that
	// takes nothing for this long is cut off as too slow); 0 means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// ConnectRateLimit is new subscriber connections per second per client
	// address (0 = off), with bursts of ConnectRateBurst.
	ConnectRateLimit float64
	ConnectRateBurst int
	// UserRateLimit is messages per second published to one user,
	// broadcasts aside (0 = off), with bursts of UserRateBurst.
	UserRateLimit float64
	UserRateBurst int
	// TrustedProxies may name the client in X-Forwarded-For (the
	// per-address limits and remoteAddr); nobody else may.
	TrustedProxies []netip.Prefix
	// WSCompression offers permessage-deflate on /ws.
	WSCompression bool
	// BodyReadTimeout bounds reading one REST request body, so a client
	// trickling it cannot hold a handler. Default 30s.
	BodyReadTimeout time.Duration
	Logger          *slog.Logger
}

// Defaults of Options, taken when a field is zero; cmd/pushd's flags take
// theirs from here.
const (
	// DefaultMaxMessageBytes is Options.MaxMessageBytes (--max-message-bytes).
	DefaultMaxMessageBytes = 65536
	// DefaultMaxBatchBytes is Options.MaxBatchBytes (--max-batch-bytes).
	DefaultMaxBatchBytes = 16 << 20
	// DefaultWriteTimeout is how long one socket write to a subscriber may
	// take (Options.WriteTimeout).
	DefaultWriteTimeout = 10 * time.Second
	// DefaultRetryAfter is Options.RetryAfter.
	DefaultRetryAfter = time.Second
	// DefaultBodyReadTimeout is Options.BodyReadTimeout.
	DefaultBodyReadTimeout = 30 * time.Second
)

// Fixed settings of the transports, which no option changes.
const (
	// sseRetry is the reconnection delay an SSE stream announces (retry:).
	sseRetry = time.Second
	// sseShutdownRetry spreads the reconnections of the streams ended by a
	// shutdown over up to this long.
	sseShutdownRetry = 3 * time.Second
	// wsReadLimit is the largest frame a WebSocket client may send (close
	// 1008 above it): the client only sends heartbeats and its auth message.
	wsReadLimit = 64 << 10
	// wsSlowGrace is how long a write in flight may still take once a
	// WebSocket is cut off as too slow, so its frame ends and the 4002 close
	// frame follows.
	wsSlowGrace = 2 * time.Second
)

// Server is the HTTP handler of one pushd node. It is safe for concurrent
// use by multiple goroutines, as net/http requires.
type Server struct {
	opts    Options
	manager *stream.Manager
	log     *slog.Logger
	router  *httprouter.Router
	handler http.Handler
	metrics *metrics
	// limiter (--rate-limit), connectLimiter (--connect-rate-limit) and
	// userLimiter (--user-rate-limit) are nil when off.
	limiter        *keyedLimiter
	connectLimiter *keyedLimiter
	userLimiter    *keyedLimiter
	proxies        trustedProxies
	// draining is set by Drain: /readyz fails and subscribers are refused.
	draining atomic.Bool
	routes   []route
}

// route is one registered method and path; the openapi test walks them.
type route struct {
	Method, Path string
	// asset marks a file of web/ other than the documented ones (its
	// styles and scripts), which is not part of the API description.
	asset bool
}

// New builds the server around manager.
func New(manager *stream.Manager, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = DefaultRetryAfter
	}
	if opts.BodyReadTimeout <= 0 {
		opts.BodyReadTimeout = DefaultBodyReadTimeout
	}
	s := &Server{opts: opts, manager: manager, log: opts.Logger, proxies: opts.TrustedProxies}
	s.metrics = newMetrics(manager)
	if opts.RateLimit > 0 {
		s.limiter = newKeyedLimiter(opts.RateLimit, opts.RateBurst, defaultMaxKeys)
	}
	if opts.ConnectRateLimit > 0 {
		s.connectLimiter = newKeyedLimiter(opts.ConnectRateLimit, opts.ConnectRateBurst, defaultMaxKeys)
	}
	if opts.UserRateLimit > 0 {
		s.userLimiter = newKeyedLimiter(opts.UserRateLimit, opts.UserRateBurst, defaultMaxKeys)
	}
	s.router = httprouter.New()
	// Browser WebSockets do not follow redirects; answer paths exactly.
	s.router.RedirectTrailingSlash = false
	s.router.RedirectFixedPath = false
	s.router.HandleOPTIONS = true
	s.router.GlobalOPTIONS = http.HandlerFunc(s.preflight)
	s.router.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, codeNotFound, "no route for "+r.Method+" "+r.URL.Path)
	})
	s.router.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, codeMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+w.Header().Get("Allow"))
	})
	s.router.PanicHandler = func(w http.ResponseWriter, r *http.Request, v any) {
		s.log.Error("handler panic", "path", r.URL.Path, "panic", v, "request_id", requestID(r))
		writeError(w, http.StatusInternalServerError, codeInternal, "internal error")
	}

	subs := &auth.Subscribers{Tokens: opts.Tokens, Required: opts.AuthRequired}
	sseHandler := &sse.Handler{
		Manager: manager, Subscribers: subs,
		Padding: opts.SSEPadding, Retry: sseRetry, WriteTimeout: opts.WriteTimeout,
		OnRefused: s.refuse, ShutdownRetry: sseShutdownRetry, Logger: s.log,
	}
	wsHandler := &ws.Handler{
		Manager: manager, Subscribers: subs, CheckOrigin: s.originAllowed,
		HeartbeatTimeout: opts.HeartbeatTimeout,
		AuthTimeout:      opts.AuthTimeout, ReadLimit: wsReadLimit, WriteTimeout: opts.WriteTimeout,
		SlowGrace: wsSlowGrace, OnRefused: s.refuse, Compression: opts.WSCompression, Logger: s.log,
	}

	// Subscribers.
	s.handle("GET", "/sse", s.cors(s.admit(sseHandler)))
	s.handle("GET", "/ws", s.admit(wsHandler))
	// Publisher / admin REST API.
	s.api("POST", "/api/ws/connect", s.handleConnect)
	s.api("POST", "/api/ws/push/dashboard", s.handlePush("dashboard"))
	s.api("POST", "/api/ws/push/data-change", s.handlePush("data-change"))
	s.api("POST", "/api/ws/push/notification", s.handlePush("notification"))
	s.api("POST", "/api/ws/push/audit-log", s.handlePush("audit-log"))
	s.api("POST", "/api/ws/push/batch", s.handleBatch)
	s.api("POST", "/api/ws/broadcast", s.handlePush("broadcast"))
	s.api("GET", "/api/ws/stats", s.handleStats)
	s.api("GET", "/api/ws/connections/:userId", s.handleConnections)
	s.api("POST", "/api/ws/disconnect/:userId", s.handleDisconnect)
	s.api("GET", "/api/ws/nodes", s.handleNodes)
	s.api("GET", tailRoute, s.handleTail)
	// Unauthenticated.
	s.handle("GET", "/healthz", http.HandlerFunc(s.handleHealth))
	s.handle("GET", "/readyz", http.HandlerFunc(s.handleReady))
	s.handle("GET", "/metrics", s.metrics.handler())
	s.registerStatic()
	s.registerDocs()
	s.registerAdminConsole()

	s.handler = withRequestID(s.metrics.instrument(s.router))
	return s
}

// Drain begins a shutdown: /readyz answers 503 and new subscriber
// connections are refused with 503 and Retry-After, while REST requests in
// flight finish.
func (s *Server) Drain() { s.draining.Store(true) }

func (s *Server) handle(method, path string, h http.Handler) {
	s.router.Handler(method, path, tagRoute(method+" "+path, h))
	s.routes = append(s.routes, route{Method: method, Path: path})
	if method == http.MethodGet && path != "/sse" && path != "/ws" {
		// RFC 9110 §9.1: HEAD wherever GET is (load balancers probe
		// HEAD /healthz); net/http drops the body. Not for the streams.
		s.router.Handler(http.MethodHead, path, tagRoute("HEAD "+path, h))
	}
}

// api registers a REST route behind CORS, rate limiting and the API key.
func (s *Server) api(method, path string, h http.HandlerFunc) {
	s.handle(method, path, s.cors(s.rateLimited(s.requireKey(h))))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(s.proxies) > 0 {
		if addr := s.proxies.clientAddr(r); addr != r.RemoteAddr {
			r = r.WithContext(r.Context()) // a shallow copy: never change the caller's request
			r.RemoteAddr = addr
		}
	}
	s.handler.ServeHTTP(w, r)
}

func (s *Server) requireKey(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, ok := auth.Bearer(r)
		if !ok || !auth.KeyMatches(key, s.opts.APIKey) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pushd"`)
			writeError(w, http.StatusUnauthorized, codeUnauthorized, "missing or wrong API key: send Authorization: Bearer <api key>")
			return
		}
		h(w, r)
	}
}

// originAllowed implements --allowed-origins for CORS and the WebSocket
// Origin check: no Origin (not a browser) or the request's own host is
// always allowed.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range s.opts.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	_, host, ok := strings.Cut(origin, "://")
	return ok && strings.EqualFold(host, r.Host)
}

func (s *Server) setCORS(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || len(s.opts.AllowedOrigins) == 0 || !s.originAllowed(r) {
		return false
	}
	h := w.Header()
	if len(s.opts.AllowedOrigins) == 1 && s.opts.AllowedOrigins[0] == "*" {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
	}
	h.Set("Access-Control-Expose-Headers", "Retry-After, X-Request-Id, Idempotent-Replayed")
	return true
}

func (s *Server) cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.setCORS(w, r)
		h.ServeHTTP(w, r)
	})
}

func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Access-Control-Request-Method") == "" || !s.setCORS(w, r) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", w.Header().Get("Allow"))
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, X-Request-Id, Idempotency-Key")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "timestamp": stream.NowMillis()})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "shutting down")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err := s.manager.Ready(ctx)
	s.metrics.storeOps["ping"].Observe(time.Since(start).Seconds())
	if err != nil {
		// Not ready, whatever the cause: a probe asks "send traffic here?",
		// and a store failing its ping in any way says no.
		s.log.Warn("store error: readiness ping failed", "err", err, "request_id", requestID(r))
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "store unreachable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "timestamp": stream.NowMillis()})
}
