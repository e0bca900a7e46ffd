package api

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pushd/pushd/auth"
	"github.com/pushd/pushd/persist"
	"github.com/pushd/pushd/stream"
)

// newTestServer builds a Server on a memory store with API key "k";
// mod adjusts the options.
func newTestServer(tb testing.TB, mod func(*Options)) *Server {
	tb.Helper()
	m := stream.NewManager(persist.NewMemory(stream.Retention{MaxCount: 100, TTL: time.Hour}), stream.Config{HeartbeatInterval: time.Second})
	tb.Cleanup(func() { m.Shutdown(tb.Context()) })
	opts := Options{APIKey: "k", Tokens: auth.NewTokens("0123456789abcdef", time.Hour)}
	if mod != nil {
		mod(&opts)
	}
	return New(m, opts)
}

// startTestServer serves newTestServer on loopback.
func startTestServer(tb testing.TB, mod func(*Options)) *httptest.Server {
	ts := httptest.NewServer(newTestServer(tb, mod))
	tb.Cleanup(ts.Close)
	return ts
}
