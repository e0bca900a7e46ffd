// Package clustertest runs several pushd processes on one PostgreSQL
// database, on loopback, and checks that they behave as one service
// (CONTRACT §4.9 and §5): the node registry, cluster-wide stats, connection
// lists and disconnects, a node killed with SIGKILL, rolling restarts behind
// a round-robin TCP proxy, and one order across nodes under concurrent
// publishers. It holds only tests.
package clustertest
