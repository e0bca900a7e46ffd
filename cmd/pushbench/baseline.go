package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // --pprof
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// baselineServer is the reference every pushbench figure is compared with:
// the plain way to write SSE and WebSocket fan-out in Go. net/http's
// goroutine per connection, a buffered channel per subscriber, one encoding
// per message, a write and a flush per message, gorilla/websocket with a
// reader and a writer goroutine, no auth, no store. It accepts the same
// traffic as pushd for idle, fanout and unicast (same paths and envelope)
// so pushbench drives both identically.
type baselineServer struct {
	mu    sync.RWMutex
	users map[string]map[*bsub]struct{}
	conns atomic.Int64
	seq   atomic.Uint64
	drops atomic.Int64

	heartbeat time.Duration
	upgrader  websocket.Upgrader
}

type bsub struct {
	user   string
	ch     chan *bmsg
	kicked chan struct{}
	once   sync.Once
}

// bmsg is a message rendered once for every subscriber.
type bmsg struct {
	json []byte
	sse  []byte
}

const baselineQueue = 256

func newBaselineServer() *baselineServer {
	return &baselineServer{
		users:     map[string]map[*bsub]struct{}{},
		heartbeat: 30 * time.Second,
		upgrader: websocket.Upgrader{
			ReadBufferSize:  1024,
			WriteBufferSize: 1024,
			CheckOrigin:     func(*http.Request) bool { return true },
		},
	}
}

func (b *baselineServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sse", b.serveSSE)
	mux.HandleFunc("GET /ws", b.serveWS)
	mux.HandleFunc("POST /api/ws/connect", b.connect)
	mux.HandleFunc("POST /api/ws/broadcast", b.broadcastHandler)
	mux.HandleFunc("POST /api/ws/push/notification", b.notification)
	mux.HandleFunc("POST /api/ws/push/batch", b.batchHandler)
	mux.HandleFunc("GET /api/ws/stats", b.stats)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

func nowMillis() int64 { return time.Now().UnixMilli() }

func (b *baselineServer) newMessage(typ string, payload any) *bmsg {
	id := strconv.FormatUint(b.seq.Add(1), 10)
	env, _ := json.Marshal(struct {
		ID        string `json:"id"`
		Type      string `json:"type"`
		Payload   any    `json:"payload"`
		Timestamp int64  `json:"timestamp"`
	}{id, typ, payload, nowMillis()})
	sse := make([]byte, 0, len(env)+len(id)+32)
	sse = append(sse, "id: "...)
	sse = append(sse, id...)
	sse = append(sse, "\nevent: "...)
	sse = append(sse, typ...)
	sse = append(sse, "\ndata: "...)
	sse = append(sse, env...)
	sse = append(sse, "\n\n"...)
	return &bmsg{json: env, sse: sse}
}

func controlJSON(typ string, payload any) []byte {
	env, _ := json.Marshal(struct {
		Type      string `json:"type"`
		Payload   any    `json:"payload"`
		Timestamp int64  `json:"timestamp"`
	}{typ, payload, nowMillis()})
	return env
}

func (b *baselineServer) subscribe(user string) *bsub {
	s := &bsub{user: user, ch: make(chan *bmsg, baselineQueue), kicked: make(chan struct{})}
	b.mu.Lock()
	m := b.users[user]
	if m == nil {
		m = map[*bsub]struct{}{}
		b.users[user] = m
	}
	m[s] = struct{}{}
	b.mu.Unlock()
	b.conns.Add(1)
	return s
}

func (b *baselineServer) unsubscribe(s *bsub) {
	b.mu.Lock()
	if m := b.users[s.user]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(b.users, s.user)
		}
	}
	b.mu.Unlock()
	b.conns.Add(-1)
}

// deliver hands m to s without blocking; a full queue drops the subscriber.
func (b *baselineServer) deliver(s *bsub, m *bmsg) {
	select {
	case s.ch <- m:
	default:
		s.once.Do(func() { b.drops.Add(1); close(s.kicked) })
	}
}

func (b *baselineServer) publishUser(user string, m *bmsg) {
	b.mu.RLock()
	for s := range b.users[user] {
		b.deliver(s, m)
	}
	b.mu.RUnlock()
}

