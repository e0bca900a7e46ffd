package main

// Store faults end to end (issue 15): two pushd nodes on one PostgreSQL
// database, publishers and live SSE subscribers running on both, while the
// database loses connections (pg_terminate_backend of the writer's, the
// tail's and the LISTEN connection) or goes down altogether (stopped, and
// crashed, then started again). Throughout: publishes answer 202 or 503
// (never a lie: a 503 is never delivered, a 202 always is), streams stay up,
// /readyz says 503 while the database is down; afterwards every stream has
// every accepted message exactly once, in order.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pushd/pushd/internal/pgtest"
)

var faultUsers = []string{"fa", "fb", "fc"}

// faultRig is the running system under faults.
type faultRig struct {
	t     *testing.T
	db    string
	nodes []*node
	subs  []*faultSub
	http  *http.Client
	seq   atomic.Int64 // unique message bodies

	mu       sync.Mutex
	accepted map[string]string // body -> id (202)
	targets  map[string]string // body -> user ("" for a broadcast)
	refused  map[string]bool   // bodies answered 503
	doubtful map[string]bool   // bodies answered 500 outcome_unknown
	other    []string          // anything else
	counts   map[int]int       // status -> answers

	stop chan struct{}
	wg   sync.WaitGroup
}

// newFaultRig starts two nodes on database db, reached at nodeDB (db, or a
// proxy in front of it).
func newFaultRig(t *testing.T, db, nodeDB string) *faultRig {
	r := &faultRig{
		t: t, db: db, http: &http.Client{Timeout: 30 * time.Second},
		accepted: map[string]string{}, targets: map[string]string{}, refused: map[string]bool{},
		doubtful: map[string]bool{}, counts: map[int]int{}, stop: make(chan struct{}),
	}
	r.nodes = []*node{startNode(t, nodeDB), startNode(t, nodeDB)}
	for _, n := range r.nodes {
		for _, u := range faultUsers {
			r.subs = append(r.subs, openFaultSub(t, n, u))
		}
	}
	for _, s := range r.subs {
		s.waitConnected(t)
	}
	return r
}

// publish sends one message through node i and records the answer.
func (r *faultRig) publish(i int, user string) (int, string) {
	body := fmt.Sprintf("m%d", r.seq.Add(1))
	path, req := "/api/ws/push/notification", fmt.Sprintf(`{"userId":%q,"title":"t","body":%q}`, user, body)
	if user == "" {
		path, req = "/api/ws/broadcast", fmt.Sprintf(`{"title":"t","body":%q}`, body)
	}
	hr, _ := http.NewRequest("POST", r.nodes[i%len(r.nodes)].base+path, strings.NewReader(req))
	hr.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := r.http.Do(hr)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.other = append(r.other, fmt.Sprintf("POST %s: %v", path, err))
		return 0, body
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.counts[resp.StatusCode]++
	var out struct {
		ID    string                `json:"id"`
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(b, &out)
	switch {
	case resp.StatusCode == http.StatusAccepted && out.ID != "":
		r.accepted[body], r.targets[body] = out.ID, user
	case resp.StatusCode == http.StatusServiceUnavailable && out.Error.Code == "unavailable" && resp.Header.Get("Retry-After") != "":
		r.refused[body] = true
	case resp.StatusCode == http.StatusInternalServerError && out.Error.Code == "outcome_unknown":
		r.doubtful[body] = true
	default:
		r.other = append(r.other, fmt.Sprintf("POST %s: %d %s", path, resp.StatusCode, b))
	}
	return resp.StatusCode, body
}

// startPublishing runs publishers until stopPublishing.
func (r *faultRig) startPublishing() {
	for w := range 4 {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-r.stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				user := ""
				if i%7 != 0 {
					user = faultUsers[(w+i)%len(faultUsers)]
				}
				if status, _ := r.publish(w+i, user); status != http.StatusAccepted {
					time.Sleep(50 * time.Millisecond) // back off while the store is down
				}
			}
		}()
	}
}

