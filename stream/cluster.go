package stream

import (
	"context"
	"sort"
	"time"
)

// Cluster is an optional interface of a Store that several nodes share. The
// Manager finds it by type assertion: with it, stats, connection lists and
// disconnects cover every live node; without it (the in-memory store) the
// node is alone and answers for itself.
type Cluster interface {
	// NodeID names this node in the cluster; it is unique among live nodes.
	NodeID() string

	// Join announces this node (and keeps announcing it until the store is
	// closed) and makes it answer the other nodes' requests through local.
	Join(local LocalNode)

	// Nodes lists the live nodes, as last announced.
	Nodes(ctx context.Context) ([]NodeStatus, error)

	// Ask sends req to every other live node and returns the answers that
	// arrived within the cluster's bounded wait; a node that does not answer
	// in time is left out. It fails only when the request cannot be sent.
	Ask(ctx context.Context, req NodeRequest) ([]NodeReport, error)
}

// LocalNode is what a node answers for itself; the Manager implements it.
type LocalNode interface {
	Counts() Counts
	UserIDs() []string
	Connections(userID string) []SessionInfo
	DisconnectUser(userID, reason string) int
}

// NodeStatus is one live node of the registry (GET /api/ws/nodes). Times are
// milliseconds since the epoch.
type NodeStatus struct {
	ID        string
	StartedAt int64
	LastSeen  int64
	Counts    Counts
}

// RequestKind is what a NodeRequest asks of every node.
type RequestKind string

// The requests a node answers for the others.
const (
	AskStats       RequestKind = "stats"
	AskConnections RequestKind = "connections"
	AskDisconnect  RequestKind = "disconnect"
)

// NodeRequest asks every node for its part of a cluster-wide answer.
type NodeRequest struct {
	Kind   RequestKind
	UserID string // connections, disconnect
	Reason string // disconnect
}

// NodeReport is one node's answer to a NodeRequest: Counts and Users for
// stats, Connections for connections, Disconnected for disconnect.
type NodeReport struct {
	Node         string        `json:"node"`
	Counts       Counts        `json:"counts"`
	Users        []string      `json:"users,omitempty"`
	Connections  []SessionInfo `json:"connections,omitempty"`
	Disconnected int           `json:"disconnected"`
}

// Answer computes this node's report for req; a disconnect request ends the
// user's connections here.
func Answer(local LocalNode, node string, req NodeRequest) NodeReport {
	rep := NodeReport{Node: node}
	switch req.Kind {
	case AskStats:
		rep.Counts = local.Counts()
		rep.Users = local.UserIDs()
	case AskConnections:
		rep.Connections = local.Connections(req.UserID)
	case AskDisconnect:
		rep.Disconnected = local.DisconnectUser(req.UserID, req.Reason)
	}
	return rep
}

// ClusterStats are the connection figures of every node that answered.
type ClusterStats struct {
	Counts // Users counts a user once however many nodes it is on
	Nodes  int
}

// NodeID names this node: the cluster's name for it, else one of its own.
func (m *Manager) NodeID() string { return m.nodeID }

// UserIDs lists the users with a live connection on this node.
func (m *Manager) UserIDs() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.users))
	for u := range m.users {
		out = append(out, u)
	}
	return out
}

// ask is the other nodes' reports for req, none when this node is alone.
func (m *Manager) ask(ctx context.Context, all bool, req NodeRequest) ([]NodeReport, error) {
	if !all || m.cluster == nil {
		return nil, nil
	}
	return m.cluster.Ask(ctx, req)
}

// Stats sums the connection figures of this node and, when all is set, of
// every other live node that answers in time.
func (m *Manager) Stats(ctx context.Context, all bool) (ClusterStats, error) {
	reps, err := m.ask(ctx, all, NodeRequest{Kind: AskStats})
	if err != nil {
		return ClusterStats{}, err
	}
	reps = append(reps, Answer(m, m.nodeID, NodeRequest{Kind: AskStats}))
	st := ClusterStats{Counts: Counts{Transports: map[string]int{}}, Nodes: len(reps)}
	users := make(map[string]struct{})
	for _, r := range reps {
		st.Connections += r.Counts.Connections
		for tr, n := range r.Counts.Transports {
			st.Transports[tr] += n
		}
		for _, u := range r.Users {
			users[u] = struct{}{}
		}
	}
	st.Users = len(users)
	return st, nil
}

// UserConnections lists userID's live connections on this node and, when
// all is set, on every other live node that answers in time, oldest first.
func (m *Manager) UserConnections(ctx context.Context, all bool, userID string) ([]SessionInfo, error) {
	reps, err := m.ask(ctx, all, NodeRequest{Kind: AskConnections, UserID: userID})
	if err != nil {
		return nil, err
	}
	out := m.Connections(userID)
	for _, r := range reps {
		out = append(out, r.Connections...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ConnectedAt != out[j].ConnectedAt {
			return out[i].ConnectedAt < out[j].ConnectedAt
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// DisconnectEverywhere ends userID's connections on this node and, when all
// is set, on every other live node; it returns how many ended on the nodes
// that answered in time. This node's connections are ended even when the
// other nodes cannot be reached (then the error says so).
func (m *Manager) DisconnectEverywhere(ctx context.Context, all bool, userID, reason string) (int, error) {
	n := m.DisconnectUser(userID, reason)
	reps, err := m.ask(ctx, all, NodeRequest{Kind: AskDisconnect, UserID: userID, Reason: reason})
	for _, r := range reps {
		n += r.Disconnected
	}
	return n, err
}

// Nodes lists the live nodes, this one with its current figures; when all
// is false, or the node is alone, only this one.
func (m *Manager) Nodes(ctx context.Context, all bool) ([]NodeStatus, error) {
	self := NodeStatus{ID: m.nodeID, StartedAt: m.startedAt.UnixMilli(), LastSeen: NowMillis(), Counts: m.Counts()}
	if !all || m.cluster == nil {
		return []NodeStatus{self}, nil
	}
	list, err := m.cluster.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	out := []NodeStatus{self}
	for _, n := range list {
		if n.ID == m.nodeID {
			self.StartedAt = n.StartedAt
			out[0] = self
			continue
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].StartedAt != out[j].StartedAt {
			return out[i].StartedAt < out[j].StartedAt
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// joinCluster names the manager's node and, on a shared store, joins it.
func (m *Manager) joinCluster(store Store) {
	m.startedAt = time.Now()
	if c, ok := store.(Cluster); ok {
		m.cluster = c
		m.nodeID = c.NodeID()
		c.Join(m)
		return
	}
	m.nodeID = randomID()
}
