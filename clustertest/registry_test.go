package clustertest

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/pgtest"
)

// TestOneServiceAnswers: three nodes on one database answer stats,
// connections, disconnect and nodes for all of them, ?scope=node for the
// node asked; a disconnect reaches every node within 2 s; a stopped node
// leaves at once and a killed one within 15 s, without ever holding an
// answer up past the bounded wait (CONTRACT §4.9, §5).
func TestOneServiceAnswers(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	nodes := startCluster(t, db, 3)
	n1, n2, n3 := nodes[0].api(), nodes[1].api(), nodes[2].api()
	ids := []string{n1.selfID(), n2.selfID(), n3.selfID()}
	if ids[0] == ids[1] || ids[1] == ids[2] || ids[0] == ids[2] {
		t.Fatalf("node ids not distinct: %v", ids)
	}
	sorted := slices.Sorted(slices.Values(ids))
	for i, c := range []client{n1, n2, n3} {
		got := slices.Sorted(slices.Values(c.nodeIDs()))
		if !slices.Equal(got, sorted) {
			t.Errorf("node%d lists nodes %v, want %v", i+1, got, sorted)
		}
	}

	// uma: SSE on node1, WS on node2, SSE on node3; vic: WS on node1 and
	// SSE on node2.
	uma1 := subscribe(t, n1, nodes[0].URL(), "uma", "sse")
	uma2 := subscribe(t, n2, nodes[1].URL(), "uma", "ws")
	uma3 := subscribe(t, n3, nodes[2].URL(), "uma", "sse")
	vic1 := subscribe(t, n1, nodes[0].URL(), "vic", "ws")
	vic2 := subscribe(t, n2, nodes[1].URL(), "vic", "sse")
	for _, s := range []*subscriber{uma1, uma2, uma3, vic1, vic2} {
		s.waitConnected(t)
	}

	for i, c := range []client{n1, n2, n3} {
		st := c.must(200, "GET", "/api/ws/stats", nil)
		tr, _ := st["transports"].(map[string]any)
		if st["nodes"] != 3.0 || st["totalConnections"] != 5.0 || st["uniqueUsers"] != 2.0 || tr["sse"] != 3.0 || tr["ws"] != 2.0 {
			t.Errorf("node%d stats = %v, want nodes 3, 5 connections of 2 users, sse 3, ws 2", i+1, st)
		}
	}
	st := n1.must(200, "GET", "/api/ws/stats?scope=node", nil)
	if st["nodes"] != 1.0 || st["totalConnections"] != 2.0 || st["uniqueUsers"] != 2.0 {
		t.Errorf("node1 stats?scope=node = %v, want nodes 1, 2 connections of 2 users", st)
	}
	st = n3.must(200, "GET", "/api/ws/stats?scope=node", nil)
	if st["nodes"] != 1.0 || st["totalConnections"] != 1.0 || st["uniqueUsers"] != 1.0 {
		t.Errorf("node3 stats?scope=node = %v, want nodes 1, 1 connection", st)
	}

	// Connections name their node.
	conns := func(c client, q string) map[string]string { // connection id -> node
		list, _ := c.must(200, "GET", "/api/ws/connections/uma"+q, nil)["connections"].([]any)
		out := map[string]string{}
		for _, v := range list {
			m, _ := v.(map[string]any)
			out[fmt.Sprint(m["id"])] = fmt.Sprint(m["node"]) + "/" + fmt.Sprint(m["transport"])
		}
		return out
	}
	all := conns(n2, "")
	var where []string
	for _, v := range all {
		where = append(where, v)
	}
	slices.Sort(where)
	wantWhere := slices.Sorted(slices.Values([]string{ids[0] + "/sse", ids[1] + "/ws", ids[2] + "/sse"}))
	if !slices.Equal(where, wantWhere) {
		t.Errorf("connections/uma from node2 = %v, want %v", where, wantWhere)
	}
	if local := conns(n2, "?scope=node"); len(local) != 1 || !slices.Contains(slices.Collect(maps.Values(local)), ids[1]+"/ws") {
		t.Errorf("connections/uma?scope=node from node2 = %v, want node2's WS alone", local)
	}

	// The registry's figures follow within a refresh.
	eventually(t, 5*time.Second, "nodes to report their connections", func() (bool, string) {
		list, _ := n3.must(200, "GET", "/api/ws/nodes", nil)["nodes"].([]any)
		got := map[string]float64{}
		for _, v := range list {
			m, _ := v.(map[string]any)
			got[fmt.Sprint(m["id"])] = m["connections"].(float64)
		}
		return got[ids[0]] == 2 && got[ids[1]] == 2 && got[ids[2]] == 1, fmt.Sprint(got)
	})

	// scope=node ends node1's connection of uma alone.
	out := n1.must(200, "POST", "/api/ws/disconnect/uma?scope=node", map[string]any{"reason": "here only"})
	if out["disconnected"] != 1.0 {
		t.Errorf("disconnect/uma?scope=node on node1: %v, want 1", out)
	}
	eventually(t, 2*time.Second, "uma's node1 connection to end", func() (bool, string) {
		_, _, _, ended := uma1.snapshot()
		return ended == "disconnect: here only", ended
	})
	if list := conns(n1, ""); len(list) != 2 {
		t.Errorf("after the node-scoped disconnect uma has %v, want the other two", list)
	}

	// A cluster-wide disconnect from node1 ends node2's and node3's.
	asked := time.Now()
	out = n1.must(200, "POST", "/api/ws/disconnect/uma", map[string]any{"reason": "everywhere"})
	if out["disconnected"] != 2.0 {
		t.Errorf("disconnect/uma from node1: %v, want 2 (node2's and node3's)", out)
	}
	for _, s := range []*subscriber{uma2, uma3} {
		eventually(t, 2*time.Second, s.String()+" to get its disconnect", func() (bool, string) {
			_, _, _, ended := s.snapshot()
			return ended == "disconnect: everywhere", ended
		})
		s.mu.Lock()
		took := s.endedAt.Sub(asked)
		s.mu.Unlock()
		if took > 2*time.Second {
			t.Errorf("%s ended %v after the disconnect request, want within 2s", s, took)
		}
		if s.transport == "ws" {
			eventually(t, 2*time.Second, "close 4000", func() (bool, string) {
				s.mu.Lock()
				defer s.mu.Unlock()
				return slices.Contains(s.closes, 4000), fmt.Sprint(s.closes)
			})
		}
	}
	if list := conns(n3, ""); len(list) != 0 {
		t.Errorf("uma still has %v", list)
	}

	// node2 stops: it leaves the registry at once.
	nodes[1].stop()
	if got := n1.nodeIDs(); len(got) != 2 || slices.Contains(got, ids[1]) {
		t.Errorf("after node2 stopped node1 lists %v, want node1 and node3", got)
	}
	// node3 is killed: answers do not wait for it past the bounded wait,
	// and it leaves the registry within 15 s.
	nodes[2].kill()
	killed := time.Now()
	start := time.Now()
	st = n1.must(200, "GET", "/api/ws/stats", nil)
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Errorf("stats with a killed node took %v, want at most the 1.5 s wait", took)
	}
	if st["nodes"] != 1.0 || st["totalConnections"] != 1.0 {
		t.Errorf("stats with node2 stopped and node3 killed: %v, want nodes 1 (node1's vic)", st)
	}
	start = time.Now()
	out = n1.must(200, "POST", "/api/ws/disconnect/vic", nil)
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Errorf("disconnect with a killed node took %v", took)
	}
	if out["disconnected"] != 1.0 {
		t.Errorf("disconnect/vic: %v, want node1's 1", out)
	}
	eventually(t, 15*time.Second, "the killed node to leave the registry", func() (bool, string) {
		got := n1.nodeIDs()
		return slices.Equal(got, []string{ids[0]}), fmt.Sprint(got)
	})
	if took := time.Since(killed); took > 15*time.Second {
		t.Errorf("the killed node left after %v", took)
	}
}

