package ws

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pushd/pushd/auth"
	"github.com/pushd/pushd/stream"
)

// Close codes of CONTRACT §3.
const (
	CodeDisconnected = 4000
	CodeUnauthorized = 4001
	CodeTooSlow      = 4002
	CodeRestart      = 1012
	CodePolicy       = 1008
	CodeTryAgain     = 1013
)

// Handler serves GET /ws.
type Handler struct {
	Manager     *stream.Manager
	Subscribers *auth.Subscribers
	// CheckOrigin decides whether the Origin header is allowed.
	CheckOrigin func(r *http.Request) bool
	// Heartbeat is the period of heartbeat envelopes and pings; a peer
	// silent for Heartbeat+HeartbeatTimeout is closed.
	Heartbeat        time.Duration
	HeartbeatTimeout time.Duration
	// AuthTimeout: a socket without a token in the URL must send an auth
	// message within it.
	AuthTimeout time.Duration
	// ReadLimit is the largest client frame; larger ones close with 1008.
	ReadLimit    int64
	WriteTimeout time.Duration
	Logger       *slog.Logger

	once     sync.Once
	upgrader websocket.Upgrader
}

func (h *Handler) init() {
	h.upgrader = websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 4096,
		// Idle connections hold no write buffer: it is taken from the pool
		// for a write and returned after.
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     h.CheckOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			code := "bad_request"
			if status == http.StatusForbidden {
				code = "forbidden"
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": reason.Error()}})
		},
	}
}

type clientFrame struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(h.init)
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	defer conn.Close()
	c := &wsConn{h: h, conn: conn, wake: make(chan struct{}, 1)}

	user, ok := c.authenticate(r)
	if !ok {
		return
	}
	s := h.Manager.NewSession(user, "ws", r.RemoteAddr, r.UserAgent())
	s.OnEnd(func(reason stream.CloseReason) {
		if reason.Kind == stream.CloseSlow {
			// Unblock a write stuck on a peer that does not read; the
			// writer then sends 4002 with WriteControl's own deadline.
			_ = conn.UnderlyingConn().SetWriteDeadline(time.Now())
		}
	})
	if err := h.Manager.Attach(r.Context(), s, r.URL.Query().Get("lastEventId")); err != nil {
		c.closeWith(CodeTryAgain, "store unavailable")
		return
	}
	defer s.Close()
	c.s = s
	readErr := make(chan error, 1)
	go func() { readErr <- c.readLoop() }()
	c.writeLoop(readErr)
}

type wsConn struct {
	h    *Handler
	conn *websocket.Conn
	s    *stream.Session
	// replies are frames the reader wants written (errors), handed to the
	// writer goroutine, which alone may write data frames.
	mu      sync.Mutex
	replies [][]byte
	wake    chan struct{}
}

func (c *wsConn) closeWith(code int, text string) {
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
}

// authenticate returns the user from the URL token, or waits for an auth
// message when the URL has none and a token is required.
func (c *wsConn) authenticate(r *http.Request) (string, bool) {
	tok := auth.FromRequest(r)
	if tok == "" && c.h.Subscribers.Required {
		_ = c.conn.SetReadDeadline(time.Now().Add(c.h.AuthTimeout))
		data, err := c.readFrame()
		if err != nil {
			c.closeWith(CodeUnauthorized, "no auth message within the auth timeout")
			return "", false
		}
		var f clientFrame
		var p struct {
			Token string `json:"token"`
		}
		if json.Unmarshal(data, &f) != nil || f.Type != "auth" || json.Unmarshal(f.Payload, &p) != nil || p.Token == "" {
			c.closeWith(CodeUnauthorized, `first message must be {"type":"auth","payload":{"token":"…"}}`)
			return "", false
		}
		tok = p.Token
	}
	user, err := c.h.Subscribers.UserFromToken(tok, r)
	if err != nil {
		c.closeWith(CodeUnauthorized, "unauthorized")
		return "", false
	}
	return user, true
}

var errTooBig = errors.New("frame over the read limit")

