//go:build !linux

package sse

import "net"

// hangups watches nothing without epoll: a peer that went away is noticed
// at the next write (a heartbeat at the latest).
type hangups struct{}

func (w *hangups) watch(conn net.Conn, onHangup func()) (stop func()) { return func() {} }