func (b *baselineServer) publishAll(m *bmsg, exclude []string) {
	b.mu.RLock()
	for user, subs := range b.users {
		if contains(exclude, user) {
			continue
		}
		for s := range subs {
			b.deliver(s, m)
		}
	}
	b.mu.RUnlock()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// user takes the user id from the dummy token (no auth: the token is the id).
func baselineUser(r *http.Request) string {
	tok := r.URL.Query().Get("access_token")
	if tok == "" {
		tok = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	return strings.TrimPrefix(tok, "baseline.")
}

func (b *baselineServer) connectedPayload(user, transport string) any {
	return map[string]any{"connectionId": strconv.FormatUint(b.seq.Load(), 10) + "-" + user, "userId": user,
		"transport": transport, "serverTime": nowMillis(), "heartbeatInterval": b.heartbeat.Milliseconds()}
}

func (b *baselineServer) serveSSE(w http.ResponseWriter, r *http.Request) {
	user := baselineUser(r)
	if user == "" {
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	s := b.subscribe(user)
	defer b.unsubscribe(s)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	fmt.Fprintf(w, "retry: 3000\n\nevent: connected\ndata: %s\n\n", controlJSON("connected", b.connectedPayload(user, "sse")))
	if rc.Flush() != nil {
		return
	}
	hb := time.NewTicker(b.heartbeat)
	defer hb.Stop()
	for {
		var err error
		select {
		case m := <-s.ch:
			_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err = w.Write(m.sse); err == nil {
				err = rc.Flush()
			}
		case <-hb.C:
			_, err = fmt.Fprintf(w, "event: heartbeat\ndata: %s\n\n", controlJSON("heartbeat", map[string]int64{"serverTime": nowMillis()}))
			if err == nil {
				err = rc.Flush()
			}
		case <-s.kicked:
			return
		case <-r.Context().Done():
			return
		}
		if err != nil {
			return
		}
	}
}

func (b *baselineServer) serveWS(w http.ResponseWriter, r *http.Request) {
	user := baselineUser(r)
	c, err := b.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	if user == "" {
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "unauthorized"), time.Now().Add(time.Second))
		return
	}
	s := b.subscribe(user)
	defer b.unsubscribe(s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.SetReadLimit(64 << 10)
		_ = c.SetReadDeadline(time.Now().Add(b.heartbeat + 10*time.Second))
		c.SetPongHandler(func(string) error {
			return c.SetReadDeadline(time.Now().Add(b.heartbeat + 10*time.Second))
		})
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(b.heartbeat + 10*time.Second))
		}
	}()
	write := func(p []byte) error {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return c.WriteMessage(websocket.TextMessage, p)
	}
	if write(controlJSON("connected", b.connectedPayload(user, "ws"))) != nil {
		return
	}
	hb := time.NewTicker(b.heartbeat)
	defer hb.Stop()
	for {
		var err error
		select {
		case m := <-s.ch:
			err = write(m.json)
		case <-hb.C:
			if err = c.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)); err == nil {
				err = write(controlJSON("heartbeat", map[string]int64{"serverTime": nowMillis()}))
			}
		case <-s.kicked:
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4002, "too slow"), time.Now().Add(time.Second))
			return
		case <-done:
			return
		}
		if err != nil {
			return
		}
	}
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20)).Decode(v); err != nil {
		writeJSONStatus(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "bad_request", "message": err.Error()}})
		return false
	}
	return true
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSONStatus(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "bad_request", "message": msg}})
}

func (b *baselineServer) connect(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UserID string `json:"userId"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	if in.UserID == "" {
		badRequest(w, "userId is required")
		return
	}
	base := "//" + r.Host
	writeJSONStatus(w, http.StatusOK, map[string]any{
		"wsUrl": "ws:" + base + "/ws", "sseUrl": "http:" + base + "/sse", "token": "baseline." + in.UserID,
		"userId": in.UserID, "expiresAt": nowMillis() + 3600_000, "timestamp": nowMillis(),
	})
}

type notificationIn struct {
	Kind    string          `json:"kind,omitempty"`
	UserID  string          `json:"userId,omitempty"`
	Title   string          `json:"title"`
	Body    string          `json:"body"`
	Icon    string          `json:"icon,omitempty"`
	URL     string          `json:"url,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	Exclude []string        `json:"excludeUserIds,omitempty"`
}

