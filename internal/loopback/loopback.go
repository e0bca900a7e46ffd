// Package loopback gives tests both ends of a real TCP connection on
// 127.0.0.1, for the transports' socket code (writes that fill a buffer,
// hang-up detection).
package loopback

import (
	"net"
	"testing"
)

// Pair returns both ends of a loopback TCP connection; the test's cleanup
// closes them.
func Pair(tb testing.TB) (server, client *net.TCPConn) {
	tb.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	s, _ := (<-accepted).(*net.TCPConn)
	if s == nil {
		c.Close()
		tb.Fatal("accept failed")
	}
	client = c.(*net.TCPConn)
	tb.Cleanup(func() { s.Close(); client.Close() })
	return s, client
}

// SmallSendBuffer is Pair whose sending side has a small buffer, so a
// writer fills it quickly. (The receiving side keeps its default: a receive
// buffer below loopback's 64 KiB MSS makes the sender wait for zero-window
// probes, seconds apart.)
func SmallSendBuffer(tb testing.TB) (server, client *net.TCPConn) {
	tb.Helper()
	s, c := Pair(tb)
	_ = s.SetWriteBuffer(8 << 10)
	return s, c
}
