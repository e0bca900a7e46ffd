// Package stream is pushd's transport-agnostic core: the message model, the
// ordered-log Store interface, per-connection Sessions with bounded queues and
// the Manager that registers sessions, replays a user's stream on connect
// (resume.go) and fans committed messages out to live sessions (dispatch in
// manager.go).
//
// It imports no transport, no socket, no wire format and no database: sse
// and ws drive Sessions and frame messages themselves (caching each frame in
// the message's encoding slots), internal/connwrite writes their sockets,
// and persist implements Store.
package stream
