package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/pushd/pushd/stream"
)

// scope reads ?scope=: "cluster" (the default) answers for every live node,
// "node" for the node asked alone (CONTRACT §5, scope with several nodes).
func (s *Server) scope(w http.ResponseWriter, r *http.Request) (all, ok bool) {
	vals, given := r.URL.Query()["scope"]
	if !given {
		return true, true
	}
	if len(vals) > 1 {
		s.requestError(w, badf("scope must be given once"))
		return false, false
	}
	switch vals[0] {
	case "cluster":
		return true, true
	case "node":
		return false, true
	default:
		s.requestError(w, badf("scope must be \"cluster\" or \"node\""))
		return false, false
	}
}

// clusterError answers a failed cluster-wide request: 503 when the store
// (the only way to the other nodes) cannot be reached, else 500.
func (s *Server) clusterError(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, stream.ErrUnavailable) {
		s.log.Warn("cluster request failed: store unavailable", "request", what, "err", err, "request_id", requestID(r))
		retryAfter(w, s.opts.RetryAfter)
		writeError(w, http.StatusServiceUnavailable, codeUnavailable,
			"store unavailable: the other nodes cannot be reached ("+what+"); ?scope=node answers for this node alone")
		return
	}
	s.log.Error("cluster request failed", "request", what, "err", err, "request_id", requestID(r))
	writeError(w, http.StatusInternalServerError, codeInternal, "internal error")
}

// handleNodes lists the live nodes: GET /api/ws/nodes.
func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request) {
	all, ok := s.scope(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	list, err := s.manager.Nodes(ctx, all)
	if err != nil {
		s.clusterError(w, r, "nodes", err)
		return
	}
	type transports struct {
		SSE int `json:"sse"`
		WS  int `json:"ws"`
	}
	type node struct {
		ID          string     `json:"id"`
		StartedAt   int64      `json:"startedAt"`
		LastSeen    int64      `json:"lastSeen"`
		Connections int        `json:"connections"`
		Users       int        `json:"users"`
		Transports  transports `json:"transports"`
	}
	out := make([]node, 0, len(list))
	for _, n := range list {
		out = append(out, node{
			ID: n.ID, StartedAt: n.StartedAt, LastSeen: n.LastSeen,
			Connections: n.Counts.Connections, Users: n.Counts.Users,
			Transports: transports{SSE: n.Counts.Transports["sse"], WS: n.Counts.Transports["ws"]},
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": out, "timestamp": stream.NowMillis()})
}
