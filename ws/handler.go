package ws

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pushd/pushd/auth"
	"github.com/pushd/pushd/internal/connwrite"
	"github.com/pushd/pushd/internal/httperror"
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
	CodeInternal     = 1011
)

// Handler serves GET /ws.
type Handler struct {
	Manager     *stream.Manager
	Subscribers *auth.Subscribers
	// CheckOrigin decides whether the Origin header is allowed.
	CheckOrigin func(r *http.Request) bool
	// HeartbeatTimeout is how long past the manager's heartbeat interval
	// (Manager.HeartbeatInterval, when it queues a heartbeat and a ping) a
	// silent peer (no frame, no pong) is kept before it is closed.
	HeartbeatTimeout time.Duration
	// AuthTimeout is how long a socket without a token in the URL has to
	// send its auth message.
	AuthTimeout time.Duration
	// ReadLimit is the largest client frame; larger ones close with 1008.
	ReadLimit    int64
	WriteTimeout time.Duration
	// SlowGrace is how long a write in flight may still take once the
	// connection is cut off as too slow, so the frame it carries can end
	// and the 4002 close frame follow (instead of a frame cut in the
	// middle, which the peer can only see as 1006).
	SlowGrace time.Duration
	// OnRefused answers, before the upgrade, a connection the manager does
	// not admit (err from Manager.Admit).
	OnRefused func(w http.ResponseWriter, r *http.Request, err error)
	// Compression offers permessage-deflate (no context takeover); stored
	// messages are then deflated once each and shared (deflate.go).
	Compression bool
	// Logger records the faults that close a socket with 1011
	// (slog.Default when nil).
	Logger *slog.Logger

	once     sync.Once
	upgrader websocket.Upgrader
}

func (h *Handler) init() {
	h.upgrader = websocket.Upgrader{
		ReadBufferSize:  512,
		WriteBufferSize: 256, // used only for handshake-time close frames
		// Taken from the pool for those writes only, so an idle
		// connection holds no write buffer.
		WriteBufferPool:   &sync.Pool{},
		CheckOrigin:       h.CheckOrigin,
		EnableCompression: h.Compression,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			code := httperror.CodeBadRequest
			if status == http.StatusForbidden {
				code = httperror.CodeForbidden
			}
			httperror.Write(w, status, code, reason.Error())
		},
	}
}

type clientFrame struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// ServeHTTP implements http.Handler: it upgrades the connection,
// authenticates the subscriber (from the URL, a header or its first
// message), opens its session and starts it; refusals after the upgrade are
// close codes (CONTRACT §3).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(h.init)
	// A user known from the URL is held to the limits before the upgrade,
	// so a refusal is a plain HTTP answer; a bad token is still refused
	// after it, with a close code a browser can read.
	early, authErr := "", error(nil)
	if tok := auth.FromRequest(r); tok != "" || !h.Subscribers.Required {
		early, authErr = h.Subscribers.UserFromToken(tok, r)
		if authErr == nil {
			if err := h.Manager.Admit(early); err != nil {
				h.OnRefused(w, r, err)
				return
			}
		}
	}
	var rec *handshakeRecorder
	if h.Compression {
		rec = &handshakeRecorder{ResponseWriter: w}
		w = rec
	}
	var hdr http.Header
	if id := w.Header().Get("X-Request-Id"); id != "" {
		hdr = http.Header{"X-Request-Id": {id}} // gorilla writes only the headers it is given
	}
	conn, err := h.upgrader.Upgrade(w, r, hdr)
	if err != nil {
		return // the upgrader answered
	}
	c := &wsConn{h: h, conn: conn, raw: conn.UnderlyingConn()}
	if rec != nil {
		c.raw, c.deflate = rec.raw(), rec.deflate()
	}
	user := early
	switch {
	case authErr != nil:
	case user == "":
		user, authErr = c.authenticate(r)
		if authErr == nil {
			authErr = h.Manager.Admit(user)
			if authErr != nil {
				c.refuse(r, authErr)
				return
			}
		}
	}
	if authErr != nil {
		h.Manager.AuthFailed("ws", r.RemoteAddr, authErr)
		c.closeNow(CodeUnauthorized, "unauthorized")
		return
	}
	c.w = connwrite.New(c.raw, h.WriteTimeout)
	s, err := h.Manager.Open(r.Context(), stream.SessionSpec{
		UserID: user, Transport: "ws", RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent(),
		LastEventID: r.URL.Query().Get("lastEventId"),
		// Let the write stuck on a peer that does not read finish its frame
		// within the grace, then Finish sends 4002.
		OnSlow: func() { c.w.AbortAfter(h.SlowGrace) },
	})
	if err != nil {
		c.refuse(r, err)
		return
	}
	c.s = s
	c.installHandlers()
	s.Start(c)
	// A fresh goroutine reads; this one (net/http's, with its deeper stack)
	// returns.
	go c.readLoop()
}