func (r *faultRig) stopPublishing() {
	close(r.stop)
	r.wg.Wait()
}

// waitAccepting waits until both nodes store publishes again.
func (r *faultRig) waitAccepting(what string) {
	r.t.Helper()
	for i := range r.nodes {
		deadline := time.Now().Add(30 * time.Second)
		for {
			if status, _ := r.publish(i, faultUsers[0]); status == http.StatusAccepted {
				break
			}
			if time.Now().After(deadline) {
				r.t.Fatalf("%s: node %d does not accept publishes again", what, i)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// readyz returns node i's /readyz status.
func (r *faultRig) readyz(i int) int {
	resp, err := r.http.Get(r.nodes[i].base + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// terminate ends the backends of the database whose last statement matches
// like, retrying until at least one was ended.
func (r *faultRig) terminate(what, like string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, r.db)
	if err != nil {
		r.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for {
		var n int
		err := conn.QueryRow(ctx, `
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE $1`, like).Scan(&n)
		if err != nil {
			r.t.Fatalf("terminating %s: %v", what, err)
		}
		if n > 0 {
			r.t.Logf("terminated %d backend(s) of %s", n, what)
			return
		}
		if ctx.Err() != nil {
			r.t.Fatalf("no backend of %s found (statement like %q)", what, like)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verify checks every stream once publishing stopped: each ends with a
// marker, has every accepted message of its user exactly once and in
// order, nothing refused, and one connected event (the stream stayed up).
func (r *faultRig) verify() {
	t := r.t
	t.Helper()
	markers := map[string]string{}
	for _, u := range faultUsers {
		status, body := r.publish(0, u)
		if status != http.StatusAccepted {
			t.Fatalf("marker for %s: %d", u, status)
		}
		markers[u] = body
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.other {
		t.Errorf("an answer that is neither 202, 503 nor 500 outcome_unknown: %s", o)
	}
	for _, s := range r.subs {
		evs := s.until(t, markers[s.user])
		seen := map[string]bool{}
		var last string
		for _, e := range evs {
			if seen[e.body] {
				t.Errorf("%s: %s (%s) delivered twice", s.name, e.body, e.id)
			}
			seen[e.body] = true
			if e.id <= last {
				t.Errorf("%s: id %s after %s: out of order", s.name, e.id, last)
			}
			last = e.id
			if r.refused[e.body] {
				t.Errorf("%s: %s was answered 503 but delivered: a retry would duplicate it", s.name, e.body)
			}
			if id, ok := r.accepted[e.body]; ok && id != e.id {
				t.Errorf("%s: %s delivered as %s, answered as %s", s.name, e.body, e.id, id)
			}
		}
		for body, id := range r.accepted {
			if u := r.targets[body]; (u == "" || u == s.user) && !seen[body] {
				t.Errorf("%s: %s (%s) was answered 202 but never delivered", s.name, body, id)
			}
		}
		if c := s.connects.Load(); c != 1 {
			t.Errorf("%s: %d connected events: the stream did not stay up", s.name, c)
		}
	}
	var committed, not int
	for _, n := range r.nodes {
		committed += strings.Count(n.stderr.String(), "the commit in doubt had committed")
		not += strings.Count(n.stderr.String(), "the commit in doubt had not committed")
	}
	t.Logf("answers by status: %v; %d in doubt; commits in doubt settled: %d committed, %d not", r.counts, len(r.doubtful), committed, not)
}

// faultSub is a live SSE subscriber that records what it receives.
type faultSub struct {
	name, user string
	connects   atomic.Int32
	events     chan faultEvent
	ended      atomic.Bool
}

type faultEvent struct{ id, typ, body string }

func openFaultSub(t *testing.T, n *node, user string) *faultSub {
	t.Helper()
	s := &faultSub{name: fmt.Sprintf("SSE(%s on %s)", user, n.base), user: user, events: make(chan faultEvent, 100000)}
	n.subscribe(t, user, func(id, typ, data string) {
		switch typ {
		case "connected":
			s.connects.Add(1)
		case "notification":
			var env struct {
				Payload struct{ Body string } `json:"payload"`
			}
			_ = json.Unmarshal([]byte(data), &env)
			s.events <- faultEvent{id: id, typ: typ, body: env.Payload.Body}
		}
	}, func() { s.ended.Store(true) })
	return s
}

func (s *faultSub) waitConnected(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for s.connects.Load() == 0 {
		if time.Now().After(deadline) || s.ended.Load() {
			t.Fatalf("%s: no connected event", s.name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// until returns the notifications received up to the one with body marker.
func (s *faultSub) until(t *testing.T, marker string) []faultEvent {
	t.Helper()
	var out []faultEvent
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e := <-s.events:
			out = append(out, e)
			if e.body == marker {
				return out
			}
		case <-deadline:
			t.Fatalf("%s: marker %s not delivered within 30 s (stream ended: %v; %d received)", s.name, marker, s.ended.Load(), len(out))
		}
	}
}

// TestStoreFaultTerminatedConnections ends, one after the other, the
// connections that write the log, that read it (the tail) and that LISTEN,
// then every connection at once, while both nodes publish and deliver.
func TestStoreFaultTerminatedConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection under load for ~15 s")
	}
	db := pgtest.NewDB(t)
	r := newFaultRig(t, db, db)
	r.startPublishing()
	for _, f := range []struct{ what, like string }{
		{"the writer", "%pg_notify%"},
		{"the tail", "%WHERE seq > $1 ORDER BY seq%"},
		{"the LISTEN connection", "listen %"},
		{"every connection", "%"},
	} {
		time.Sleep(700 * time.Millisecond)
		r.terminate(f.what, f.like)
		time.Sleep(300 * time.Millisecond)
		r.waitAccepting("after ending " + f.what)
	}
	time.Sleep(500 * time.Millisecond)
	r.stopPublishing()
	r.verify()
}

// TestStoreFaultServerDown stops PostgreSQL (a cluster of its own) for a
// while and starts it again, then crashes it (three times) and starts it
// again, while
// both nodes publish and deliver. While it is down publishes are refused,
// /readyz says 503 and the streams stay up; after it, pushd recovers by
// itself.
func TestStoreFaultServerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and crashes a PostgreSQL cluster of its own under load for ~25 s")
	}
	cluster := pgtest.NewCluster(t)
	db := cluster.NewDB(t)
	// Replies held back: a crash often cuts off the reply to a commit that
	// went through, which the nodes must then answer 202 and deliver once.
	r := newFaultRig(t, db, pgtest.LagProxy(t, db, 10*time.Millisecond))
	r.startPublishing()
	for _, down := range []struct {
		what string
		stop func(testing.TB)
	}{{"stopped", cluster.Stop}, {"crashed", cluster.Crash}, {"crashed again", cluster.Crash}, {"crashed a third time", cluster.Crash}} {
		time.Sleep(700 * time.Millisecond)
		down.stop(t)
		// Down: no publish is stored, readiness is false on both nodes.
		for i := range r.nodes {
			waitFor(t, fmt.Sprintf("node %d's /readyz to say 503 with the database %s", i, down.what), func() bool { return r.readyz(i) == http.StatusServiceUnavailable })
			if status, body := r.publish(i, faultUsers[1]); status != http.StatusServiceUnavailable {
				t.Errorf("publish with the database %s: %d (%s), want 503", down.what, status, body)
			}
		}
		time.Sleep(time.Second)
		cluster.Start(t)
		for i := range r.nodes {
			waitFor(t, fmt.Sprintf("node %d's /readyz to say 200 after the database was %s", i, down.what), func() bool { return r.readyz(i) == http.StatusOK })
		}
		r.waitAccepting("after the database was " + down.what)
	}
	time.Sleep(500 * time.Millisecond)
	r.stopPublishing()
	r.verify()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
