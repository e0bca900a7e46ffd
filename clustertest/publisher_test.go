package clustertest

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// publisher publishes numbered notifications and remembers what was
// acknowledged, per user ("" for broadcasts), and which publishes have an
// unknown outcome (the answer was lost because a node went away).
type publisher struct {
	t   *testing.T
	seq atomic.Int64

	mu        sync.Mutex
	acked     map[string][]string
	uncertain map[string]bool // titles
	refused   int             // 503: not stored
}

func newPublisher(t *testing.T) *publisher {
	return &publisher{t: t, acked: map[string][]string{}, uncertain: map[string]bool{}}
}

// freshConns is an HTTP client with one connection per request, so that
// publishing through the proxy spreads over the nodes request by request.
var freshConns = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// publish sends one notification to user (a broadcast when user is "").
func (p *publisher) publish(c client, user string) {
	title := fmt.Sprintf("m%07d", p.seq.Add(1))
	id, err := c.notify(user, title)
	p.mu.Lock()
	defer p.mu.Unlock()
	var se *statusError
	switch {
	case err == nil:
		p.acked[user] = append(p.acked[user], id)
	case errors.As(err, &se) && se.code == http.StatusServiceUnavailable:
		p.refused++
	case errors.As(err, &se):
		p.t.Errorf("publish %s to %q: %v", title, user, err)
	default:
		p.uncertain[title] = true
	}
}

// want is user's stream as acknowledged: its messages and the broadcasts,
// in stream order.
func (p *publisher) want(user string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := append(append([]string(nil), p.acked[user]...), p.acked[""]...)
	slices.Sort(out)
	return out
}

func (p *publisher) uncertainTitles() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.uncertain)
}

func (p *publisher) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, ids := range p.acked {
		n += len(ids)
	}
	return n
}

// publishWhile publishes from workers goroutines, each picking its target
// with pick and its user from users (every tenth a broadcast), until stop
// is closed; each worker waits every between publishes.
func (p *publisher) publishWhile(stop <-chan struct{}, workers int, every time.Duration, users []string, pick func(worker, i int) client) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(every):
				}
				user := users[(w+i)%len(users)]
				if i%10 == 9 {
					user = ""
				}
				p.publish(pick(w, i), user)
			}
		})
	}
	return &wg
}

// checkAll waits until every subscriber holds its acknowledged stream,
// then checks each got exactly that, in order, without a reset.
func checkAll(t *testing.T, p *publisher, subs []*subscriber, timeout time.Duration) {
	t.Helper()
	for _, s := range subs {
		want := p.want(s.user)
		eventually(t, timeout, s.String()+" to receive everything", func() (bool, string) { return s.received(want) })
	}
	un := p.uncertainTitles()
	for _, s := range subs {
		s.checkExactly(t, p.want(s.user), un)
	}
}
