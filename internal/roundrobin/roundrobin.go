// Package roundrobin is a TCP load balancer for tests: each new connection
// goes to the next backend that accepts it, as behind a load balancer that
// spreads connections over several pushd nodes and skips one that refuses
// (a health check or a retry would). It relays bytes and nothing else, so
// SSE, WebSocket upgrades and keep-alive pass as they would through HAProxy
// in TCP mode.
package roundrobin

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is a listening round-robin relay; it is safe for concurrent use.
type Proxy struct {
	ln       net.Listener
	backends []string
	next     atomic.Uint64
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // both sides of every relayed connection
	closed bool
}

// Listen starts a proxy on a free loopback port in front of backends
// (host:port each).
func Listen(backends []string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, backends: append([]string(nil), backends...), conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is the proxy's http:// base URL.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.relay(c) })
	}
}

// track adds or removes c; adding fails once the proxy is closed.
func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !add:
		delete(p.conns, c)
	case p.closed:
		return false
	default:
		p.conns[c] = struct{}{}
	}
	return true
}

// dial connects to the next backend that accepts, trying each once.
func (p *Proxy) dial() net.Conn {
	for range len(p.backends) {
		addr := p.backends[int(p.next.Add(1)-1)%len(p.backends)]
		if up, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			return up
		}
	}
	return nil
}

func (p *Proxy) relay(c net.Conn) {
	defer c.Close()
	if !p.track(c, true) {
		return
	}
	defer p.track(c, false)
	up := p.dial()
	if up == nil {
		return // every backend refused: the client sees the connection close
	}
	defer up.Close()
	if !p.track(up, true) {
		return
	}
	defer p.track(up, false)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite() // pass the end on, half-close like a TCP proxy
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}

// Close stops listening, cuts every relayed connection and waits for the
// relays to end.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
