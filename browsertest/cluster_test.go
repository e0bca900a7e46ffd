package browsertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/roundrobin"
)

// TestRollingRestartBrowser: the browser client (SSE in one page, WebSocket
// in another) behind a round-robin TCP proxy in front of three pushd nodes
// on one PostgreSQL database. With publishing going on through the proxy,
// the nodes are restarted one after the other (SIGTERM, start again); each
// page ends with every message of its stream exactly once, in order, and no
// reset.
func TestRollingRestartBrowser(t *testing.T) {
	dbURL, ok := testDatabase(t)
	if !ok {
		t.Skip("PUSH_TEST_DATABASE_URL not set: skipping the rolling-restart browser test (.ci/run sets it)")
	}
	key, secret := "cluster-key-"+randHex(8), "cluster-secret-"+randHex(16)
	var nodes []*pushd
	var addrs []string
	for range 3 {
		p := startPushd(t, "--database-url", dbURL, "--api-key", key, "--jwt-secret", secret)
		p.apiKey, p.secret = key, secret // the flags given last win
		nodes = append(nodes, p)
		addrs = append(addrs, p.addr)
	}
	rr, err := roundrobin.Listen(addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rr.Close)
	lb := &pushd{t: t, addr: rr.Addr(), apiKey: key, secret: secret}

	b := newBrowser(t)
	users := []string{"rolling-sse", "rolling-ws"}
	var tabs []*tab
	for i, tr := range []string{"sse", "ws"} {
		f := newFront(t, lb) // an origin of its own: the pages do not share a stream
		tb := openTab(t, b, users[i], f.URL()+"/__test/harness.html")
		tb.startClient(clientOpts(nodes[0].token(users[i]), tr, map[string]any{"reconnectMaxAttempts": 50}))
		tb.waitFor("an open "+tr+" stream", fmt.Sprintf("client.status === 'open' && client.transport === %q", tr), summary, wait)
		tabs = append(tabs, tb)
	}

	pub := &lbPublisher{base: lb.URL(), key: key, acked: map[string][]string{}, uncertain: map[string]bool{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(15 * time.Millisecond):
			}
			user := users[i%2]
			if i%10 == 9 {
				user = ""
			}
			pub.publish(t, user, fmt.Sprintf("b%05d", i))
		}
	})
	for _, n := range nodes {
		time.Sleep(time.Second)
		n.restart()
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d published, %d with unknown outcome", len(pub.acked[users[0]])+len(pub.acked[users[1]])+len(pub.acked[""]), len(pub.uncertain))

	for i, tb := range tabs {
		want := pub.want(users[i])
		var got []string
		var titles []string
		deadline := time.Now().Add(30 * time.Second)
		for {
			tb.mustEval("H.msgs.filter(m => m.id).map(m => m.id)", &got)
			if len(got) >= len(want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		tb.mustEval("H.msgs.filter(m => m.id).map(m => m.payload.title)", &titles)
		var sure []string
		for j, id := range got {
			if j < len(titles) && !pub.uncertain[titles[j]] {
				sure = append(sure, id)
			}
		}
		if !increasing(got) || !slices.Equal(sure, want) {
			t.Errorf("%s: got %d messages (%d sure), want %d exactly once each, in order: %s", users[i], len(got), len(sure), len(want), tb.str(summary))
		}
		if n := tb.str("H.resets.length"); n != "0" {
			t.Errorf("%s: %s reset events; nothing was lost", users[i], n)
		}
		if tb.str("H.statuses.some(s => s.status === 'reconnecting')") != "true" {
			t.Errorf("%s: the page never reconnected although every node restarted", users[i])
		}
	}
}

// lbPublisher publishes through the load balancer, one connection per
// request (so requests spread over the nodes), and remembers the ids
// acknowledged per user ("" for broadcasts) and the titles whose answer was
// lost.
type lbPublisher struct {
	base, key string
	mu        sync.Mutex
	acked     map[string][]string
	uncertain map[string]bool
}

var lbClient = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func (p *lbPublisher) publish(t *testing.T, user, title string) {
	path, body := "/api/ws/broadcast", map[string]any{"title": title, "body": "b"}
	if user != "" {
		path, body = "/api/ws/push/notification", map[string]any{"userId": user, "title": title, "body": "b"}
	}
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", p.base+path, strings.NewReader(string(raw)))
	req.Header.Set("Authorization", "Bearer "+p.key)
	req.Header.Set("Content-Type", "application/json")
	res, err := lbClient.Do(req)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.uncertain[title] = true
		return
	}
	defer res.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	switch {
	case res.StatusCode == http.StatusAccepted && json.NewDecoder(res.Body).Decode(&out) == nil:
		p.acked[user] = append(p.acked[user], out.ID)
	case res.StatusCode == http.StatusServiceUnavailable:
		// not stored
	case res.StatusCode == http.StatusAccepted:
		p.uncertain[title] = true
	default:
		t.Errorf("publish %s: status %d", title, res.StatusCode)
	}
}

func (p *lbPublisher) want(user string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := append(append([]string(nil), p.acked[user]...), p.acked[""]...)
	slices.Sort(out)
	return out
}

// increasing reports whether ids are in stream order with no id twice.
func increasing(ids []string) bool {
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			return false
		}
	}
	return true
}
