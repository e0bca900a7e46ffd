// Command pushd is the real-time push server: SSE and WebSocket subscribers,
// a REST API for publishers, an ordered log in memory or PostgreSQL.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pushd/pushd/api"
	"github.com/pushd/pushd/auth"
	"github.com/pushd/pushd/persist"
	"github.com/pushd/pushd/stream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main without process globals: exit status 2 for bad configuration
// (one line on stderr), 1 for a failure while serving, 0 after a graceful
// shutdown.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			return runVersion(args[1:], stdout, stderr)
		case "check-config":
			return runCheckConfig(ctx, args[1:], getenv, stdout, stderr)
		}
	}
	migrateOnly := len(args) > 0 && args[0] == "migrate"
	if migrateOnly {
		args = args[1:]
	}
	cfg, err := parseConfig(args, getenv)
	if errors.Is(err, errHelp) {
		usage(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pushd: %v\n", oneLine(err))
		return 2
	}
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	hopts := &slog.HandlerOptions{Level: level}
	logger := slog.New(slog.NewTextHandler(stderr, hopts))
	if cfg.LogFormat == "json" {
		logger = slog.New(slog.NewJSONHandler(stderr, hopts))
	}

	if migrateOnly {
		if cfg.DatabaseURL == "" {
			fmt.Fprintln(stderr, "pushd: migrate needs --database-url or PUSH_DATABASE_URL")
			return 2
		}
		mctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := persist.Migrate(mctx, cfg.DatabaseURL); err != nil {
			fmt.Fprintf(stderr, "pushd: migrate: %v\n", oneLine(err))
			return 2
		}
		fmt.Fprintln(stdout, "pushd: schema is up to date")
		return 0
	}

	store, err := openStore(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "pushd: %v\n", oneLine(err))
		return 2
	}
	storeOpen := true
	closeStore := func() {
		if storeOpen {
			storeOpen = false
			// Its own deadline, not the shutdown's: the writer's commit in
			// flight is let finish rather than left in doubt.
			ctx, cancel := context.WithTimeout(context.Background(), storeCloseTimeout)
			defer cancel()
			if err := store.Close(ctx); err != nil {
				logger.Warn("store error: closing the store failed", "err", err)
			}
		}
	}
	defer closeStore()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		fmt.Fprintf(stderr, "pushd: listen on %s: %v\n", cfg.Addr, oneLine(err))
		return 2
	}

	tokens := auth.NewTokens(cfg.JWTSecret, cfg.TokenTTL)
	manager := stream.NewManager(store, stream.Config{
		HeartbeatInterval: cfg.HeartbeatInterval,
		QueueLimit:        cfg.SendQueue,
		Writers:           cfg.Writers,
		MaxConnections:    cfg.MaxConnections, MaxConnectionsPerUser: cfg.MaxConnectionsPerUser,
		Logger: logger,
	})
	srv := api.New(manager, api.Options{
		APIKey: cfg.APIKey, Tokens: tokens, AuthRequired: cfg.AuthRequired, AuthTimeout: cfg.AuthTimeout,
		HeartbeatTimeout: cfg.HeartbeatTimeout,
		AllowedOrigins:   cfg.origins(), MaxMessageBytes: cfg.MaxMessageBytes, MaxBatchBytes: cfg.MaxBatchBytes, PublicURL: cfg.PublicURL,
		SSEPadding: cfg.SSEPadding, RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst,
		ConnectRateLimit: cfg.ConnectRateLimit, ConnectRateBurst: cfg.ConnectRateBurst,
		UserRateLimit: cfg.UserRateLimit, UserRateBurst: cfg.UserRateBurst, TrustedProxies: cfg.proxies,
		WSCompression: cfg.WSCompression,
		Logger:        logger,
	})
	conns := &connTracker{fresh: map[net.Conn]struct{}{}}
	httpSrv := &http.Server{
		Handler: srv,
		// Slowloris: headers within the timeout and under the size limit
		// (431 above it); REST bodies have their own read deadline.
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		ConnState:         conns.track,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	expireCtx, stopExpire := context.WithCancel(context.Background())
	defer stopExpire()
	if ex, ok := store.(stream.Expirer); ok {
		go expireLoop(expireCtx, ex, cfg.OfflineTTL, srv.StoreTimer("expire"), logger)
	}

	if cfg.PprofAddr != "" {
		go servePprof(cfg.PprofAddr, logger)
	}
	printBanner(stdout, cfg, ln.Addr(), tokens, store)

	serveErr := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			serveErr <- httpSrv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			serveErr <- httpSrv.Serve(ln)
		}
	}()

	select {
	case err := <-serveErr:
		logger.Error("server stopped", "err", err)
		return 1
	case <-ctx.Done():
	}
	shutdown(cfg.ShutdownTimeout, srv, ln, serveErr, manager, httpSrv, conns, closeStore, logger)
	return 0
}

