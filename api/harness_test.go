package api_test

// End-to-end harness: the real pushd HTTP surface (api.New over a real
// stream.Manager and the in-memory store) on a loopback httptest.Server, with
// real HTTP, SSE and WebSocket clients. The only fake is e2eStore, which
// wraps persist.Memory to simulate a store outage (the memory store cannot
// fail on its own).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pushd/pushd/api"
	"github.com/pushd/pushd/auth"
	"github.com/pushd/pushd/persist"
	"github.com/pushd/pushd/stream"
)

const (
	e2eAPIKey = "e2e-api-key-0123456789"
	e2eSecret = "e2e-jwt-secret-0123456789"
	// e2eWait bounds every wait for something the server must do. It is
	// generous on purpose: it only matters when a test fails.
	e2eWait = 15 * time.Second
)

// ---------------------------------------------------------------------------
// The one fake: a store that can be switched into an outage.

var errE2EOutage = fmt.Errorf("e2e: simulated outage: %w", stream.ErrUnavailable)

// e2eStore is the memory store with switchable failures: while down, every
// call the manager and the API make fails as in an outage; appendErr and
// statsErr, when set, are what Append and QueueStats fail with (the edge's
// error mapping). Expire is the memory store's (the API never calls it).
type e2eStore struct {
	*persist.Memory
	down                atomic.Bool
	appendErr, statsErr atomic.Pointer[error]
}

// fail is the error a call fails with now: the outage, else the injected
// one, else nil.
func (s *e2eStore) fail(injected *atomic.Pointer[error]) error {
	if s.down.Load() {
		return errE2EOutage
	}
	if injected != nil {
		if err := injected.Load(); err != nil {
			return *err
		}
	}
	return nil
}

func (s *e2eStore) Append(ctx context.Context, d []stream.Draft) ([]*stream.Message, error) {
	if err := s.fail(&s.appendErr); err != nil {
		return nil, err
	}
	return s.Memory.Append(ctx, d)
}

func (s *e2eStore) Head(ctx context.Context) (uint64, error) {
	if err := s.fail(nil); err != nil {
		return 0, err
	}
	return s.Memory.Head(ctx)
}

func (s *e2eStore) ReadStream(ctx context.Context, user string, after uint64, limit int) ([]*stream.Message, bool, error) {
	if err := s.fail(nil); err != nil {
		return nil, false, err
	}
	return s.Memory.ReadStream(ctx, user, after, limit)
}

func (s *e2eStore) DeliveredCursor(ctx context.Context, user string) (uint64, bool, error) {
	if err := s.fail(nil); err != nil {
		return 0, false, err
	}
	return s.Memory.DeliveredCursor(ctx, user)
}

func (s *e2eStore) MarkDelivered(ctx context.Context, ds []stream.Delivery) error {
	if err := s.fail(nil); err != nil {
		return err
	}
	return s.Memory.MarkDelivered(ctx, ds)
}

func (s *e2eStore) QueueStats(ctx context.Context) (stream.QueueStats, error) {
	if err := s.fail(&s.statsErr); err != nil {
		return stream.QueueStats{}, err
	}
	return s.Memory.QueueStats(ctx)
}

// Ping makes the fake a stream.Pinger, so readiness follows the outage.
func (s *e2eStore) Ping(ctx context.Context) error { return s.fail(nil) }

var (
	_ stream.Store         = (*e2eStore)(nil)
	_ stream.Pinger        = (*e2eStore)(nil)
	_ stream.QueueReporter = (*e2eStore)(nil)
)

// ---------------------------------------------------------------------------
// The server.

type e2eConfig struct {
	Opts   api.Options
	Stream stream.Config
	Keep   stream.Retention
}

type e2e struct {
	t      *testing.T
	srv    *httptest.Server
	mgr    *stream.Manager
	store  *e2eStore
	tokens *auth.Tokens
	cfg    e2eConfig
	client *http.Client
}

