package persist

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/pgtest"
	"github.com/pushd/pushd/stream"
)

// cutProxy forwards TCP to the database until Cut, which closes the listener
// and every connection (the port then refuses), and listens again on Restore:
// a database outage without touching a server other tests share.
type cutProxy struct {
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.Cut)
	return p
}

func (p *cutProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *cutProxy) pipe(c net.Conn) {
	d, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // cut meanwhile
		p.mu.Unlock()
		c.Close()
		d.Close()
		return
	}
	p.conns[c], p.conns[d] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(d, c); d.Close(); c.Close() }()
	_, _ = io.Copy(c, d)
	c.Close()
	d.Close()
}

func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *cutProxy) Restore(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// viaProxy rewrites a postgres:// URL to go through the proxy.
func viaProxy(t *testing.T, raw string) (*cutProxy, string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Skipf("needs a postgres:// URL with a host to put a proxy in front of: %q", raw)
	}
	p := newCutProxy(t, u.Host)
	u.Host = p.addr
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	return p, u.String()
}

// TestPostgresOutage: while the database is unreachable every method fails
// fast with ErrUnavailable; when it is back the store recovers by itself —
// pool and LISTEN connection — and the feed catches up with what another
// node committed meanwhile.
func TestPostgresOutage(t *testing.T) {
	direct := pgtest.NewDB(t)
	proxy, url := viaProxy(t, direct)
	s := openPG(t, url, big())
	var f feedLog
	s.SetFeed(f.feed)
	other := openPG(t, direct, big()) // a node that keeps its database
	other.SetFeed(func([]*stream.Message) {})
	mustAppend(t, s, note("a", 1))

	proxy.Cut()
	ctx, cancel := context.WithTimeout(bg, 20*time.Second)
	defer cancel()
	start := time.Now()
	calls := map[string]func() error{
		"Append":          func() error { _, err := s.Append(ctx, []stream.Draft{note("a", 2)}); return err },
		"ReadStream":      func() error { _, _, err := s.ReadStream(ctx, "a", 0, 10); return err },
		"Head":            func() error { _, err := s.Head(ctx); return err },
		"DeliveredCursor": func() error { _, _, err := s.DeliveredCursor(ctx, "a"); return err },
		"MarkDelivered":   func() error { return s.MarkDelivered(ctx, []stream.Delivery{{UserID: "a", Seq: 1, Count: 1}}) },
		"QueueStats":      func() error { _, err := s.QueueStats(ctx); return err },
		"Expire":          func() error { _, err := s.Expire(ctx); return err },
		"Ping":            func() error { return s.Ping(ctx) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, stream.ErrUnavailable) {
			t.Errorf("%s during outage: err = %v, want ErrUnavailable", name, err)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("failing took %v: an outage must fail requests fast", d)
	}
	// Committed elsewhere while this node is cut off.
	missed := mustAppend(t, other, note("a", 3), bcast(4))

	proxy.Restore(t)
	waitUntil(t, "Ping after the outage", 10*time.Second, func() bool { return s.Ping(bg) == nil })
	waitUntil(t, "the feed to catch up", 10*time.Second, func() bool { return f.len() == 3 })
	ms := mustAppend(t, s, note("a", 5))
	waitUntil(t, "the feed", 5*time.Second, func() bool { return f.len() == 4 })
	f.dense(t, "feed", 4)
	got, _, err := s.ReadStream(bg, "a", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	// The append refused during the outage was never sent, so it is not
	// there; everything reported committed is.
	want := []uint64{1, missed[0].Seq, missed[1].Seq, ms[0].Seq}
	if fmt.Sprint(msgSeqs(got)) != fmt.Sprint(want) {
		t.Fatalf("stream after outage = %v, want %v", msgSeqs(got), want)
	}
}

// TestPostgresNoFalseSuccess: publishers keep appending while the connection
// is cut and restored again and again; every append that reported success is
// in the log afterwards (the others may or may not be, when the cut hit the
// commit).
func TestPostgresNoFalseSuccess(t *testing.T) {
	direct := pgtest.NewDB(t)
	proxy, url := viaProxy(t, direct)
	s := openPG(t, url, big())
	s.SetFeed(func([]*stream.Message) {})
	var (
		mu sync.Mutex
		ok []uint64
	)
	stop := untilStopped(8, func(w, i int) {
		ctx, cancel := context.WithTimeout(bg, 3*time.Second)
		ms, err := s.Append(ctx, []stream.Draft{bcast(w*100000 + i)})
		cancel()
		if err == nil {
			mu.Lock()
			ok = append(ok, ms[0].Seq)
			mu.Unlock()
		} else if !errors.Is(err, stream.ErrUnavailable) {
			t.Errorf("append failed with %v, want ErrUnavailable", err)
		}
	})
	for range 6 {
		time.Sleep(150 * time.Millisecond)
		proxy.Cut()
		time.Sleep(100 * time.Millisecond)
		proxy.Restore(t)
	}
	time.Sleep(300 * time.Millisecond)
	stop()

	check := openPG(t, direct, big())
	check.SetFeed(func([]*stream.Message) {})
	stored := map[uint64]bool{}
	for after := uint64(0); ; {
		page, _, err := check.ReadStream(bg, "anyone", after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page {
			stored[m.Seq] = true
			after = m.Seq
		}
		if len(page) < 1000 {
			break
		}
	}
	if len(ok) == 0 {
		t.Fatal("no append succeeded at all")
	}
	for _, seq := range ok {
		if !stored[seq] {
			t.Fatalf("append of %d reported success but is not in the log", seq)
		}
	}
	t.Logf("%d appends succeeded, %d stored", len(ok), len(stored))
}

// untilStopped runs n workers, each calling work(w, i) for i = 0, 1, ...,
// until stop, which waits for them.
func untilStopped(n int, work func(w, i int)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				work(w, i)
			}
		})
	}
	return func() {
		close(done)
		wg.Wait()
	}
}
