package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// connTracker follows the server's connections that have not yet sent a
// complete request (http.StateNew), so a shutdown can close them instead of
// waiting for them.
type connTracker struct {
	mu    sync.Mutex
	fresh map[net.Conn]struct{}
}

// track is the http.Server's ConnState hook.
func (t *connTracker) track(c net.Conn, st http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st == http.StateNew {
		t.fresh[c] = struct{}{}
	} else {
		delete(t.fresh, c)
	}
}

func (t *connTracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.fresh)
}

// closeFresh waits up to grace (or ctx) for fresh connections to send their
// request, then closes those that have not.
func (t *connTracker) closeFresh(ctx context.Context, grace time.Duration) {
	deadline := time.Now().Add(grace)
	for t.count() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.fresh {
		_ = c.Close()
		delete(t.fresh, c)
	}
}
