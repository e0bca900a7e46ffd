package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/pushd/pushd/api"
	"github.com/pushd/pushd/stream"
)

// config is every flag of CONTRACT §1 plus pushd's own additions; each flag
// --foo-bar has the environment variable PUSH_FOO_BAR, the flag winning.
type config struct {
	Addr              string
	DatabaseURL       string
	APIKey            string
	JWTSecret         string
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	OfflineEnabled    bool
	OfflineMaxCount   int
	OfflineTTL        time.Duration
	AuthRequired      bool
	AuthTimeout       time.Duration
	AllowedOrigins    string
	TLSCert, TLSKey   string
	MaxMessageBytes   int64
	MaxBatchBytes     int64
	PublicURL         string
	SSEPadding        int
	IdempotencyTTL    time.Duration
	// Additions beyond the contract's table.
	TokenTTL  time.Duration
	SendQueue int
	Writers   int
	RateLimit float64
	RateBurst int
	DemoUser  string
	LogLevel  string
	PprofAddr string
	// Operations (CONTRACT §9).
	LogFormat             string
	MaxConnections        int
	MaxConnectionsPerUser int
	ConnectRateLimit      float64
	ConnectRateBurst      int
	UserRateLimit         float64
	UserRateBurst         int
	TrustedProxies        string
	ShutdownTimeout       time.Duration
	ReadHeaderTimeout     time.Duration
	WSCompression         bool
	proxies               []netip.Prefix
	generatedKey          bool
	generatedJWT          bool
}

func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("pushd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Addr, "addr", ":3001", "listen address")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "PostgreSQL URL; empty = embedded in-memory store (not durable)")
	fs.StringVar(&c.APIKey, "api-key", "", "bearer key for the REST API (random and printed when empty)")
	fs.StringVar(&c.JWTSecret, "jwt-secret", "", "HMAC-SHA256 secret for subscriber tokens (random and printed when empty)")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", 30*time.Second, "heartbeat period on every transport")
	fs.DurationVar(&c.HeartbeatTimeout, "heartbeat-timeout", 10*time.Second, "a WebSocket peer silent for interval+timeout is closed")
	fs.BoolVar(&c.OfflineEnabled, "offline-enabled", true, "keep messages for replay and offline delivery")
	fs.IntVar(&c.OfflineMaxCount, "offline-max-count", 100, "newest messages kept per user")
	fs.DurationVar(&c.OfflineTTL, "offline-ttl", 24*time.Hour, "how long a kept message lives")
	fs.BoolVar(&c.AuthRequired, "auth-required", true, "subscribers must present a token")
	fs.DurationVar(&c.AuthTimeout, "auth-timeout", 10*time.Second, "a WebSocket that has not authenticated by then is closed")
	fs.StringVar(&c.AllowedOrigins, "allowed-origins", "", "comma-separated origins for CORS and the WebSocket Origin check; empty = same origin only; * = any")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "certificate file: serve HTTPS/WSS and HTTP/2")
	fs.StringVar(&c.TLSKey, "tls-key", "", "private key file for --tls-cert")
	fs.Int64Var(&c.MaxMessageBytes, "max-message-bytes", api.DefaultMaxMessageBytes, "largest accepted request body")
	fs.Int64Var(&c.MaxBatchBytes, "max-batch-bytes", api.DefaultMaxBatchBytes, "largest accepted body of POST /api/ws/push/batch (each message in it: --max-message-bytes)")
	fs.StringVar(&c.PublicURL, "public-url", "", "base URL used in wsUrl/sseUrl when behind a proxy")
	fs.IntVar(&c.SSEPadding, "sse-padding", 2048, "bytes of padding comment at the start of an SSE stream")
	fs.DurationVar(&c.IdempotencyTTL, "idempotency-ttl", stream.DefaultIdempotencyTTL, "how long a publish's Idempotency-Key is remembered")
	fs.DurationVar(&c.TokenTTL, "token-ttl", time.Hour, "lifetime of tokens minted by POST /api/ws/connect")
	fs.IntVar(&c.SendQueue, "send-queue", stream.DefaultQueueLimit, "live messages buffered per connection before it is cut off as too slow")
	fs.IntVar(&c.Writers, "fanout-writers", 0, "goroutines writing one fan-out to its connections; 0 = one per CPU")
	fs.Float64Var(&c.RateLimit, "rate-limit", 0, "REST API requests per second per client address; 0 = unlimited")
	fs.IntVar(&c.RateBurst, "rate-burst", 0, "burst allowed above --rate-limit (default: one second's worth)")
	fs.StringVar(&c.DemoUser, "demo-user", "demo", "user of the demo dashboard link printed at start; empty = print none")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.PprofAddr, "pprof-addr", "", "serve net/http/pprof on this separate address (e.g. 127.0.0.1:6060); empty = off")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fs.IntVar(&c.MaxConnections, "max-connections", 0, "subscriber connections this node holds; past it 503 with Retry-After; 0 = no limit")
	fs.IntVar(&c.MaxConnectionsPerUser, "max-connections-per-user", 100, "live connections of one user on this node; past it 429; 0 = no limit")
	fs.Float64Var(&c.ConnectRateLimit, "connect-rate-limit", 0, "new subscriber connections per second per client address; past it 429 with Retry-After; 0 = off")
	fs.IntVar(&c.ConnectRateBurst, "connect-rate-burst", 0, "burst allowed above --connect-rate-limit (default: one second's worth)")
	fs.Float64Var(&c.UserRateLimit, "user-rate-limit", 0, "messages per second published to one user (broadcasts aside); past it 429 with Retry-After; 0 = off")
	fs.IntVar(&c.UserRateBurst, "user-rate-burst", 0, "burst allowed above --user-rate-limit (default: one second's worth)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For names the client (rate limits, remoteAddr)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGTERM/SIGINT: time to end streams and finish requests in flight before exiting")
	fs.BoolVar(&c.WSCompression, "ws-compression", false, "offer permessage-deflate on /ws (stored messages compressed once each, shared by every connection)")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "a connection must send its request headers within this time")
	return fs
}

