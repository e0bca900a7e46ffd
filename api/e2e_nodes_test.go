package api_test

import (
	"testing"

	"github.com/pushd/pushd/stream"
)

// nodeID is the id GET /api/ws/nodes gives the (only) node.
func (h *e2e) nodeID(t *testing.T) string {
	t.Helper()
	obj := h.api("GET", "/api/ws/nodes", nil).expectStatus(t, 200).object(t)
	list, _ := obj["nodes"].([]any)
	if len(list) != 1 {
		t.Fatalf("GET /api/ws/nodes: %d nodes, want 1: %s", len(list), compact(obj))
	}
	n, _ := list[0].(map[string]any)
	id, _ := n["id"].(string)
	return id
}

// TestE2ENodesOneNode: with the in-memory store the node is alone; nodes,
// stats and connections describe it, with or without ?scope=node.
func TestE2ENodesOneNode(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	before := stream.NowMillis()
	a := h.openSSE("ona", "")
	expectConnected(t, a, "ona", "sse")
	b := h.openWS("ona", "")
	expectConnected(t, b, "ona", "ws")
	c := h.openWS("pia", "")
	expectConnected(t, c, "pia", "ws")

	for _, q := range []string{"", "?scope=node", "?scope=cluster"} {
		obj := h.api("GET", "/api/ws/nodes"+q, nil).expectStatus(t, 200).object(t)
		checkShape(t, "GET /api/ws/nodes"+q, obj, map[string]string{"nodes": "array", "timestamp": "integer"})
		list, _ := obj["nodes"].([]any)
		if len(list) != 1 {
			t.Fatalf("GET /api/ws/nodes%s: %d nodes, want 1", q, len(list))
		}
		n, _ := list[0].(map[string]any)
		checkShape(t, "nodes[0]", n, map[string]string{
			"id": "string", "startedAt": "integer", "lastSeen": "integer",
			"connections": "integer", "users": "integer", "transports": "object",
		})
		tr, _ := n["transports"].(map[string]any)
		checkShape(t, "nodes[0].transports", tr, map[string]string{"sse": "integer", "ws": "integer"})
		if n["connections"] != float64(3) || n["users"] != float64(2) || tr["sse"] != float64(1) || tr["ws"] != float64(2) {
			t.Errorf("nodes%s[0] = %s, want 3 connections of 2 users, sse 1, ws 2", q, compact(n))
		}
		started, _ := n["startedAt"].(float64)
		seen, _ := n["lastSeen"].(float64)
		if int64(started) > before || int64(seen) < before || seen < started {
			t.Errorf("nodes%s[0]: startedAt %v, lastSeen %v; want startedAt before the test's connections (%d) and lastSeen after", q, started, seen, before)
		}

		st := h.api("GET", "/api/ws/stats"+q, nil).expectStatus(t, 200).object(t)
		if st["nodes"] != float64(1) || st["totalConnections"] != float64(3) || st["uniqueUsers"] != float64(2) {
			t.Errorf("stats%s = %s, want nodes 1, 3 connections, 2 users", q, compact(st))
		}
		cs := h.api("GET", "/api/ws/connections/ona"+q, nil).expectStatus(t, 200).object(t)
		if l, _ := cs["connections"].([]any); len(l) != 2 {
			t.Errorf("connections/ona%s: %s, want 2", q, compact(cs))
		}
	}

	r := h.api("POST", "/api/ws/disconnect/ona?scope=node", map[string]any{"reason": "node only"}).expectStatus(t, 200).object(t)
	if r["disconnected"] != float64(2) {
		t.Errorf("disconnect/ona?scope=node: %s, want disconnected 2", compact(r))
	}
	h.waitConnections(1)
}

// TestE2EScopeRejected: a scope other than cluster or node, or given twice,
// is a 400 on every endpoint that takes it, and a disconnect rejected so ends
// nothing.
func TestE2EScopeRejected(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	s := h.openSSE("quin", "")
	expectConnected(t, s, "quin", "sse")
	for _, q := range []string{"?scope=all", "?scope=", "?scope=NODE", "?scope=node&scope=cluster"} {
		for _, ep := range []struct{ method, path string }{
			{"GET", "/api/ws/stats"}, {"GET", "/api/ws/nodes"},
			{"GET", "/api/ws/connections/quin"}, {"POST", "/api/ws/disconnect/quin"},
		} {
			msg := h.api(ep.method, ep.path+q, nil).expectError(t, 400, "bad_request")
			if q != "?scope=node&scope=cluster" && msg != `scope must be "cluster" or "node"` {
				t.Errorf("%s %s%s: message %q", ep.method, ep.path, q, msg)
			}
		}
	}
	if n := len(h.connections("quin")); n != 1 {
		t.Errorf("quin has %d connections after rejected disconnects, want 1", n)
	}
}
