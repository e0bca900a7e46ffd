package sse

import (
	"testing"
	"time"

	"github.com/pushd/pushd/internal/loopback"
)

// A peer that closes its end is noticed without a read or a write.
func TestHangupNoticed(t *testing.T) {
	var h hangups
	server, client := loopback.Pair(t)
	hung := make(chan struct{}, 2)
	stop := h.watch(server, func() { hung <- struct{}{} })
	defer stop()
	client.Close()
	select {
	case <-hung:
	case <-time.After(5 * time.Second):
		t.Fatal("the peer's close was not noticed")
	}
	select {
	case <-hung:
		t.Fatal("onHangup ran twice")
	case <-time.After(50 * time.Millisecond):
	}
}

// After stop, a hangup calls nothing; other connections are still watched.
func TestHangupStopped(t *testing.T) {
	var h hangups
	server, client := loopback.Pair(t)
	called := make(chan struct{}, 1)
	h.watch(server, func() { called <- struct{}{} })()
	other, otherClient := loopback.Pair(t)
	noticed := make(chan struct{}, 1)
	defer h.watch(other, func() { noticed <- struct{}{} })()
	client.Close()
	otherClient.Close()
	select {
	case <-noticed:
	case <-time.After(5 * time.Second):
		t.Fatal("the watched connection's hangup was not noticed")
	}
	select {
	case <-called:
		t.Fatal("onHangup ran for a connection no longer watched")
	case <-time.After(50 * time.Millisecond):
	}
}