// TestClusterAnswersWithoutDatabase: a node that loses its database cannot
// reach the other nodes: the cluster-wide answers are a 503 soon (never a
// hang), a disconnect still ends the node's own connections and says so, and
// ?scope=node keeps answering.
func TestClusterAnswersWithoutDatabase(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	u, err := url.Parse(db)
	if err != nil || u.Host == "" {
		t.Skipf("database URL %q is not host:port based; cannot put a proxy in front", db)
	}
	dbProxy := newProxy(t, []string{u.Host})
	viaProxy := *u
	viaProxy.Host = dbProxy.Addr()
	cut := newNode(t, "cut", viaProxy.String())
	cut.start()
	startCluster(t, db, 1) // a second node, so there is a cluster to ask
	c := cut.api()
	s := subscribe(t, c, cut.URL(), "wes", "sse")
	s.waitConnected(t)

	dbProxy.Close() // the database is gone for this node
	for _, call := range []struct{ method, path string }{
		{"GET", "/api/ws/stats"}, {"GET", "/api/ws/connections/wes"}, {"GET", "/api/ws/nodes"},
	} {
		start := time.Now()
		out := c.must(503, call.method, call.path, nil)
		if took := time.Since(start); took > 7*time.Second {
			t.Errorf("%s %s took %v", call.method, call.path, took)
		}
		if e, _ := out["error"].(map[string]any); e["code"] != "unavailable" {
			t.Errorf("%s %s: %v, want code unavailable", call.method, call.path, out)
		}
	}
	if list, _ := c.must(200, "GET", "/api/ws/connections/wes?scope=node", nil)["connections"].([]any); len(list) != 1 {
		t.Errorf("connections?scope=node without the database: %v, want wes's one", list)
	}
	if list, _ := c.must(200, "GET", "/api/ws/nodes?scope=node", nil)["nodes"].([]any); len(list) != 1 {
		t.Errorf("nodes?scope=node without the database: %v, want this node", list)
	}
	out := c.must(503, "POST", "/api/ws/disconnect/wes", map[string]any{"reason": "db down"})
	msg, _ := out["error"].(map[string]any)["message"].(string)
	if !strings.Contains(msg, "this node ended 1 of the user's connections") {
		t.Errorf("disconnect without the database: %q, want it to say this node's connection was ended", msg)
	}
	eventually(t, 2*time.Second, "wes's disconnect event", func() (bool, string) {
		_, _, _, ended := s.snapshot()
		return ended == "disconnect: db down", ended
	})
}
