package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// sseConn is a lean Server-Sent Events reader on a raw TCP connection: one
// HTTP/1.1 request written by hand, the response head parsed by
// http.ReadResponse (which also undoes chunked encoding), then a line parser
// with small buffers. Per connection it costs one goroutine and ~8 KiB,
// so thousands fit in one process next to the server under test.
type sseConn struct {
	c        net.Conn
	lr       *bufio.Reader
	body     io.ReadCloser
	sock     countingReader // reads of c
	seen     int            // sock.n when the previous event was returned
	readLast bool           // the last next read from the socket

	id, typ, data, line []byte
}

const sseBufSize = 4096

func dialSSE(ctx context.Context, d *dialer, base *url.URL, token, lastID string) (*sseConn, error) {
	c, err := d.DialContext(ctx, "tcp4", base.Host)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	}
	var req bytes.Buffer
	req.WriteString("GET /sse?access_token=")
	req.WriteString(url.QueryEscape(token))
	req.WriteString(" HTTP/1.1\r\nHost: ")
	req.WriteString(base.Host)
	req.WriteString("\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: pushbench\r\n")
	if lastID != "" {
		req.WriteString("Last-Event-ID: ")
		req.WriteString(lastID)
		req.WriteString("\r\n")
	}
	req.WriteString("\r\n")
	if _, err := c.Write(req.Bytes()); err != nil {
		c.Close()
		return nil, err
	}
	s := &sseConn{c: c, sock: countingReader{r: c}}
	br := bufio.NewReaderSize(&s.sock, sseBufSize)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("sse: reading response head: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		c.Close()
		return nil, fmt.Errorf("sse: status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	s.body = resp.Body
	if resp.TransferEncoding == nil && resp.ContentLength < 0 && resp.Close {
		// Identity body that ends at EOF: read the raw reader directly, no
		// second buffer.
		s.lr = br
	} else {
		s.lr = bufio.NewReaderSize(resp.Body, sseBufSize)
	}
	return s, nil
}

// countingReader counts the reads that reach the socket.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.n++
	return c.r.Read(p)
}

func (s *sseConn) fresh() bool    { return s.readLast }
func (s *sseConn) buffered() bool { return s.lr.Buffered() > 0 }

// clearDeadline removes the handshake deadline once the stream runs.
func (s *sseConn) clearDeadline() { _ = s.c.SetDeadline(time.Time{}) }

func (s *sseConn) Close() error { return s.c.Close() }

func (s *sseConn) readLine() ([]byte, error) {
	line, err := s.lr.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		s.line = append(s.line[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = s.lr.ReadSlice('\n')
			s.line = append(s.line, line...)
		}
		line = s.line
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// next returns the next event. The slices are valid until the next call.
func (s *sseConn) next() (typ, id, data []byte, err error) {
	s.id, s.typ, s.data = s.id[:0], s.typ[:0], s.data[:0]
	gotData := false
	for {
		line, err := s.readLine()
		if err != nil {
			return nil, nil, nil, err
		}
		if len(line) == 0 {
			if !gotData && len(s.typ) == 0 && len(s.id) == 0 {
				continue
			}
			if len(s.typ) == 0 {
				s.typ = append(s.typ, "message"...)
			}
			s.readLast, s.seen = s.sock.n != s.seen, s.sock.n
			return s.typ, s.id, s.data, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := bytes.Cut(line, []byte{':'})
		if found && len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(field) {
		case "id":
			s.id = append(s.id[:0], value...)
		case "event":
			s.typ = append(s.typ[:0], value...)
		case "data":
			if gotData {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, value...)
			gotData = true
		}
	}
}
