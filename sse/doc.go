// Package sse is the Server-Sent Events transport (GET /sse).
//
// r3labs/sse/v2's server is not used: it blocks every subscriber of a stream
// behind one slow client, keeps an unbounded in-memory log with renumbered
// ids and cannot replay from our store (see shared/notes/dependencies.md §2).
// This writer drains a stream.Session: frames are rendered once per message
// and every queued frame goes out in one write and one flush. r3labs/sse/v2's
// client is used in tests as an independent third-party reader.
package sse
