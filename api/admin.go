package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/pushd/pushd/stream"
)

// handleConnect mints a subscriber token: POST /api/ws/connect {userId}.
func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var q struct {
		UserID string `json:"userId"`
	}
	if err := decodeStrict(body, &q); err != nil {
		s.requestError(w, err)
		return
	}
	if err := checkID("userId", q.UserID); err != nil {
		s.requestError(w, err)
		return
	}
	tok, exp, err := s.opts.Tokens.Mint(q.UserID)
	if err != nil {
		writeError(w, http.StatusInternalServerError, codeInternal, "minting the token failed")
		return
	}
	base := s.baseURL(r)
	wsBase := "ws" + strings.TrimPrefix(base, "http")
	writeJSON(w, http.StatusOK, map[string]any{
		"wsUrl": wsBase + "/ws", "sseUrl": base + "/sse", "token": tok, "userId": q.UserID,
		"expiresAt": exp.UnixMilli(), "timestamp": stream.NowMillis(),
	})
}

// baseURL is --public-url, else the scheme and host the request came to.
func (s *Server) baseURL(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return strings.TrimRight(s.opts.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: r.Host}
	return u.String()
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	all, ok := s.scope(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	qs, _, err := s.manager.QueueStats(ctx) // zero figures for a store without them
	s.metrics.storeOps["queue_stats"].Observe(time.Since(start).Seconds())
	if err != nil {
		s.storeError(w, r, "queue stats", "store unavailable: queue stats cannot be read", err)
		return
	}
	c, err := s.manager.Stats(ctx, all)
	if err != nil {
		s.clusterError(w, r, "stats", err)
		return
	}
	body := map[string]any{
		"totalConnections": c.Connections,
		"uniqueUsers":      c.Users,
		"transports":       map[string]int{"sse": c.Transports["sse"], "ws": c.Transports["ws"]},
		"queueStats":       qs,
		"nodes":            c.Nodes,
		"timestamp":        stream.NowMillis(),
	}
	if n, ok, err := s.manager.OutboxPending(ctx); ok {
		if err != nil {
			s.storeError(w, r, "outbox pending", "store unavailable: the outbox cannot be read", err)
			return
		}
		body["outboxPending"] = n
	}
	writeJSON(w, http.StatusOK, body)
}

func userParam(r *http.Request) (string, error) {
	u := httprouter.ParamsFromContext(r.Context()).ByName("userId")
	return u, checkID("userId", u)
}

func (s *Server) handleConnections(w http.ResponseWriter, r *http.Request) {
	user, err := userParam(r)
	if err != nil {
		s.requestError(w, err)
		return
	}
	all, ok := s.scope(w, r)
	if !ok {
		return
	}
	conns, err := s.manager.UserConnections(r.Context(), all, user)
	if err != nil {
		s.clusterError(w, r, "connections", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"userId": user, "connections": conns, "timestamp": stream.NowMillis(),
	})
}

func (s *Server) handleDisconnect(w http.ResponseWriter, r *http.Request) {
	user, err := userParam(r)
	if err != nil {
		s.requestError(w, err)
		return
	}
	all, ok := s.scope(w, r)
	if !ok {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var q struct {
		Reason *string `json:"reason"`
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := decodeStrict(body, &q); err != nil {
			s.requestError(w, err)
			return
		}
	}
	reason := "disconnected by the server"
	if q.Reason != nil {
		if strings.TrimSpace(*q.Reason) == "" {
			s.requestError(w, badf("reason must be a non-empty string when given"))
			return
		}
		reason = *q.Reason
	}
	n, err := s.manager.DisconnectEverywhere(r.Context(), all, user, reason)
	if err != nil {
		s.clusterError(w, r, fmt.Sprintf("disconnect; this node ended %d of the user's connections", n), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"message": "user disconnected", "disconnected": n, "timestamp": stream.NowMillis(),
	})
}
