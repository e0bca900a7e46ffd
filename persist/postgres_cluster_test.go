package persist

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/pgtest"
	"github.com/pushd/pushd/stream"
)

// fakeNode is a LocalNode with fixed answers; DisconnectUser may block, to
// play a slow node.
type fakeNode struct {
	users []string
	conns []stream.SessionInfo
	block time.Duration

	mu     sync.Mutex
	kicked []string // "user:reason"
}

func (f *fakeNode) Counts() stream.Counts {
	return stream.Counts{Connections: len(f.conns), Users: len(f.users), Transports: map[string]int{"sse": len(f.conns)}}
}
func (f *fakeNode) UserIDs() []string { return f.users }
func (f *fakeNode) Connections(user string) []stream.SessionInfo {
	var out []stream.SessionInfo
	for _, c := range f.conns {
		if c.UserID == user {
			out = append(out, c)
		}
	}
	return out
}
func (f *fakeNode) DisconnectUser(user, reason string) int {
	time.Sleep(f.block)
	f.mu.Lock()
	f.kicked = append(f.kicked, user+":"+reason)
	f.mu.Unlock()
	return len(f.Connections(user))
}

func joined(t *testing.T, url string, local stream.LocalNode) *Postgres {
	t.Helper()
	s := openPG(t, url, big())
	s.Join(local)
	return s
}