// storeCloseTimeout bounds closing the store; the PostgreSQL writer's
// commit in flight takes at most 15 s (its commit timeout).
const storeCloseTimeout = 15 * time.Second

// maxHeaderBytes bounds a request's headers (a token in the URL is a few
// hundred bytes).
const maxHeaderBytes = 32 << 10

// shutdown is CONTRACT §9's graceful stop, all within timeout: readiness
// fails and subscribers are refused at once, the listener closes, streams
// end (SSE with a jittered retry:, WebSocket 1012), connections that never
// sent a request are closed, requests in flight finish and are answered, the
// store closes; the outcome is logged.
func shutdown(timeout time.Duration, srv *api.Server, ln net.Listener, serveErr <-chan error, manager *stream.Manager,
	httpSrv *http.Server, conns *connTracker, closeStore func(), logger *slog.Logger) {
	start := time.Now()
	logger.Info("shutting down", "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	srv.Drain()
	_ = ln.Close()
	if err := manager.Shutdown(ctx); err != nil {
		logger.Warn("shutdown: sessions did not all end, or the delivered cursors were not written, in time", "err", err)
	}
	select {
	case <-serveErr: // Serve has returned: every accepted connection is tracked
	case <-ctx.Done():
	}
	// A connection accepted just before the listener closed has not sent
	// its request yet: http.Server.Shutdown would wait up to 5 s for it
	// (it counts a new connection as idle only after that). Such a client
	// holds no answer; give its request a moment, then close it.
	conns.closeFresh(ctx, freshGrace)
	outcome := "drained"
	if err := httpSrv.Shutdown(ctx); err != nil {
		_ = httpSrv.Close()
		outcome = "cut short"
	}
	if ctx.Err() != nil {
		outcome = "cut short"
	}
	closeStore()
	logger.Info("shutdown complete", "outcome", outcome, "took", time.Since(start).Round(time.Millisecond))
}

// freshGrace is how long a connection accepted at the moment of shutdown
// may take to send its request headers.
const freshGrace = 200 * time.Millisecond

func openStore(ctx context.Context, cfg *config, logger *slog.Logger) (stream.Store, error) {
	r := stream.Retention{MaxCount: cfg.OfflineMaxCount, TTL: cfg.OfflineTTL, IdempotencyTTL: cfg.IdempotencyTTL}
	if !cfg.OfflineEnabled {
		r.MaxCount = 0
	}
	if cfg.DatabaseURL == "" {
		logger.Warn("using the embedded in-memory store: messages are NOT durable across restarts (set --database-url for PostgreSQL)")
		return persist.NewMemory(r), nil
	}
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	store, err := persist.OpenPostgres(octx, cfg.DatabaseURL, r, logger,
		persist.WithChangeDataLimit(int(cfg.MaxMessageBytes)))
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return store, nil
}

// expireLoop drops expired and over-cap messages in the background, off the
// publish path. It runs here, next to the store's opening and closing,
// rather than in the Manager: expiry is the store's upkeep under its
// retention policy (which the Manager never sees), and it must stop with the
// store, not with the sessions.
func expireLoop(ctx context.Context, store stream.Expirer, ttl time.Duration, observe func(time.Time), logger *slog.Logger) {
	every := min(max(ttl/20, time.Second), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			start := time.Now()
			n, err := store.Expire(ctx)
			observe(start)
			if err != nil {
				logger.Warn("store error: expiry run failed", "err", err)
			} else if n > 0 {
				logger.Debug("expired messages", "count", n)
			}
		}
	}
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// servePprof exposes the profiler on its own listener, never on the public
// address.
func servePprof(addr string, logger *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		logger.Warn("pprof listener stopped", "addr", addr, "err", err)
	}
}