type wsConn struct {
	h    *Handler
	conn *websocket.Conn
	raw  net.Conn
	s    *stream.Session
	w    *connwrite.Writer
	// deflate reports that permessage-deflate was agreed: stored messages
	// go out compressed.
	deflate bool
	// closeCode, when set, is the close frame Finish sends for a session
	// that ended from the peer's side (echo of its close, or 1008).
	closeCode atomic.Int32
	closeText atomic.Pointer[string]
}

// closeNow closes before the session started (gorilla may still write).
func (c *wsConn) closeNow(code int, text string) {
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	_ = c.conn.Close()
}

// refuse closes a socket whose session was not admitted after the upgrade
// (auth message, or a limit reached meanwhile) or could not be attached:
// 1012 during shutdown, 1013 try again later for a limit or a store outage
// (or a client gone meanwhile), else 1011 and a log line: a fault, not a
// refusal.
func (c *wsConn) refuse(r *http.Request, err error) {
	switch {
	case errors.Is(err, stream.ErrShuttingDown):
		c.closeNow(CodeRestart, "server restarting")
	case errors.Is(err, stream.ErrUserFull), errors.Is(err, stream.ErrNodeFull):
		c.closeNow(CodeTryAgain, err.Error())
	case stream.Refused(err), errors.Is(err, context.Canceled):
		c.closeNow(CodeTryAgain, "store unavailable")
	default:
		logger := c.h.Logger
		if logger == nil {
			logger = slog.Default()
		}
		logger.Error("ws: opening the stream failed", "remote", r.RemoteAddr, "err", err)
		c.closeNow(CodeInternal, "internal error")
	}
}

var errNoAuthMessage = errors.New("no auth message within the auth timeout")

// authenticate waits for the auth message of a socket whose URL carries no
// token, and returns its user.
func (c *wsConn) authenticate(r *http.Request) (string, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(c.h.AuthTimeout))
	data, err := c.readFrame()
	if err != nil {
		return "", errNoAuthMessage
	}
	tok, err := ParseAuthFrame(data)
	if err != nil {
		return "", err
	}
	return c.h.Subscribers.UserFromToken(tok, r)
}

// ParseAuthFrame returns the token of a client's first frame
// {"type":"auth","payload":{"token":"…"}}.
func ParseAuthFrame(data []byte) (string, error) {
	var f clientFrame
	var p struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(data, &f) != nil || f.Type != "auth" || json.Unmarshal(f.Payload, &p) != nil || p.Token == "" {
		return "", errors.New(`first frame is not {"type":"auth","payload":{"token":…}}`)
	}
	return p.Token, nil
}

var (
	errTooBig = errors.New("frame over the read limit")
	errBinary = errors.New("binary frame")
)

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
		return nil, errTooBig
	}
	if typ != websocket.TextMessage {
		return data, errBinary
	}
	return data, nil
}

func (c *wsConn) deadline() time.Time {
	return time.Now().Add(c.h.Manager.HeartbeatInterval() + c.h.HeartbeatTimeout)
}

// installHandlers routes gorilla's control-frame replies through the pump.
func (c *wsConn) installHandlers() {
	c.conn.SetPingHandler(func(data string) error {
		c.s.SendRaw(controlFrame(finPong, []byte(data)))
		return c.conn.SetReadDeadline(c.deadline())
	})
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(c.deadline()) })
	c.conn.SetCloseHandler(func(code int, text string) error {
		if code == websocket.CloseNoStatusReceived {
			code = websocket.CloseNormalClosure
		}
		c.setClose(code, "")
		return nil
	})
}

func (c *wsConn) setClose(code int, text string) {
	c.closeText.Store(&text)
	c.closeCode.Store(int32(code))
}

func (c *wsConn) readLoop() {
	defer c.raw.Close()
	_ = c.conn.SetReadDeadline(c.deadline())
	for {
		data, err := c.readFrame()
		if errors.Is(err, errBinary) {
			c.reply("binary frames are not supported; send JSON text frames")
			continue
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, errTooBig):
				c.setClose(CodePolicy, "frame over the read limit")
				c.s.Close()
			case errors.As(err, &ne) && ne.Timeout():
				c.s.TimedOut()
			default:
				c.s.Close()
			}
			c.awaitFinish()
			return
		}
		_ = c.conn.SetReadDeadline(c.deadline())
		clientTime, problem := parseClientFrame(data)
		if problem != "" {
			c.reply(problem)
			continue
		}
		c.s.Heartbeat(clientTime)
	}
}