func (n *notificationIn) payload() any {
	return struct {
		Title string          `json:"title"`
		Body  string          `json:"body"`
		Icon  string          `json:"icon,omitempty"`
		URL   string          `json:"url,omitempty"`
		Data  json.RawMessage `json:"data,omitempty"`
	}{n.Title, n.Body, n.Icon, n.URL, n.Data}
}

func (b *baselineServer) accepted(w http.ResponseWriter, id string) {
	writeJSONStatus(w, http.StatusAccepted, map[string]any{"message": "accepted", "id": id, "timestamp": nowMillis()})
}

func (b *baselineServer) broadcastHandler(w http.ResponseWriter, r *http.Request) {
	var in notificationIn
	if !readJSON(w, r, &in) {
		return
	}
	if in.Title == "" || in.Body == "" {
		badRequest(w, "title and body are required")
		return
	}
	m := b.newMessage("notification", in.payload())
	b.publishAll(m, in.Exclude)
	b.accepted(w, jsonStringFieldString(m.json, `"id":"`))
}

func (b *baselineServer) notification(w http.ResponseWriter, r *http.Request) {
	var in notificationIn
	if !readJSON(w, r, &in) {
		return
	}
	if in.UserID == "" || in.Title == "" || in.Body == "" {
		badRequest(w, "userId, title and body are required")
		return
	}
	m := b.newMessage("notification", in.payload())
	b.publishUser(in.UserID, m)
	b.accepted(w, jsonStringFieldString(m.json, `"id":"`))
}

// batchHandler accepts notification and broadcast messages (the kinds
// pushbench sends), all-or-nothing, answering their ids in order.
func (b *baselineServer) batchHandler(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Messages []notificationIn `json:"messages"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	if len(in.Messages) == 0 || len(in.Messages) > 1000 {
		badRequest(w, "messages: 1 to 1000 required")
		return
	}
	for i, m := range in.Messages {
		if (m.Kind != "notification" && m.Kind != "broadcast") || m.Title == "" || m.Body == "" || (m.Kind == "notification" && m.UserID == "") {
			badRequest(w, fmt.Sprintf("messages[%d]: unsupported or incomplete", i))
			return
		}
	}
	ids := make([]string, len(in.Messages))
	for i := range in.Messages {
		n := &in.Messages[i]
		m := b.newMessage("notification", n.payload())
		if n.Kind == "broadcast" {
			b.publishAll(m, n.Exclude)
		} else {
			b.publishUser(n.UserID, m)
		}
		ids[i] = jsonStringFieldString(m.json, `"id":"`)
	}
	writeJSONStatus(w, http.StatusAccepted, map[string]any{"message": "accepted", "ids": ids, "timestamp": nowMillis()})
}

func (b *baselineServer) stats(w http.ResponseWriter, _ *http.Request) {
	b.mu.RLock()
	users := len(b.users)
	b.mu.RUnlock()
	writeJSONStatus(w, http.StatusOK, map[string]any{"totalConnections": b.conns.Load(), "uniqueUsers": users,
		"slowConsumerDrops": b.drops.Load(), "timestamp": nowMillis()})
}

func jsonStringFieldString(b []byte, key string) string { return string(jsonStringField(b, key)) }

// runBaselineServer serves until SIGINT/SIGTERM. It prints its URL as the
// first line on stdout (pushbench --baseline auto reads it).
func runBaselineServer(args []string) error {
	fs := newFlagSet("baseline-server")
	addr := fs.String("addr", "127.0.0.1:3002", "listen address (loopback only)")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this loopback address (profiling the reference)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	if *pprofAddr != "" {
		if err := checkLoopback(*pprofAddr); err != nil {
			return err
		}
		go func() { _ = http.ListenAndServe(*pprofAddr, http.DefaultServeMux) }()
	}
	raiseNoFile()
	ln, err := net.Listen("tcp4", *addr)
	if err != nil {
		return err
	}
	b := newBaselineServer()
	srv := &http.Server{Handler: b.handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("pushbench baseline-server listening on http://%s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