// readFrame reads one message, enforcing the read limit itself so the close
// code is 1008 as the contract says (gorilla's own limit sends 1009).
func (c *wsConn) readFrame() ([]byte, error) {
	typ, rd, err := c.conn.NextReader()
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(rd, c.h.ReadLimit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > c.h.ReadLimit {
		c.closeWith(CodePolicy, "frame over the read limit")
		return nil, errTooBig
	}
	if typ != websocket.TextMessage {
		return data, errBinary
	}
	return data, nil
}

var errBinary = errors.New("binary frame")

func (c *wsConn) deadline() time.Time {
	return time.Now().Add(c.h.Heartbeat + c.h.HeartbeatTimeout)
}

func (c *wsConn) readLoop() error {
	_ = c.conn.SetReadDeadline(c.deadline())
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(c.deadline()) })
	for {
		data, err := c.readFrame()
		if errors.Is(err, errBinary) {
			c.reply("binary frames are not supported; send JSON text frames")
			continue
		}
		if err != nil {
			return err
		}
		_ = c.conn.SetReadDeadline(c.deadline())
		var f clientFrame
		if err := json.Unmarshal(data, &f); err != nil || f.Type == "" {
			c.reply(`malformed frame: want {"type":…,"payload":…}`)
			continue
		}
		switch f.Type {
		case stream.TypeHeartbeat:
			var p struct {
				ClientTime int64 `json:"clientTime"`
			}
			if len(f.Payload) > 0 && json.Unmarshal(f.Payload, &p) != nil {
				c.reply("malformed heartbeat payload")
				continue
			}
			c.s.Heartbeat(p.ClientTime)
		case "auth":
			c.reply("already authenticated")
		default:
			c.reply("unknown message type " + jsonQuote(f.Type))
		}
	}
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (c *wsConn) reply(msg string) {
	frame := stream.Control{Type: "error", Payload: map[string]string{"message": msg}}.JSON()
	c.mu.Lock()
	c.replies = append(c.replies, frame)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *wsConn) write(data []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.h.WriteTimeout))
	return c.conn.WriteMessage(websocket.TextMessage, data)
}

func (c *wsConn) writeLoop(readErr <-chan error) {
	tick := time.NewTicker(c.h.Heartbeat)
	defer tick.Stop()
	var items []stream.Item
	for {
		select {
		case <-c.s.Ready():
			items = c.s.Drain(items[:0])
			if !c.writeItems(items) {
				return
			}
			clear(items)
		case <-c.wake:
			c.mu.Lock()
			replies := c.replies
			c.replies = nil
			c.mu.Unlock()
			for _, f := range replies {
				if c.write(f) != nil {
					return
				}
			}
		case <-tick.C:
			if c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.h.WriteTimeout)) != nil {
				return
			}
			if c.write(stream.Control{Type: stream.TypeHeartbeat, Payload: map[string]int64{"serverTime": stream.NowMillis()}}.JSON()) != nil {
				return
			}
		case <-readErr:
			// The peer closed (gorilla echoed its close frame), went
			// silent past the deadline, or sent an oversized frame.
			return
		case <-c.s.Done():
			reason := c.s.CloseReason()
			switch reason.Kind {
			case stream.CloseDisconnect:
				if c.writeItems(c.s.Drain(items[:0])) &&
					c.write(stream.Control{Type: stream.TypeDisconnect, Payload: map[string]string{"reason": reason.Reason}}.JSON()) == nil {
					c.closeWith(CodeDisconnected, "disconnected")
				}
			case stream.CloseSlow:
				c.closeWith(CodeTooSlow, "too slow: resume to catch up")
			case stream.CloseShutdown:
				c.closeWith(CodeRestart, "server restarting")
			}
			return
		}
	}
}

func (c *wsConn) writeItems(items []stream.Item) bool {
	for _, it := range items {
		var data []byte
		if it.Msg != nil {
			data = it.Msg.JSON()
		} else {
			data = it.Control.JSON()
		}
		if c.write(data) != nil {
			return false
		}
	}
	c.s.Written(items)
	return true
}