// newE2E starts pushd on loopback. mods adjust the configuration before the
// server is built.
func newE2E(t *testing.T, mods ...func(*e2eConfig)) *e2e {
	t.Helper()
	tokens := auth.NewTokens(e2eSecret, time.Hour)
	logger := slog.New(slog.DiscardHandler)
	cfg := e2eConfig{
		Opts: api.Options{
			APIKey:           e2eAPIKey,
			Tokens:           tokens,
			AuthRequired:     true,
			AuthTimeout:      5 * time.Second,
			HeartbeatTimeout: 10 * time.Second,
			MaxMessageBytes:  65536,
			SSEPadding:       2048,
			Logger:           logger,
		},
		Stream: stream.Config{Logger: logger, HeartbeatInterval: 30 * time.Second},
		Keep:   stream.Retention{MaxCount: 100, TTL: 24 * time.Hour},
	}
	for _, m := range mods {
		m(&cfg)
	}
	store := &e2eStore{Memory: persist.NewMemory(cfg.Keep)}
	mgr := stream.NewManager(store, cfg.Stream)
	srv := httptest.NewServer(api.New(mgr, cfg.Opts))
	h := &e2e{t: t, srv: srv, mgr: mgr, store: store, tokens: cfg.Opts.Tokens, cfg: cfg}
	h.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		store.down.Store(false)
		mgr.Shutdown(ctx)
		h.client.CloseIdleConnections()
		srv.CloseClientConnections()
		srv.Close()
	})
	return h
}

func (h *e2e) url(path string) string { return h.srv.URL + path }

func (h *e2e) host() string { return strings.TrimPrefix(h.srv.URL, "http://") }

// token mints a valid subscriber token for user.
func (h *e2e) token(user string) string {
	h.t.Helper()
	tok, _, err := h.tokens.Mint(user)
	if err != nil {
		h.t.Fatalf("minting a token: %v", err)
	}
	return tok
}

// ---------------------------------------------------------------------------
// REST.

type e2eResp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *e2eResp) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// do sends a request. body: nil (none), string or []byte (raw), anything
// else is JSON-encoded. key: the Authorization header value ("" for none).
func (h *e2e) do(method, path string, body any, authz string, hdr ...string) *e2eResp {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		data, err := json.Marshal(b)
		if err != nil {
			h.t.Fatalf("encoding request body: %v", err)
		}
		rd = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.url(path), rd)
	if err != nil {
		h.t.Fatalf("building %s %s: %v", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return h.send(req)
}

func (h *e2e) send(req *http.Request) *e2eResp {
	h.t.Helper()
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading the response: %v", req.Method, req.URL.Path, err)
	}
	return &e2eResp{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// api sends an authenticated REST request.
func (h *e2e) api(method, path string, body any) *e2eResp {
	h.t.Helper()
	return h.do(method, path, body, "Bearer "+e2eAPIKey)
}

// object decodes a JSON object response, failing the test when the body is
// not one or the Content-Type is not JSON.
func (r *e2eResp) object(t *testing.T) map[string]any {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json (response %s)", ct, r)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r)
	}
	return m
}

// expectStatus fails the test unless the response has status want.
func (r *e2eResp) expectStatus(t *testing.T, want int) *e2eResp {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status = %d, want %d; body: %s", r.Status, want, bytes.TrimSpace(r.Body))
	}
	return r
}

// expectError checks the JSON error shape {"error":{"code","message"}}.
func (r *e2eResp) expectError(t *testing.T, status int, code string) string {
	t.Helper()
	r.expectStatus(t, status)
	obj := r.object(t)
	checkShape(t, "error response", obj, map[string]string{"error": "object"})
	e, _ := obj["error"].(map[string]any)
	checkShape(t, "error object", e, map[string]string{"code": "string", "message": "string"})
	if got := e["code"]; got != code {
		t.Errorf("error code = %v, want %q (body %s)", got, code, r)
	}
	msg, _ := e["message"].(string)
	if strings.TrimSpace(msg) == "" {
		t.Errorf("error message is empty (body %s)", r)
	}
	return msg
}

