package clustertest

import (
	"testing"
	"time"

	"github.com/pushd/pushd/internal/pgtest"
)

// TestRollingRestart: three nodes behind a round-robin proxy, publishing
// through the proxy all along; the nodes are restarted one after the other
// (SIGTERM, start again). Every SSE and WebSocket subscriber ends with every
// message exactly once, in order, without a reset.
func TestRollingRestart(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	nodes := startCluster(t, db, 3)
	px := newProxy(t, addrs(nodes))
	subs, users := subscribeMany(t, nodes[0].api(), px.URL(), 12, "r")

	p := newPublisher(t)
	front := client{t: t, base: px.URL(), hc: freshConns}
	stop := make(chan struct{})
	wg := p.publishWhile(stop, 4, 10*time.Millisecond, users, func(int, int) client { return front })
	for _, n := range nodes {
		time.Sleep(time.Second)
		n.stop()
		n.start()
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d messages acknowledged, %d refused (503), %d with unknown outcome", p.total(), p.refused, len(p.uncertainTitles()))

	checkAll(t, p, subs, 30*time.Second)
	for _, s := range subs {
		if _, _, n, _ := s.snapshot(); n < 2 {
			t.Errorf("%s connected %d times; every node was restarted", s, n)
		}
	}
	if got := nodes[0].api().nodeIDs(); len(got) != 3 {
		t.Errorf("after the rolling restart: nodes %v, want 3", got)
	}
}
