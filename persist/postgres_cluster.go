package persist

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pushd/pushd/stream"
)

// Cluster-wide requests go through the database alone, so an operator
// configures no node addresses: the asking node inserts a row in
// push.node_requests and NOTIFYs "ask <origin> <id>" on clusterChannel;
// every other node computes its part (stream.Answer), inserts it into
// push.node_replies and NOTIFYs "reply <origin> <id>", which wakes the
// asker. The asker waits at most askTimeout for the nodes live in the
// registry when it asked, polling the replies as well in case a
// notification is lost; a node that has not answered by then is left out.
const (
	clusterChannel = "push_nodes"
	askTimeout     = 1500 * time.Millisecond
	askPoll        = 100 * time.Millisecond
)

// Ask implements stream.Cluster.
func (s *Postgres) Ask(ctx context.Context, req stream.NodeRequest) ([]stream.NodeReport, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	c := s.cluster.Load()
	if c == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	others, err := s.liveOthers(ctx)
	if err != nil || len(others) == 0 {
		return nil, err
	}
	id, err := s.sendRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	wake := c.await(id)
	defer c.done(id)
	got := map[string]stream.NodeReport{}
	poll := time.NewTicker(askPoll)
	defer poll.Stop()
	for {
		if err := s.readReplies(ctx, id, got); err != nil && ctx.Err() == nil {
			s.log.Debug("reading node replies failed; retrying", "request", id, "err", err)
		}
		if answeredAll(others, got) {
			break
		}
		select {
		case <-wake:
		case <-poll.C:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	out := make([]stream.NodeReport, 0, len(got))
	for _, r := range got {
		out = append(out, r)
	}
	return out, nil
}

func answeredAll(expected map[string]bool, got map[string]stream.NodeReport) bool {
	for id := range expected {
		if _, ok := got[id]; !ok {
			return false
		}
	}
	return true
}

func (s *Postgres) sendRequest(ctx context.Context, req stream.NodeRequest) (int64, error) {
	var id int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `
INSERT INTO push.node_requests (origin, kind, user_id, reason) VALUES ($1, $2, $3, $4) RETURNING id`,
			s.node, string(req.Kind), req.UserID, req.Reason).Scan(&id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, clusterChannel, fmt.Sprintf("ask %s %d", s.node, id))
		return err
	})
	if err != nil {
		return 0, s.fail(ctx, "send node request", err)
	}
	return id, nil
}

// readReplies adds the replies to request id not yet in got.
func (s *Postgres) readReplies(ctx context.Context, id int64, got map[string]stream.NodeReport) error {
	rows, err := s.pool.Query(ctx, `SELECT node, body FROM push.node_replies WHERE request = $1`, id)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var node string
		var body []byte
		if err := rows.Scan(&node, &body); err != nil {
			return err
		}
		if _, ok := got[node]; ok {
			continue
		}
		var rep stream.NodeReport
		if err := json.Unmarshal(body, &rep); err != nil {
			return fmt.Errorf("reply of node %s: %w", node, err)
		}
		rep.Node = node
		got[node] = rep
	}
	return rows.Err()
}

// await registers a wake-up for the replies to request id.
func (c *cluster) await(id int64) <-chan struct{} {
	ch := make(chan struct{}, 1)
	c.waitMu.Lock()
	c.waiters[id] = ch
	c.waitMu.Unlock()
	return ch
}

func (c *cluster) done(id int64) {
	c.waitMu.Lock()
	delete(c.waiters, id)
	c.waitMu.Unlock()
}

func (c *cluster) wake(id int64) {
	c.waitMu.Lock()
	ch := c.waiters[id]
	c.waitMu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// listenCluster keeps a LISTEN connection of its own on clusterChannel
// (apart from the log's, so neither waits behind the other).
func (s *Postgres) listenCluster(c *cluster) {
	defer s.wg.Done()
	var down atomic.Bool
	l := s.listener(&down, "cluster LISTEN connection lost; reconnecting (requests sent meanwhile go unanswered by this node)")
	l.Handle(clusterChannel, clusterHandler{s: s, c: c, down: &down})
	_ = l.Listen(s.stopCtx)
}

type clusterHandler struct {
	s    *Postgres
	c    *cluster
	down *atomic.Bool
}

func (h clusterHandler) HandleNotification(ctx context.Context, n *pgconn.Notification, conn *pgx.Conn) error {
	verb, origin, id, ok := parseClusterNote(n.Payload)
	switch {
	case !ok:
		h.s.log.Debug("ignoring a malformed cluster notification", "payload", n.Payload)
	case verb == "reply" && origin == h.s.node:
		h.c.wake(id)
	case verb == "ask" && origin != h.s.node:
		select {
		case h.c.answering <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		h.s.wg.Add(1)
		go func() {
			defer h.s.wg.Done()
			defer func() { <-h.c.answering }()
			h.s.answer(h.c, origin, id)
		}()
	}
	return nil
}

func (h clusterHandler) HandleBacklog(ctx context.Context, channel string, conn *pgx.Conn) error {
	h.c.listenOnce.Do(func() { close(h.c.listening) })
	if h.down.Swap(false) {
		h.s.log.Info("cluster LISTEN connection back")
	}
	return nil
}

func parseClusterNote(p string) (verb, origin string, id int64, ok bool) {
	f := strings.Fields(p)
	if len(f) != 3 {
		return "", "", 0, false
	}
	id, err := strconv.ParseInt(f[2], 10, 64)
	return f[0], f[1], id, err == nil
}

// answer computes this node's part of request id and writes it back. A
// disconnect takes effect here even when the reply cannot be written.
func (s *Postgres) answer(c *cluster, origin string, id int64) {
	ctx, cancel := context.WithTimeout(s.stopCtx, askTimeout)
	defer cancel()
	var req stream.NodeRequest
	var kind string
	err := s.pool.QueryRow(ctx, `
SELECT kind, coalesce(user_id, ''), coalesce(reason, '') FROM push.node_requests WHERE id = $1`, id).Scan(&kind, &req.UserID, &req.Reason)
	if err != nil {
		s.log.Warn("reading a node request failed", "request", id, "from", origin, "err", err)
		return
	}
	req.Kind = stream.RequestKind(kind)
	body, err := json.Marshal(stream.Answer(c.local, s.node, req))
	if err != nil {
		s.log.Error("encoding a node reply failed", "request", id, "err", err)
		return
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
INSERT INTO push.node_replies (request, node, body) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, id, s.node, body); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, clusterChannel, fmt.Sprintf("reply %s %d", origin, id))
		return err
	})
	if err != nil {
		s.log.Warn("answering a node request failed", "request", id, "from", origin, "kind", kind, "err", err)
	}
}
