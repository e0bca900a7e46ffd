package pgtest

import (
	"io"
	"net"
	"net/url"
	"testing"
	"time"
)

// lagProxy forwards TCP to the database, holding back what the server sends
// by lag. When the server's side ends, the client's side is closed at once
// and what was held back is dropped, as a reply lost on the wire.
type lagProxy struct {
	target string
	lag    time.Duration
}

// LagProxy puts a lagProxy in front of the database at raw (a postgres://
// URL) for the rest of t and returns the URL through it. Replies held back
// make a crash likely to cut off the reply to a commit that went through.
func LagProxy(t testing.TB, raw string, lag time.Duration) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Fatalf("needs a postgres:// URL: %q", raw)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &lagProxy{target: u.Host, lag: lag}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
	u.Host = ln.Addr().String()
	return u.String()
}

type heldChunk struct {
	at time.Time
	b  []byte
}

func (p *lagProxy) pipe(c net.Conn) {
	d, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	go func() { _, _ = io.Copy(d, c); d.Close() }()
	held := make(chan heldChunk, 1024)
	gone := make(chan struct{})
	go func() {
		defer close(held)
		for {
			buf := make([]byte, 32<<10)
			n, err := d.Read(buf)
			if n > 0 {
				held <- heldChunk{time.Now().Add(p.lag), buf[:n]}
			}
			if err != nil {
				close(gone)
				c.Close() // drops what is still held
				return
			}
		}
	}()
	for ch := range held {
		select {
		case <-gone:
			return
		case <-time.After(time.Until(ch.at)):
		}
		if _, err := c.Write(ch.b); err != nil {
			d.Close()
			return
		}
	}
}
