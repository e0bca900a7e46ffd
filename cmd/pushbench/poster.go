package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// poster sends REST requests over a pool of raw keep-alive HTTP/1.1
// connections. It costs the load generator a fraction of net/http's client
// (no per-connection goroutines, no header maps), which matters when
// pushbench and the server share two cores: the publish rate measured is
// then the server's, not the client's.
type poster struct {
	d      *dialer
	host   string
	header []byte // Host, Content-Type, Authorization lines

	mu   sync.Mutex
	idle []*posterConn
}

type posterConn struct {
	c   net.Conn
	br  *bufio.Reader
	buf []byte
}

func newPoster(d *dialer, host, apiKey string) *poster {
	h := "Host: " + host + "\r\nContent-Type: application/json\r\nUser-Agent: pushbench\r\n"
	if apiKey != "" {
		h += "Authorization: Bearer " + apiKey + "\r\n"
	}
	return &poster{d: d, host: host, header: []byte(h)}
}

func (p *poster) get(ctx context.Context) (*posterConn, bool, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		pc := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return pc, true, nil
	}
	p.mu.Unlock()
	c, err := p.d.DialContext(ctx, "tcp4", p.host)
	if err != nil {
		return nil, false, err
	}
	return &posterConn{c: c, br: bufio.NewReaderSize(c, 8192)}, false, nil
}

func (p *poster) put(pc *posterConn) {
	p.mu.Lock()
	if len(p.idle) < 1024 {
		p.idle = append(p.idle, pc)
		pc = nil
	}
	p.mu.Unlock()
	if pc != nil {
		pc.c.Close()
	}
}

// closeIdle closes the pooled connections.
func (p *poster) closeIdle() {
	p.mu.Lock()
	for _, pc := range p.idle {
		pc.c.Close()
	}
	p.idle = nil
	p.mu.Unlock()
}

// notAnswered: the connection failed before any byte of an answer came.
type notAnswered struct{ err error }

func (e *notAnswered) Error() string { return "connection closed before an answer: " + e.err.Error() }
func (e *notAnswered) Unwrap() error { return e.err }

// postResult is a parsed answer.
type postResult struct {
	status     int
	retryAfter string
	body       []byte
}

// post sends one request; a reused connection the server has closed is
// retried once on a fresh one.
func (p *poster) post(ctx context.Context, path string, body []byte) (postResult, error) {
	for attempt := 0; ; attempt++ {
		pc, reused, err := p.get(ctx)
		if err != nil {
			return postResult{}, err
		}
		res, keep, err := pc.roundTrip(ctx, p.header, path, body)
		if err != nil {
			pc.c.Close()
			// Retry only when the server closed an idle keep-alive
			// connection before reading the request (nothing came back):
			// a retried POST that was processed would publish twice.
			var nr *notAnswered
			if reused && attempt == 0 && errors.As(err, &nr) {
				continue
			}
			return postResult{}, err
		}
		if keep {
			p.put(pc)
		} else {
			pc.c.Close()
		}
		return res, nil
	}
}

func (pc *posterConn) roundTrip(ctx context.Context, header []byte, path string, body []byte) (postResult, bool, error) {
	dl := time.Now().Add(60 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = pc.c.SetDeadline(dl)
	b := pc.buf[:0]
	b = append(b, "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\n"...)
	b = append(b, header...)
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	pc.buf = b
	if _, err := pc.c.Write(b); err != nil {
		return postResult{}, false, &notAnswered{err}
	}
	// Status line and headers.
	var res postResult
	line, err := pc.br.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			err = &notAnswered{err}
		}
		return res, false, err
	}
	f := bytes.Fields(line)
	if len(f) < 2 {
		return res, false, fmt.Errorf("bad status line %q", line)
	}
	if res.status, err = strconv.Atoi(string(f[1])); err != nil {
		return res, false, fmt.Errorf("bad status line %q", line)
	}
	keep := bytes.Equal(f[0], []byte("HTTP/1.1"))
	length, chunked := -1, false
	for {
		line, err := pc.br.ReadSlice('\n')
		if err != nil {
			return res, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, _ := bytes.Cut(line, []byte{':'})
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, _ = strconv.Atoi(string(v))
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			if bytes.EqualFold(v, []byte("close")) {
				keep = false
			}
		case bytes.EqualFold(k, []byte("Retry-After")):
			res.retryAfter = string(v)
		}
	}
	switch {
	case chunked:
		if res.body, err = io.ReadAll(httputil.NewChunkedReader(pc.br)); err == nil {
			// The chunked reader stops after the last chunk; the (empty)
			// trailer section up to its blank line follows.
			for {
				line, err2 := pc.br.ReadSlice('\n')
				if err2 != nil {
					err = err2
					break
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					break
				}
			}
		}
	case length >= 0:
		res.body = make([]byte, length)
		_, err = io.ReadFull(pc.br, res.body)
	default:
		res.body, err = io.ReadAll(pc.br)
		keep = false
	}
	if err != nil {
		return res, false, err
	}
	_ = pc.c.SetDeadline(time.Time{})
	return res, keep, nil
}
