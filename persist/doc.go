// Package persist holds the implementations of stream.Store: Memory, the
// embedded default (not durable across restarts), and Postgres, the durable
// store that also carries messages between nodes.
package persist
