package sse

import (
	"net"
	"testing"
	"time"
)

// loopback returns both ends of a loopback TCP connection.
func loopback(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// A peer that closes its end is noticed without a read or a write.
func TestHangupNoticed(t *testing.T) {
	var h hangups
	server, client := loopback(t)
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
	server, client := loopback(t)
	called := make(chan struct{}, 1)
	h.watch(server, func() { called <- struct{}{} })()
	other, otherClient := loopback(t)
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
