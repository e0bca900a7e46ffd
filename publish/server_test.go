package publish_test

// The tests run against the real pushd HTTP surface (api.New over a real
// stream.Manager and the in-memory store) on loopback. The one fake is
// flakyStore, which wraps persist.Memory to fail appends on demand: the
// memory store cannot fail on its own.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/api"
	"github.com/pushd/pushd/auth"
	"github.com/pushd/pushd/persist"
	"github.com/pushd/pushd/stream"
)

const testKey = "publish-test-key-0123456789"

// flakyStore fails the next failAppends appends as an unreachable store
// does (the API answers 503 and stores nothing).
type flakyStore struct {
	*persist.Memory
	failAppends atomic.Int64
	appends     atomic.Int64
}

func (s *flakyStore) Append(ctx context.Context, d []stream.Draft) ([]*stream.Message, error) {
	if s.failAppends.Add(-1) >= 0 {
		return nil, fmt.Errorf("test outage: %w", stream.ErrUnavailable)
	}
	s.failAppends.Store(0)
	s.appends.Add(1)
	return s.Memory.Append(ctx, d)
}

// testServer is a pushd on loopback that records every request it gets.
type testServer struct {
	*httptest.Server
	store *flakyStore
	mgr   *stream.Manager

	mu       sync.Mutex
	requests []recorded
	// dropNext makes the next n requests fail on the network before they
	// reach pushd (the connection is closed without an answer).
	dropNext atomic.Int64
}

type recorded struct {
	Method, Path, IdempotencyKey string
}

func startServer(t testing.TB, mod func(*api.Options)) *testServer {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	store := &flakyStore{Memory: persist.NewMemory(stream.Retention{MaxCount: 1000, TTL: time.Hour})}
	mgr := stream.NewManager(store, stream.Config{Logger: logger, HeartbeatInterval: 30 * time.Second})
	opts := api.Options{
		APIKey: testKey, Tokens: auth.NewTokens("publish-test-secret-0123456789", time.Hour),
		AuthRequired: true, HeartbeatTimeout: 10 * time.Second,
		SSEPadding: 0, Logger: logger, RetryAfter: time.Second,
	}
	if mod != nil {
		mod(&opts)
	}
	srv := api.New(mgr, opts)
	ts := &testServer{store: store, mgr: mgr}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		ts.requests = append(ts.requests, recorded{r.Method, r.URL.Path, r.Header.Get("Idempotency-Key")})
		ts.mu.Unlock()
		if ts.dropNext.Add(-1) >= 0 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		ts.dropNext.Store(0)
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		mgr.Shutdown(ctx)
		ts.CloseClientConnections()
		ts.Close()
	})
	return ts
}

func (ts *testServer) recorded(path string) []recorded {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var out []recorded
	for _, r := range ts.requests {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// envelope is one event of a subscriber stream.
type envelope struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// subscribe opens an SSE stream for the token's user and returns its
// stored events as they arrive (control events are skipped once the
// stream is open).
func subscribe(t testing.TB, sseURL, token string) <-chan envelope {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sseURL, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("opening the stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("opening the stream: %s", resp.Status)
	}
	out := make(chan envelope, 1024)
	connected := make(chan struct{})
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e envelope
			if json.Unmarshal([]byte(data), &e) != nil {
				continue
			}
			if e.Type == "connected" {
				close(connected)
				continue
			}
			if e.ID != "" || e.Type == "disconnect" {
				out <- e
			}
		}
	}()
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("no connected event")
	}
	return out
}

func next(t testing.TB, events <-chan envelope) envelope {
	t.Helper()
	select {
	case e, ok := <-events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return envelope{}
}