// parseClientFrame reads a frame of an authenticated client: a heartbeat
// returns its clientTime (0 when absent); anything else returns the problem
// the error frame reports.
func parseClientFrame(data []byte) (clientTime int64, problem string) {
	var f clientFrame
	if err := json.Unmarshal(data, &f); err != nil || f.Type == "" {
		return 0, `malformed frame: want {"type":…,"payload":…}`
	}
	switch f.Type {
	case stream.TypeHeartbeat:
		var p struct {
			ClientTime int64 `json:"clientTime"`
		}
		if len(f.Payload) > 0 && json.Unmarshal(f.Payload, &p) != nil {
			return 0, "malformed heartbeat payload"
		}
		return p.ClientTime, ""
	case "auth":
		return 0, "already authenticated"
	default:
		b, _ := json.Marshal(f.Type)
		return 0, "unknown message type " + string(b)
	}
}

// awaitFinish gives the pump a moment to write the close frame before the
// deferred close of the socket.
func (c *wsConn) awaitFinish() {
	select {
	case <-c.s.Done():
	case <-time.After(time.Second):
	}
	time.Sleep(10 * time.Millisecond)
}

func (c *wsConn) reply(msg string) {
	c.s.Send(stream.Control{Type: "error", Payload: map[string]string{"message": msg}})
}

func textFrame(payload []byte) []byte {
	return append(appendHeader(make([]byte, 0, len(payload)+10), finText, len(payload)), payload...)
}

// Write implements stream.Transport: every queued item in one writev, each
// stored message's frame shared with every other connection that delivers it.
func (c *wsConn) Write(items []stream.Item) error {
	return c.w.Send(func(bufs net.Buffers) net.Buffers { return appendFrames(bufs, items, c.deflate) })
}

// TryWrite implements stream.InlineWriter.
func (c *wsConn) TryWrite(items []stream.Item) (bool, error) {
	return c.w.TrySend(func(bufs net.Buffers) net.Buffers { return appendFrames(bufs, items, c.deflate) })
}

// appendFrames lists the frames of items; with deflate, stored messages use
// their shared compressed frame (control events stay plain, as the
// extension allows per message).
func appendFrames(bufs net.Buffers, items []stream.Item, deflate bool) net.Buffers {
	// Control frames' headers (at most 10 bytes each) go in hdrs, sized on
	// first use for all items so the slices taken from it stay valid.
	var hdrs []byte
	for _, it := range items {
		switch {
		case it.Msg != nil && deflate:
			bufs = append(bufs, it.Msg.Encoding(stream.SlotWSDeflate, deflateFrame))
			continue
		case it.Msg != nil:
			bufs = append(bufs, it.Msg.Encoding(stream.SlotWSFrame, textFrame))
			continue
		case it.Control.Raw != nil:
			bufs = append(bufs, it.Control.Raw)
			continue
		case it.Control.Type == stream.TypeHeartbeat:
			bufs = append(bufs, pingFrame) // protocol ping with the heartbeat
		}
		payload := it.Control.JSON()
		if hdrs == nil {
			hdrs = make([]byte, 0, 10*len(items))
		}
		start := len(hdrs)
		hdrs = appendHeader(hdrs, finText, len(payload))
		bufs = append(bufs, hdrs[start:], payload)
	}
	return bufs
}

// Finish implements stream.Transport: the close frame of CONTRACT §3, then
// the reader (which owns the socket's lifetime) is told to stop soon.
func (c *wsConn) Finish(r stream.CloseReason) {
	var frame []byte
	switch r.Kind {
	case stream.CloseDisconnect:
		env := stream.DisconnectEvent(r.Reason).JSON()
		frame = append(appendHeader(nil, finText, len(env)), env...)
		frame = append(frame, closeFrame(CodeDisconnected, "disconnected")...)
	case stream.CloseSlow:
		frame = closeFrame(CodeTooSlow, "too slow: resume to catch up")
	case stream.CloseShutdown:
		frame = closeFrame(CodeRestart, "server restarting")
	default:
		if code := c.closeCode.Load(); code != 0 {
			frame = closeFrame(int(code), *c.closeText.Load())
		}
	}
	if frame != nil {
		c.w.Final(frame, time.Second) // after the rest of a partly written frame
	}
	// Let the peer answer our close; the reader closes the socket when it
	// reads that answer or this deadline passes.
	_ = c.raw.SetReadDeadline(time.Now().Add(time.Second))
}
