package ws_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pushd/pushd/api"
	"github.com/pushd/pushd/persist"
	"github.com/pushd/pushd/stream"
	"github.com/pushd/pushd/ws"
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

// The session is attached after the upgrade, so the answer is a close code:
// a store outage closes 1013 (try again later), any other store error is a
// fault and closes 1011.
func TestStoreErrorsAtOpen(t *testing.T) {
	cases := []struct {
		name string
		err  error
		code int
		text string
	}{
		{"outage", fmt.Errorf("connection refused: %w", stream.ErrUnavailable), ws.CodeTryAgain, "store unavailable"},
		{"fault", errors.New("bad data in the log"), ws.CodeInternal, "internal error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := stream.NewManager(&brokenStore{Memory: persist.NewMemory(stream.Retention{MaxCount: 10, TTL: time.Hour}), err: tc.err}, stream.Config{})
			t.Cleanup(func() { m.Shutdown(context.Background()) })
			srv := httptest.NewServer(api.New(m, api.Options{AuthRequired: false}))
			t.Cleanup(srv.Close)
			conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws?userId=u", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, err = conn.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != tc.code || ce.Text != tc.text {
				t.Fatalf("read %v, want close %d %q", err, tc.code, tc.text)
			}
		})
	}
}
