// Package stream is pushd's transport-agnostic core: the message model, the
// ordered-log Store interface, per-connection Sessions with bounded queues and
// the Manager that registers sessions, replays a user's stream on connect
// (resume.go) and fans committed messages out to live sessions (dispatch.go).
//
// It imports no transport and no database: sse and ws drive Sessions, persist
// implements Store.
package stream
