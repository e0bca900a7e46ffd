package clustertest

import (
	"testing"

	"github.com/pushd/pushd/internal/roundrobin"
)

// newProxy starts a round-robin TCP proxy in front of backends until t ends.
func newProxy(t *testing.T, backends []string) *roundrobin.Proxy {
	t.Helper()
	p, err := roundrobin.Listen(backends)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
