// Package sse is the Server-Sent Events transport (GET /sse).
//
// r3labs/sse/v2's server is not used: it blocks every subscriber of a stream
// behind one slow client, keeps an unbounded in-memory log with renumbered
// ids and cannot replay from our store (see shared/notes/dependencies.md §2).
// Its client is used in tests as an independent third-party reader.
//
// After authentication and the replay into the session's queue, an HTTP/1.x
// connection is taken over (hijacked): the handler writes the response head
// itself and returns, so net/http's goroutine and buffers are released and an
// idle stream costs no goroutine — the session's pump (stream/pump.go) runs
// only while something is written, and sends everything queued in one writev
// of frames rendered once per message. Peers that go away are noticed by one
// epoll set for all streams (hangup_linux.go). HTTP/2 streams cannot be taken
// over and keep their handler goroutine.
package sse
