package main

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"

	"github.com/pushd/pushd/auth"
	"github.com/pushd/pushd/stream"
)

// printBanner tells a newcomer what they need: where pushd listens, the
// generated secrets, a demo link and ready-to-paste curl lines.
func printBanner(w io.Writer, cfg *config, addr net.Addr, tokens *auth.Tokens, store stream.Store) {
	base := cfg.PublicURL
	if base == "" {
		scheme := "http"
		if cfg.TLSCert != "" {
			scheme = "https"
		}
		host, port, _ := net.SplitHostPort(addr.String())
		if host == "" || host == "::" || host == "0.0.0.0" {
			host = "localhost"
		}
		base = scheme + "://" + net.JoinHostPort(host, port)
	}
	base = strings.TrimRight(base, "/")
	storeName := "embedded in-memory store (not durable across restarts)"
	if cfg.DatabaseURL != "" {
		storeName = "PostgreSQL"
	}
	fmt.Fprintf(w, "pushd listening on %s — %s, event epoch %s\n", base, storeName, store.Epoch())
	if cfg.generatedKey {
		fmt.Fprintf(w, "  API key (generated; set --api-key or PUSH_API_KEY to keep one): %s\n", cfg.APIKey)
	}
	if cfg.generatedJWT {
		fmt.Fprintf(w, "  JWT secret (generated; set --jwt-secret or PUSH_JWT_SECRET):   %s\n", cfg.JWTSecret)
	}
	key := cfg.APIKey
	if !cfg.generatedKey {
		key = "$PUSH_API_KEY"
	}
	if cfg.DemoUser != "" {
		if tok, _, err := tokens.Mint(cfg.DemoUser); err == nil {
			frag := url.Values{"token": {tok}, "user": {cfg.DemoUser}}
			if cfg.generatedKey {
				frag.Set("apiKey", cfg.APIKey)
			}
			fmt.Fprintf(w, "\nDemo dashboard (user %q, token valid %s):\n  %s/#%s\n", cfg.DemoUser, cfg.TokenTTL, base, frag.Encode())
		}
	}
	fmt.Fprintf(w, "\nAdmin console (sign in with the API key): %s/admin\nAPI docs: %s/docs\n", base, base)
	fmt.Fprintf(w, `
Try it:
  # 1. get a subscriber token for user alice
  TOKEN=$(curl -s -X POST %[1]s/api/ws/connect -H "Authorization: Bearer %[2]s" -H 'Content-Type: application/json' -d '{"userId":"alice"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
  # 2. in a second terminal, subscribe (SSE)
  curl -N "%[1]s/sse?access_token=$TOKEN"
  # 3. push a notification to alice
  curl -X POST %[1]s/api/ws/push/notification -H "Authorization: Bearer %[2]s" -H 'Content-Type: application/json' -d '{"userId":"alice","title":"Hello","body":"from pushd"}'

`, base, key)
}
