package persist

import (
	"context"
	"sync"
	"time"

	"github.com/pushd/pushd/stream"
)

// The node registry (push.nodes): every node upserts its row every
// nodeRefresh with its current counts; the database's clock stamps
// last_seen, so node clocks do not matter. A node is live while last_seen is
// younger than nodeStale; a node that stops deletes its row, a killed one
// ages out of every answer within nodeStale + one request.
const (
	nodeRefresh = 2 * time.Second
	nodeStale   = 10 * time.Second
	// nodeForget is how long dead rows and old requests stay before a live
	// node deletes them (only tidiness: every reader filters by age).
	nodeForget = time.Minute
	// nodeOpTimeout bounds one registry statement.
	nodeOpTimeout = 2 * time.Second
	// joinWait bounds how long Join waits for the LISTEN connection.
	joinWait = 5 * time.Second
)

// cluster is a Postgres store's membership: set by Join.
type cluster struct {
	local      stream.LocalNode
	startedAt  time.Time
	answering  chan struct{} // bounds the requests answered at once
	listening  chan struct{} // closed once the LISTEN for requests is in place
	listenOnce sync.Once
	leaving    chan struct{} // closed by leave: the refresher stops
	refreshed  chan struct{} // closed when the refresher has stopped
	waitMu     sync.Mutex
	waiters    map[int64]chan struct{} // requests of this node awaiting replies
}

var _ stream.Cluster = (*Postgres)(nil)

// NodeID implements stream.Cluster.
func (s *Postgres) NodeID() string { return s.node }

// Join implements stream.Cluster: once it listens for the other nodes'
// requests (so no node waits for an answer it cannot give), it announces
// the node (a failure is logged and retried on the next refresh), then keeps
// its row fresh and answers requests until Close.
func (s *Postgres) Join(local stream.LocalNode) {
	c := &cluster{
		local:     local,
		startedAt: time.Now(),
		answering: make(chan struct{}, 8),
		listening: make(chan struct{}),
		leaving:   make(chan struct{}),
		refreshed: make(chan struct{}),
		waiters:   make(map[int64]chan struct{}),
	}
	s.cluster.Store(c)
	s.wg.Add(2)
	go s.listenCluster(c)
	select {
	case <-c.listening:
	case <-time.After(joinWait):
		s.log.Warn("not yet listening for the other nodes' requests; announcing this node anyway", "node", s.node)
	}
	if err := s.announce(c); err != nil {
		s.log.Warn("announcing this node failed; retrying", "node", s.node, "err", err)
	} else {
		s.log.Info("joined the nodes on this database", "node", s.node)
	}
	go s.refreshNode(c)
}

func (s *Postgres) announce(c *cluster) error {
	ctx, cancel := context.WithTimeout(s.stopCtx, nodeOpTimeout)
	defer cancel()
	n := c.local.Counts()
	_, err := s.pool.Exec(ctx, `
INSERT INTO push.nodes (id, started_at, last_seen, connections, users, sse, ws)
VALUES ($1, $2, now(), $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE SET last_seen = now(), connections = $3, users = $4, sse = $5, ws = $6`,
		s.node, c.startedAt, n.Connections, n.Users, n.Transports["sse"], n.Transports["ws"])
	if err != nil {
		return s.fail(ctx, "announce node", err)
	}
	return nil
}

// refreshNode keeps this node's row fresh, and now and then deletes what
// dead nodes and old requests left behind.
func (s *Postgres) refreshNode(c *cluster) {
	defer s.wg.Done()
	defer close(c.refreshed)
	t := time.NewTicker(nodeRefresh)
	defer t.Stop()
	var failing bool
	var lastTidy time.Time
	for {
		select {
		case <-s.stop:
			return
		case <-c.leaving:
			return
		case <-t.C:
		}
		err := s.announce(c)
		switch {
		case err != nil && !failing:
			s.log.Warn("refreshing this node in the registry failed; retrying", "node", s.node, "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("this node is in the registry again", "node", s.node)
			failing = false
		}
		if err == nil && time.Since(lastTidy) > nodeForget {
			lastTidy = time.Now()
			s.tidyCluster()
		}
	}
}

func (s *Postgres) tidyCluster() {
	ctx, cancel := context.WithTimeout(s.stopCtx, nodeOpTimeout)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `DELETE FROM push.nodes WHERE last_seen < now() - make_interval(secs => $1)`, nodeForget.Seconds()); err != nil {
		s.log.Debug("deleting dead nodes failed", "err", err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM push.node_requests WHERE created_at < now() - make_interval(secs => $1)`, nodeForget.Seconds()); err != nil {
		s.log.Debug("deleting old node requests failed", "err", err)
	}
}

// leave stops the refresher and deletes this node's row, so the others
// stop counting it at once rather than after nodeStale. The node goes on
// answering requests until the store's listeners stop.
func (s *Postgres) leave() {
	c := s.cluster.Load()
	if c == nil {
		return
	}
	close(c.leaving)
	<-c.refreshed // a refresh in flight must not put the row back
	ctx, cancel := context.WithTimeout(context.Background(), nodeOpTimeout)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `DELETE FROM push.nodes WHERE id = $1`, s.node); err != nil {
		s.log.Warn("leaving the registry failed; the node ages out instead", "node", s.node, "err", err)
	}
}

// Nodes implements stream.Cluster.
func (s *Postgres) Nodes(ctx context.Context) ([]stream.NodeStatus, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `
SELECT id, started_at, last_seen, connections, users, sse, ws FROM push.nodes
WHERE last_seen > now() - make_interval(secs => $1) ORDER BY started_at, id`, nodeStale.Seconds())
	if err != nil {
		return nil, s.fail(ctx, "list nodes", err)
	}
	defer rows.Close()
	var out []stream.NodeStatus
	for rows.Next() {
		var n stream.NodeStatus
		var started, seen time.Time
		var sse, ws int
		if err := rows.Scan(&n.ID, &started, &seen, &n.Counts.Connections, &n.Counts.Users, &sse, &ws); err != nil {
			return nil, s.fail(ctx, "list nodes", err)
		}
		n.StartedAt, n.LastSeen = started.UnixMilli(), seen.UnixMilli()
		n.Counts.Transports = map[string]int{"sse": sse, "ws": ws}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "list nodes", err)
	}
	return out, nil
}

// liveOthers are the ids of the other live nodes.
func (s *Postgres) liveOthers(ctx context.Context) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `
SELECT id FROM push.nodes WHERE last_seen > now() - make_interval(secs => $1) AND id <> $2`, nodeStale.Seconds(), s.node)
	if err != nil {
		return nil, s.fail(ctx, "list nodes", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, s.fail(ctx, "list nodes", err)
		}
		out[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "list nodes", err)
	}
	return out, nil
}