// envName maps a flag name to its environment variable.
func envName(flagName string) string {
	return "PUSH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

var errHelp = errors.New("help requested")

// parseConfig reads flags, then PUSH_* variables for flags not given, then
// validates. Errors are one line, ready for "pushd: <error>".
func parseConfig(args []string, getenv func(string) string) (*config, error) {
	c, _, _, err := loadConfig(args, getenv)
	return c, err
}

// loadConfig is parseConfig that also returns the flag set holding the
// values and, per flag, where its value came from ("flag", "env", or
// absent for the default).
func loadConfig(args []string, getenv func(string) string) (*config, *flag.FlagSet, map[string]string, error) {
	c := &config{}
	fs := newFlagSet(c)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, nil, errHelp
		}
		return nil, nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, nil, fmt.Errorf("unexpected argument %q (subcommands: migrate, check-config, version)", fs.Arg(0))
	}
	source := map[string]string{}
	fs.Visit(func(f *flag.Flag) { source[f.Name] = "flag" })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if source[f.Name] != "" || envErr != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			source[f.Name] = "env"
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %v", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return nil, nil, nil, envErr
	}
	return c, fs, source, c.validate()
}

func (c *config) validate() error {
	positive := map[string]time.Duration{
		"--heartbeat-interval": c.HeartbeatInterval, "--heartbeat-timeout": c.HeartbeatTimeout,
		"--offline-ttl": c.OfflineTTL, "--auth-timeout": c.AuthTimeout, "--token-ttl": c.TokenTTL,
		"--shutdown-timeout": c.ShutdownTimeout, "--read-header-timeout": c.ReadHeaderTimeout,
		"--idempotency-ttl": c.IdempotencyTTL,
	}
	for name, d := range positive {
		if d <= 0 {
			return fmt.Errorf("%s must be a positive duration, got %s", name, d)
		}
	}
	switch {
	case c.OfflineMaxCount < 0:
		return fmt.Errorf("--offline-max-count must not be negative, got %d", c.OfflineMaxCount)
	case c.MaxMessageBytes <= 0:
		return fmt.Errorf("--max-message-bytes must be positive, got %d", c.MaxMessageBytes)
	case c.MaxBatchBytes <= 0:
		return fmt.Errorf("--max-batch-bytes must be positive, got %d", c.MaxBatchBytes)
	case c.SSEPadding < 0:
		return fmt.Errorf("--sse-padding must not be negative, got %d", c.SSEPadding)
	case c.SendQueue < 1:
		return fmt.Errorf("--send-queue must be at least 1, got %d", c.SendQueue)
	case c.Writers < 0:
		return fmt.Errorf("--fanout-writers must not be negative, got %d", c.Writers)
	case c.RateLimit < 0 || c.RateBurst < 0:
		return errors.New("--rate-limit and --rate-burst must not be negative")
	case c.MaxConnections < 0:
		return fmt.Errorf("--max-connections must not be negative, got %d", c.MaxConnections)
	case c.MaxConnectionsPerUser < 0:
		return fmt.Errorf("--max-connections-per-user must not be negative, got %d", c.MaxConnectionsPerUser)
	case c.ConnectRateLimit < 0 || c.ConnectRateBurst < 0:
		return errors.New("--connect-rate-limit and --connect-rate-burst must not be negative")
	case c.UserRateLimit < 0 || c.UserRateBurst < 0:
		return errors.New("--user-rate-limit and --user-rate-burst must not be negative")
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fmt.Errorf("--log-format must be text or json, got %q", c.LogFormat)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case c.Addr == "":
		return errors.New("--addr must not be empty")
	}
	if c.TLSCert != "" {
		for _, f := range []string{c.TLSCert, c.TLSKey} {
			if _, err := os.Stat(f); err != nil {
				return fmt.Errorf("TLS file: %v", err)
			}
		}
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--public-url must be an absolute http(s) URL, got %q", c.PublicURL)
		}
	}
	for _, o := range c.origins() {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("--allowed-origins: %q is not an origin like https://app.example.com", o)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level must be debug, info, warn or error, got %q", c.LogLevel)
	}
	proxies, err := api.ParseTrustedProxies(c.TrustedProxies)
	if err != nil {
		return err
	}
	c.proxies = proxies
	if c.APIKey == "" {
		c.APIKey, c.generatedKey = randomSecret(), true
	}
	if c.JWTSecret == "" {
		c.JWTSecret, c.generatedJWT = randomSecret(), true
	}
	if len(c.JWTSecret) < 16 {
		return errors.New("--jwt-secret must be at least 16 bytes")
	}
	return nil
}

func (c *config) origins() []string {
	var out []string
	for _, o := range strings.Split(c.AllowedOrigins, ",") {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
			out = append(out, o)
		}
	}
	return out
}

func randomSecret() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: pushd [flags]\n       pushd migrate [flags]        apply the schema to --database-url and exit\n       pushd check-config [flags]   validate the configuration (and the database), print it with secrets masked\n       pushd version                print the version and build\n\nEvery flag --foo-bar can be set with the environment variable PUSH_FOO_BAR.\n\nflags:")
	fs := newFlagSet(&config{})
	fs.SetOutput(w)
	fs.PrintDefaults()
}
