package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pushd/pushd/auth"
	"github.com/pushd/pushd/persist"
	"github.com/pushd/pushd/stream"
)

func TestHEADOnGETRoutes(t *testing.T) {
	m := stream.NewManager(persist.NewMemory(stream.Retention{MaxCount: 1, TTL: time.Hour}), stream.Config{})
	ts := httptest.NewServer(New(m, Options{APIKey: "k", Tokens: auth.NewTokens("0123456789abcdef", time.Hour), HeartbeatInterval: time.Second}))
	defer ts.Close()
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/client.js", "/"} {
		resp, err := http.Head(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Type") == "" {
			t.Errorf("HEAD %s: %d, %d body bytes, type %q", p, resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
		}
	}
	resp, err := http.Head(ts.URL + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("HEAD /sse: %d, want 405 (a stream has no HEAD)", resp.StatusCode)
	}
}