// TestClusterAskAnswers: a request reaches every other joined store and
// comes back with each one's answer; the asker is not among them.
func TestClusterAskAnswers(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	a := joined(t, url, &fakeNode{})
	bNode := &fakeNode{users: []string{"u1", "u2"}, conns: []stream.SessionInfo{{ID: "c1", UserID: "u1", Node: "b"}}}
	cNode := &fakeNode{users: []string{"u2"}, conns: []stream.SessionInfo{{ID: "c2", UserID: "u1", Node: "c"}, {ID: "c3", UserID: "u2", Node: "c"}}}
	b := joined(t, url, bNode)
	c := joined(t, url, cNode)
	ctx := context.Background()

	reps, err := a.Ask(ctx, stream.NodeRequest{Kind: stream.AskStats})
	if err != nil {
		t.Fatal(err)
	}
	byNode := map[string]stream.NodeReport{}
	for _, r := range reps {
		byNode[r.Node] = r
	}
	if len(reps) != 2 || !slices.Equal(byNode[b.NodeID()].Users, bNode.users) || byNode[c.NodeID()].Counts.Connections != 2 {
		t.Fatalf("stats replies %+v, want b's and c's", reps)
	}
	reps, err = a.Ask(ctx, stream.NodeRequest{Kind: stream.AskConnections, UserID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range reps {
		for _, ci := range r.Connections {
			ids = append(ids, ci.ID)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"c1", "c2"}) {
		t.Errorf("connections of u1: %v, want c1 c2", ids)
	}
	reps, err = a.Ask(ctx, stream.NodeRequest{Kind: stream.AskDisconnect, UserID: "u2", Reason: "bye"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range reps {
		n += r.Disconnected
	}
	if n != 1 || !slices.Equal(cNode.kicked, []string{"u2:bye"}) || !slices.Equal(bNode.kicked, []string{"u2:bye"}) {
		t.Errorf("disconnect u2: %d ended, kicked b %v c %v; want 1, both asked with the reason", n, bNode.kicked, cNode.kicked)
	}

	nodes, err := a.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, nd := range nodes {
		live = append(live, nd.ID)
	}
	want := []string{a.NodeID(), b.NodeID(), c.NodeID()}
	slices.Sort(live)
	slices.Sort(want)
	if !slices.Equal(live, want) {
		t.Errorf("nodes %v, want %v", live, want)
	}

	// A closed store leaves the registry and is no longer asked.
	_ = c.Close(ctx)
	nodes, _ = a.Nodes(ctx)
	if len(nodes) != 2 {
		t.Errorf("after c closed: %d nodes, want 2", len(nodes))
	}
	start := time.Now()
	reps, err = a.Ask(ctx, stream.NodeRequest{Kind: stream.AskStats})
	if err != nil || len(reps) != 1 || reps[0].Node != b.NodeID() {
		t.Errorf("after c closed: replies %+v (%v), want b's", reps, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("asking the remaining node took %v: it waited for the closed one", took)
	}
}

// TestClusterSlowNodeLeftOut: a node that does not answer within the wait
// delays the answer by the wait alone and is left out; its disconnect still
// happens when it gets to it.
func TestClusterSlowNodeLeftOut(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	a := joined(t, url, &fakeNode{})
	slow := &fakeNode{conns: []stream.SessionInfo{{ID: "s1", UserID: "u"}}, block: 3 * time.Second}
	joined(t, url, slow)
	fast := &fakeNode{conns: []stream.SessionInfo{{ID: "f1", UserID: "u"}}}
	joined(t, url, fast)

	start := time.Now()
	reps, err := a.Ask(context.Background(), stream.NodeRequest{Kind: stream.AskDisconnect, UserID: "u", Reason: "r"})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || reps[0].Disconnected != 1 {
		t.Errorf("replies %+v, want the fast node's alone", reps)
	}
	if took < askTimeout || took > askTimeout+time.Second {
		t.Errorf("the answer took %v, want the %v wait (plus little)", took, askTimeout)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		slow.mu.Lock()
		done := len(slow.kicked) == 1
		slow.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow node never carried out the disconnect")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterStaleNodeIgnored: a row whose node stopped refreshing (killed)
// is neither listed nor waited for once it is older than nodeStale, and is
// deleted after nodeForget.
func TestClusterStaleNodeIgnored(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	a := joined(t, url, &fakeNode{})
	ctx := context.Background()
	if _, err := a.pool.Exec(ctx, `
INSERT INTO push.nodes (id, started_at, last_seen) VALUES
 ('dead', now() - interval '1 hour', now() - make_interval(secs => $1)),
 ('gone', now() - interval '1 hour', now() - make_interval(secs => $2))`,
		nodeStale.Seconds()+1, nodeForget.Seconds()+1); err != nil {
		t.Fatal(err)
	}
	nodes, err := a.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ID != a.NodeID() {
		t.Fatalf("nodes %+v (%v), want only the live one", nodes, err)
	}
	start := time.Now()
	if reps, err := a.Ask(ctx, stream.NodeRequest{Kind: stream.AskStats}); err != nil || len(reps) != 0 {
		t.Errorf("ask: %+v, %v; want no other node", reps, err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("ask took %v: it waited for a dead node", took)
	}
	a.tidyCluster()
	var left []string
	rows, _ := a.pool.Query(ctx, `SELECT id FROM push.nodes ORDER BY id`)
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		left = append(left, id)
	}
	rows.Close()
	if !slices.Contains(left, "dead") || slices.Contains(left, "gone") {
		t.Errorf("after tidying: %v, want dead kept (younger than %v) and gone deleted", left, nodeForget)
	}
}

// TestClusterAskUnavailable: with the store closed the request cannot be
// sent, and the error says the store is unavailable.
func TestClusterAskUnavailable(t *testing.T) {
	t.Parallel()
	a := joined(t, pgtest.NewDB(t), &fakeNode{})
	_ = a.Close(bg)
	if _, err := a.Ask(context.Background(), stream.NodeRequest{Kind: stream.AskStats}); !errors.Is(err, stream.ErrUnavailable) {
		t.Errorf("ask on a closed store: %v, want ErrUnavailable", err)
	}
	if _, err := a.Nodes(context.Background()); !errors.Is(err, stream.ErrUnavailable) {
		t.Errorf("nodes on a closed store: %v, want ErrUnavailable", err)
	}
}
