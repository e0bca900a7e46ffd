package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/gorilla/websocket"
)

// wsConn reads envelopes from a gorilla/websocket client connection into a
// reused buffer, extracting "type" and "id" without a full JSON decode.
type wsConn struct {
	c   *websocket.Conn
	buf []byte
}

func dialWS(ctx context.Context, d *dialer, base *url.URL, token, lastID string) (*wsConn, error) {
	wd := websocket.Dialer{
		NetDialContext:   d.DialContext,
		HandshakeTimeout: 60 * time.Second,
		ReadBufferSize:   2048,
		WriteBufferSize:  256,
	}
	q := url.Values{"access_token": {token}}
	if lastID != "" {
		q.Set("lastEventId", lastID)
	}
	u := url.URL{Scheme: "ws", Host: base.Host, Path: "/ws", RawQuery: q.Encode()}
	c, resp, err := wd.DialContext(ctx, u.String(), nil)
	if err != nil {
		if resp != nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			return nil, fmt.Errorf("ws: status %d: %s (%v)", resp.StatusCode, bytes.TrimSpace(b), err)
		}
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	return &wsConn{c: c}, nil
}

func (w *wsConn) clearDeadline() {}

// gorilla's reader hides its buffer: every frame gets its own receipt time
// and counters are published per frame.
func (w *wsConn) fresh() bool    { return true }
func (w *wsConn) buffered() bool { return false }

func (w *wsConn) Close() error { return w.c.Close() }

func (w *wsConn) next() (typ, id, data []byte, err error) {
	for {
		mt, r, err := w.c.NextReader()
		if err != nil {
			return nil, nil, nil, err
		}
		if mt != websocket.TextMessage {
			continue
		}
		w.buf = w.buf[:0]
		for {
			if len(w.buf) == cap(w.buf) {
				w.buf = append(w.buf, 0)[:len(w.buf)]
			}
			n, err := r.Read(w.buf[len(w.buf):cap(w.buf)])
			w.buf = w.buf[:len(w.buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, nil, nil, err
			}
		}
		typ := jsonStringField(w.buf, `"type":"`)
		if len(typ) == 0 {
			typ = []byte("message")
		}
		return typ, jsonStringField(w.buf, `"id":"`), w.buf, nil
	}
}

// jsonStringField returns the value of the first `"key":"value"` in b (the
// envelope's own fields come before its payload).
func jsonStringField(b []byte, key string) []byte {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil
	}
	v := b[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return nil
	}
	return v[:j]
}

// closeCode extracts the WebSocket close code from a read error (0 if none).
func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}
