package sse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/api"
	"github.com/pushd/pushd/persist"
	"github.com/pushd/pushd/stream"
)

// brokenStore is a memory store whose DeliveredCursor, read first when a
// stream is opened, fails with err.
type brokenStore struct {
	*persist.Memory
	err error
}

func (s *brokenStore) DeliveredCursor(context.Context, string) (uint64, bool, error) {
	return 0, false, s.err
}

// A store outage refuses the stream with 503 and Retry-After, so the client
// comes back; any other store error is a fault: 500, and no Retry-After.
func TestStoreErrorsAtOpen(t *testing.T) {
	cases := []struct {
		name       string
		err        error
		status     int
		body       string
		retryAfter bool
	}{
		{"outage", fmt.Errorf("connection refused: %w", stream.ErrUnavailable), http.StatusServiceUnavailable,
			`{"error":{"code":"unavailable","message":"store unavailable: cannot replay the stream"}}`, true},
		{"fault", errors.New("bad data in the log"), http.StatusInternalServerError,
			`{"error":{"code":"internal","message":"internal error"}}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := stream.NewManager(&brokenStore{Memory: persist.NewMemory(stream.Retention{MaxCount: 10, TTL: time.Hour}), err: tc.err}, stream.Config{})
			t.Cleanup(func() { m.Shutdown(context.Background()) })
			srv := httptest.NewServer(api.New(m, api.Options{AuthRequired: false}))
			t.Cleanup(srv.Close)
			res, err := http.Get(srv.URL + "/sse?userId=u")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.status || strings.TrimSpace(string(body)) != tc.body {
				t.Fatalf("got %d %s, want %d %s", res.StatusCode, body, tc.status, tc.body)
			}
			if got := res.Header.Get("Retry-After") != ""; got != tc.retryAfter {
				t.Fatalf("Retry-After %q, want one: %v", res.Header.Get("Retry-After"), tc.retryAfter)
			}
		})
	}
}