// push publishes one message through the REST route of kind and returns its
// event id.
func (h *e2e) push(kind string, body map[string]any) string {
	h.t.Helper()
	path := "/api/ws/push/" + kind
	if kind == "broadcast" {
		path = "/api/ws/broadcast"
	}
	r := h.api("POST", path, body)
	if r.Status != http.StatusAccepted {
		h.t.Fatalf("POST %s: status %d, want 202: %s", path, r.Status, bytes.TrimSpace(r.Body))
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil || out.ID == "" {
		h.t.Fatalf("POST %s: no id in %s", path, r)
	}
	return out.ID
}

// notify pushes a notification to user and returns its id.
func (h *e2e) notify(user, title string) string {
	h.t.Helper()
	return h.push("notification", map[string]any{"userId": user, "title": title, "body": "body of " + title})
}

type e2eStats struct {
	TotalConnections int `json:"totalConnections"`
	UniqueUsers      int `json:"uniqueUsers"`
	Transports       struct {
		SSE int `json:"sse"`
		WS  int `json:"ws"`
	} `json:"transports"`
	QueueStats struct {
		PendingMessages   int64 `json:"pendingMessages"`
		DeliveredMessages int64 `json:"deliveredMessages"`
		ExpiredMessages   int64 `json:"expiredMessages"`
	} `json:"queueStats"`
}

func (h *e2e) stats() e2eStats {
	h.t.Helper()
	r := h.api("GET", "/api/ws/stats", nil).expectStatus(h.t, 200)
	var s e2eStats
	if err := json.Unmarshal(r.Body, &s); err != nil {
		h.t.Fatalf("stats: %v: %s", err, r)
	}
	return s
}

// connections is GET /api/ws/connections/:userId, decoded.
func (h *e2e) connections(user string) []map[string]any {
	h.t.Helper()
	r := h.api("GET", "/api/ws/connections/"+url.PathEscape(user), nil).expectStatus(h.t, 200)
	var out struct {
		Connections []map[string]any `json:"connections"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		h.t.Fatalf("connections: %v: %s", err, r)
	}
	return out.Connections
}

// metric sums the samples of a Prometheus metric family in /metrics whose
// labels contain every "k=\"v\"" in labels.
func (h *e2e) metric(name string, labels ...string) (float64, bool) {
	h.t.Helper()
	r := h.do("GET", "/metrics", nil, "").expectStatus(h.t, 200)
	var sum float64
	found := false
	for _, line := range strings.Split(string(r.Body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		// Label values may hold spaces (routes): the value follows the
		// closing brace when there is one.
		cut := strings.Index(line, " ")
		if i := strings.LastIndex(line, "}"); i >= 0 {
			cut = i + 1
		}
		if cut < 0 || cut >= len(line) {
			continue
		}
		series, value := line[:cut], strings.TrimSpace(line[cut:])
		metric, lbls, _ := strings.Cut(series, "{")
		if metric != name {
			continue
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(lbls, l) {
				match = false
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			h.t.Fatalf("metric %s: bad value in %q", name, line)
		}
		sum += v
		found = true
	}
	return sum, found
}

// eventually polls cond until it reports true or e2eWait passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	delay := 5 * time.Millisecond
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state: %s", e2eWait, what, state)
		}
		time.Sleep(delay)
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// waitConnections waits until the server counts want live connections.
func (h *e2e) waitConnections(want int) {
	h.t.Helper()
	eventually(h.t, fmt.Sprintf("%d live connections in /api/ws/stats", want), func() (bool, string) {
		s := h.stats()
		return s.TotalConnections == want, fmt.Sprintf("%+v", s)
	})
}

// ---------------------------------------------------------------------------
// JSON shape checks.

// checkShape fails unless obj has exactly the keys of spec with the given
// JSON types ("string", "number", "integer", "bool", "object", "array",
// "null", "any"); a "?" suffix marks an optional key.
func checkShape(t *testing.T, what string, obj map[string]any, spec map[string]string) {
	t.Helper()
	if obj == nil {
		t.Errorf("%s: not a JSON object", what)
		return
	}
	for key, typ := range spec {
		optional := strings.HasSuffix(typ, "?")
		typ = strings.TrimSuffix(typ, "?")
		v, ok := obj[key]
		if !ok {
			if !optional {
				t.Errorf("%s: missing field %q (got %s)", what, key, compact(obj))
			}
			continue
		}
		if got := jsonType(v); got != typ && typ != "any" && (typ != "number" || got != "integer") {
			t.Errorf("%s: field %q is JSON %s (%v), want %s", what, key, got, v, typ)
		}
	}
	for key := range obj {
		if _, ok := spec[key]; !ok {
			t.Errorf("%s: unexpected field %q (got %s)", what, key, compact(obj))
		}
	}
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "bool"
	case float64:
		if x == math.Trunc(x) {
			return "integer"
		}
		return "number"
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "integer"
		}
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

func compact(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// checkMillis fails unless v is an integral JSON number within a day of now
// (a millisecond timestamp, not seconds or nanoseconds).
func checkMillis(t *testing.T, what string, v any) {
	t.Helper()
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) {
		t.Errorf("%s = %v (%T), want an integral JSON number of milliseconds", what, v, v)
		return
	}
	now := float64(time.Now().UnixMilli())
	if math.Abs(f-now) > float64(24*time.Hour/time.Millisecond) {
		t.Errorf("%s = %.0f, want milliseconds since the epoch near %.0f", what, f, now)
	}
}

// ---------------------------------------------------------------------------
// Envelopes.

type envelope struct {
	Raw       []byte
	ID        string
	Type      string
	Payload   map[string]any
	Timestamp float64
	HasID     bool
	// SSE framing of the event carrying it (SSE only).
	SSE *sseEvent
}

func (e envelope) String() string {
	if e.HasID {
		return fmt.Sprintf("%s(%s) %s", e.Type, e.ID, compactPayload(e.Payload))
	}
	return fmt.Sprintf("%s %s", e.Type, compactPayload(e.Payload))
}

func compactPayload(p map[string]any) string {
	s := compact(p)
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// storedTypes have ids; every other envelope type must not.
var storedTypes = map[string]bool{"notification": true, "dashboard_update": true, "data_change": true, "audit_log": true}

// parseEnvelope decodes and checks one envelope: exactly the keys id (stored
// types only), type, payload (an object) and timestamp (integral ms).
func parseEnvelope(t *testing.T, where string, data []byte) envelope {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: envelope is not a JSON object: %v: %q", where, err, data)
	}
	e := envelope{Raw: slices.Clone(data)}
	e.Type, _ = m["type"].(string)
	spec := map[string]string{"type": "string", "payload": "object", "timestamp": "integer"}
	if storedTypes[e.Type] {
		spec["id"] = "string"
	}
	checkShape(t, where+": envelope", m, spec)
	if id, ok := m["id"].(string); ok {
		e.ID, e.HasID = id, true
		if id == "" {
			t.Errorf("%s: envelope has an empty id: %s", where, data)
		}
	}
	e.Payload, _ = m["payload"].(map[string]any)
	e.Timestamp, _ = m["timestamp"].(float64)
	checkMillis(t, where+": envelope timestamp", m["timestamp"])
	return e
}

// subscriber is an SSE or WebSocket connection as the tests see it: a
// sequence of envelopes.
type subscriber interface {
	Name() string
	// Next returns the next envelope; ok is false when the stream ended.
	Next(t *testing.T) (e envelope, ok bool)
}

// nextNonHeartbeat returns the next envelope that is not a heartbeat.
func nextNonHeartbeat(t *testing.T, s subscriber) envelope {
	t.Helper()
	for {
		e, ok := s.Next(t)
		if !ok {
			t.Fatalf("%s: stream ended, want another event", s.Name())
		}
		if e.Type != "heartbeat" {
			return e
		}
	}
}

// expectType returns the next non-heartbeat envelope and fails unless it has
// type typ.
func expectType(t *testing.T, s subscriber, typ string) envelope {
	t.Helper()
	e := nextNonHeartbeat(t, s)
	if e.Type != typ {
		t.Fatalf("%s: got %s, want a %s event", s.Name(), e, typ)
	}
	return e
}

// expectConnected checks the first event of a stream.
func expectConnected(t *testing.T, s subscriber, user, transport string) envelope {
	t.Helper()
	e, ok := s.Next(t)
	if !ok {
		t.Fatalf("%s: stream ended before the connected event", s.Name())
	}
	if e.Type != "connected" {
		t.Fatalf("%s: first event is %s, want connected", s.Name(), e)
	}
	checkShape(t, s.Name()+": connected payload", e.Payload, map[string]string{
		"connectionId": "string", "userId": "string", "transport": "string",
		"serverTime": "integer", "heartbeatInterval": "integer",
	})
	if e.Payload["userId"] != user || e.Payload["transport"] != transport {
		t.Errorf("%s: connected payload %s, want userId %q transport %q", s.Name(), compact(e.Payload), user, transport)
	}
	checkMillis(t, s.Name()+": connected serverTime", e.Payload["serverTime"])
	return e
}

// expectIDs fails unless the next stored messages (heartbeats skipped) have
// exactly the ids want, in order.
func expectIDs(t *testing.T, s subscriber, want ...string) []envelope {
	t.Helper()
	var got []envelope
	for len(got) < len(want) {
		e := nextNonHeartbeat(t, s)
		if !e.HasID || e.ID != want[len(got)] {
			t.Fatalf("%s: message %d of %d is %s, want id %s (received so far: %v)", s.Name(), len(got)+1, len(want), e, want[len(got)], got)
		}
		got = append(got, e)
	}
	return got
}

// expectEnd fails unless the stream ends with nothing but heartbeats before.
func expectEnd(t *testing.T, s subscriber) {
	t.Helper()
	for {
		e, ok := s.Next(t)
		if !ok {
			return
		}
		if e.Type != "heartbeat" {
			t.Fatalf("%s: got %s, want the end of the stream", s.Name(), e)
		}
	}
}

// ---------------------------------------------------------------------------
// SSE client: a wire-exact reader over the response body.

type sseEvent struct {
	Raw      string // every byte of the event including the blank line
	ID       string
	HasID    bool
	Event    string
	Data     string
	HasData  bool
	Retry    string
	Comments []string
	Unknown  []string
}

type sseClient struct {
	name   string
	Resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent
	quit   chan struct{}
	mu     sync.Mutex
	err    error
	ended  chan struct{}
}

// sseRequest builds a GET /sse request; the caller adds auth.
func (h *e2e) sseRequest(query string) (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	path := "/sse"
	if query != "" {
		path += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, "GET", h.url(path), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	return req, cancel
}

// openSSE connects user's SSE stream (token in access_token) with extra
// query parameters and request tweaks, and checks the 200 answer. The
// preamble (retry line and padding) is consumed and checked.
func (h *e2e) openSSE(user, query string, mods ...func(*http.Request)) *sseClient {
	h.t.Helper()
	q := "access_token=" + url.QueryEscape(h.token(user))
	if query != "" {
		q += "&" + query
	}
	req, cancel := h.sseRequest(q)
	for _, m := range mods {
		m(req)
	}
	c := h.startSSE(req, cancel, "SSE("+user+")")
	c.expectPreamble(h.t, h.cfg.Opts.SSEPadding)
	return c
}

// startSSE sends req and starts reading the stream; it fails unless the
// answer is 200.
func (h *e2e) startSSE(req *http.Request, cancel context.CancelFunc, name string) *sseClient {
	h.t.Helper()
	resp, err := h.client.Do(req)
	if err != nil {
		cancel()
		h.t.Fatalf("%s: GET /sse: %v", name, err)
	}
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		h.t.Fatalf("%s: GET /sse: status %d, want 200: %s", name, resp.StatusCode, bytes.TrimSpace(body))
	}
	c := &sseClient{name: name, Resp: resp, cancel: cancel, events: make(chan sseEvent, 1<<14), quit: make(chan struct{}), ended: make(chan struct{})}
	go c.read(resp.Body)
	h.t.Cleanup(c.Close)
	return c
}

func (c *sseClient) Name() string { return c.name }

// Close ends the client side of the stream and waits for its reader.
func (c *sseClient) Close() {
	select {
	case <-c.quit:
	default:
		close(c.quit)
	}
	c.cancel()
	c.Resp.Body.Close()
	<-c.ended
}

func (c *sseClient) read(body io.Reader) {
	defer close(c.ended)
	defer close(c.events)
	br := bufio.NewReaderSize(body, 64<<10)
	var ev sseEvent
	var raw strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if line != "" || raw.Len() > 0 {
				err = fmt.Errorf("stream ended inside an event (%v): %q", err, raw.String()+line)
			}
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		raw.WriteString(line)
		content := strings.TrimSuffix(line, "\n")
		if content == "" {
			ev.Raw = raw.String()
			select {
			case c.events <- ev:
			case <-c.quit:
				return
			}
			ev = sseEvent{}
			raw.Reset()
			continue
		}
		if content[0] == ':' {
			ev.Comments = append(ev.Comments, content[1:])
			continue
		}
		field, value, _ := strings.Cut(content, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID, ev.HasID = value, true
		case "event":
			ev.Event = value
		case "data":
			if ev.HasData {
				ev.Data += "\n"
			}
			ev.Data += value
			ev.HasData = true
		case "retry":
			ev.Retry = value
		default:
			ev.Unknown = append(ev.Unknown, content)
		}
	}
}

// Err is why the stream ended (io.EOF for a clean end).
func (c *sseClient) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// NextRaw returns the next SSE event as framed on the wire; ok is false when
// the stream ended.
func (c *sseClient) NextRaw(t *testing.T) (sseEvent, bool) {
	t.Helper()
	select {
	case ev, ok := <-c.events:
		return ev, ok
	case <-time.After(e2eWait):
		t.Fatalf("%s: no event within %v", c.name, e2eWait)
	}
	return sseEvent{}, false
}

// Next implements subscriber: it checks the framing of each event (event
// name equals the envelope type; an id line exactly for stored messages,
// equal to the envelope id; one data line; no stray fields).
func (c *sseClient) Next(t *testing.T) (envelope, bool) {
	t.Helper()
	ev, ok := c.NextRaw(t)
	if !ok {
		if err := c.Err(); err != io.EOF {
			t.Logf("%s: stream ended: %v", c.name, err)
		}
		return envelope{}, false
	}
	if !ev.HasData || ev.Event == "" {
		t.Fatalf("%s: event without event: or data: line: %q", c.name, ev.Raw)
	}
	if len(ev.Unknown) > 0 || len(ev.Comments) > 0 || ev.Retry != "" || strings.Contains(ev.Data, "\n") {
		t.Errorf("%s: unexpected lines in event %q", c.name, ev.Raw)
	}
	e := parseEnvelope(t, c.name, []byte(ev.Data))
	e.SSE = &ev
	if ev.Event != e.Type {
		t.Errorf("%s: SSE event name %q differs from envelope type %q", c.name, ev.Event, e.Type)
	}
	if ev.HasID != e.HasID || ev.ID != e.ID {
		t.Errorf("%s: SSE id line (present %v, %q) does not match the envelope id (present %v, %q): %q",
			c.name, ev.HasID, ev.ID, e.HasID, e.ID, ev.Raw)
	}
	return e, true
}

// expectPreamble checks the first bytes of a stream: a retry line and a
// padding comment of padding bytes, as one block.
func (c *sseClient) expectPreamble(t *testing.T, padding int) {
	t.Helper()
	ev, ok := c.NextRaw(t)
	if !ok {
		t.Fatalf("%s: stream ended before the preamble: %v", c.name, c.Err())
	}
	n, err := strconv.Atoi(ev.Retry)
	if err != nil || n <= 0 {
		t.Fatalf("%s: stream does not start with a retry: line with a positive integer: %q", c.name, ev.Raw)
	}
	want := "retry: " + ev.Retry + "\n"
	if padding > 0 {
		want += ":" + strings.Repeat(" ", padding) + "\n"
	}
	want += "\n"
	if ev.Raw != want {
		t.Fatalf("%s: preamble is %q (%d bytes), want a retry line and a %d-byte padding comment: %q (%d bytes)",
			c.name, abbreviate(ev.Raw), len(ev.Raw), padding, abbreviate(want), len(want))
	}
}

func abbreviate(s string) string {
	if len(s) > 200 {
		return s[:100] + "…" + s[len(s)-60:]
	}
	return s
}

// ---------------------------------------------------------------------------
// WebSocket client (gorilla).

type wsFrame struct {
	Type int
	Data []byte
}

type wsClient struct {
	name   string
	Conn   *websocket.Conn
	Resp   *http.Response
	frames chan wsFrame
	quit   chan struct{}
	ended  chan struct{}
	mu     sync.Mutex
	err    error
	wmu    sync.Mutex
	start  sync.Once
}

// wsURL is ws://host/ws?query.
func (h *e2e) wsURL(query string) string {
	u := "ws://" + h.host() + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

func (h *e2e) dialWS(query string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: e2eWait}
	return d.Dial(h.wsURL(query), hdr)
}

// openWS connects user's WebSocket (token in access_token) and starts
// reading frames.
func (h *e2e) openWS(user, query string) *wsClient {
	h.t.Helper()
	q := "access_token=" + url.QueryEscape(h.token(user))
	if query != "" {
		q += "&" + query
	}
	return h.wsFrom(h.mustDialWS(q, nil), "WS("+user+")", true)
}

func (h *e2e) mustDialWS(query string, hdr http.Header) *websocket.Conn {
	h.t.Helper()
	conn, resp, err := h.dialWS(query, hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		h.t.Fatalf("dialing /ws?%s: %v (HTTP status %d)", query, err, status)
	}
	return conn
}

// wsFrom wraps a dialled connection; read starts the reader now (otherwise
// call StartReading).
func (h *e2e) wsFrom(conn *websocket.Conn, name string, read bool) *wsClient {
	c := &wsClient{name: name, Conn: conn, frames: make(chan wsFrame, 1<<14), quit: make(chan struct{}), ended: make(chan struct{})}
	h.t.Cleanup(c.Close)
	if read {
		c.StartReading()
	}
	return c
}

func (c *wsClient) Name() string { return c.name }

// StartReading starts the reader goroutine (once).
func (c *wsClient) StartReading() {
	c.start.Do(func() { go c.read() })
}

func (c *wsClient) read() {
	defer close(c.ended)
	defer close(c.frames)
	for {
		typ, data, err := c.Conn.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		select {
		case c.frames <- wsFrame{typ, data}:
		case <-c.quit:
			return
		}
	}
}

// Close closes the socket and waits for the reader.
func (c *wsClient) Close() {
	select {
	case <-c.quit:
	default:
		close(c.quit)
	}
	c.Conn.Close()
	c.StartReading() // so that ended is closed even if never started
	<-c.ended
}

// Err is the error that ended the reader.
func (c *wsClient) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Send writes a text frame.
func (c *wsClient) Send(t *testing.T, text string) {
	t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(e2eWait))
	if err := c.Conn.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
		t.Fatalf("%s: sending %q: %v", c.name, abbreviate(text), err)
	}
}

// NextFrame returns the next frame; ok is false when the connection ended.
func (c *wsClient) NextFrame(t *testing.T) (wsFrame, bool) {
	t.Helper()
	select {
	case f, ok := <-c.frames:
		return f, ok
	case <-time.After(e2eWait):
		t.Fatalf("%s: no frame within %v", c.name, e2eWait)
	}
	return wsFrame{}, false
}

// Next implements subscriber; every frame must be one JSON text frame.
func (c *wsClient) Next(t *testing.T) (envelope, bool) {
	t.Helper()
	f, ok := c.NextFrame(t)
	if !ok {
		return envelope{}, false
	}
	if f.Type != websocket.TextMessage {
		t.Fatalf("%s: got a frame of type %d, want text frames only: %q", c.name, f.Type, f.Data)
	}
	return parseEnvelope(t, c.name, f.Data), true
}

// expectClose reads until the connection ends (heartbeats allowed before)
// and fails unless the server closed it with code.
func (c *wsClient) expectClose(t *testing.T, code int) {
	t.Helper()
	for {
		f, ok := c.NextFrame(t)
		if !ok {
			break
		}
		var m struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(f.Data, &m) != nil || m.Type != "heartbeat" {
			t.Fatalf("%s: got frame %q, want close code %d", c.name, abbreviate(string(f.Data)), code)
		}
	}
	err := c.Err()
	ce, ok := err.(*websocket.CloseError)
	if !ok {
		t.Fatalf("%s: connection ended with %v, want a close frame with code %d", c.name, err, code)
	}
	if ce.Code != code {
		t.Fatalf("%s: close code %d (%q), want %d", c.name, ce.Code, ce.Text, code)
	}
}
