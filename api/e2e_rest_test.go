package api_test

// REST routes of CONTRACT §5: success shapes, batch, stats, connection
// listing, disconnect, health, metrics and CORS.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestE2EConnectShape(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	before := time.Now().UnixMilli()
	r := h.api("POST", "/api/ws/connect", map[string]any{"userId": "alice"}).expectStatus(t, 200)
	obj := r.object(t)
	checkShape(t, "POST /api/ws/connect", obj, map[string]string{
		"wsUrl": "string", "sseUrl": "string", "token": "string", "userId": "string",
		"expiresAt": "integer", "timestamp": "integer",
	})
	if got, want := obj["wsUrl"], "ws://"+h.host()+"/ws"; got != want {
		t.Errorf("wsUrl = %v, want %q (absolute, from the request's host, no token)", got, want)
	}
	if got, want := obj["sseUrl"], h.url("/sse"); got != want {
		t.Errorf("sseUrl = %v, want %q (absolute, from the request's host, no token)", got, want)
	}
	if obj["userId"] != "alice" {
		t.Errorf("userId = %v, want alice", obj["userId"])
	}
	checkMillis(t, "timestamp", obj["timestamp"])
	checkMillis(t, "expiresAt", obj["expiresAt"])
	if exp, _ := obj["expiresAt"].(float64); int64(exp) <= before {
		t.Errorf("expiresAt = %.0f, want a future time in ms (now %d)", exp, before)
	}
	tok, _ := obj["token"].(string)
	for _, k := range []string{"wsUrl", "sseUrl"} {
		s, _ := obj[k].(string)
		if tok != "" && strings.Contains(s, tok) || strings.Contains(s, "token") {
			t.Errorf("%s = %q carries a token", k, s)
		}
	}

	// The minted token opens the stream of that user, sent as a bearer
	// header to the returned sseUrl.
	req, cancel := h.sseRequest("")
	req.URL, _ = url.Parse(obj["sseUrl"].(string))
	req.Header.Set("Authorization", "Bearer "+tok)
	c := h.startSSE(req, cancel, "SSE(alice, minted token)")
	c.expectPreamble(t, h.cfg.Opts.SSEPadding)
	expectConnected(t, c, "alice", "sse")

	// ... and the WebSocket at wsUrl.
	conn, _, err := (&websocket.Dialer{HandshakeTimeout: e2eWait}).Dial(obj["wsUrl"].(string)+"?access_token="+url.QueryEscape(tok), nil)
	if err != nil {
		t.Fatalf("dialing wsUrl with the minted token: %v", err)
	}
	w := h.wsFrom(conn, "WS(alice, minted token)", true)
	expectConnected(t, w, "alice", "ws")
}

func TestE2EConnectRequestHost(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	req, _ := http.NewRequest("POST", h.url("/api/ws/connect"), strings.NewReader(`{"userId":"bob"}`))
	req.Host = "push.internal:9999"
	req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
	obj := h.send(req).expectStatus(t, 200).object(t)
	if obj["wsUrl"] != "ws://push.internal:9999/ws" || obj["sseUrl"] != "http://push.internal:9999/sse" {
		t.Errorf("with Host push.internal:9999: wsUrl %v sseUrl %v, want ws://push.internal:9999/ws and http://push.internal:9999/sse", obj["wsUrl"], obj["sseUrl"])
	}
}

func TestE2EConnectPublicURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ public, ws, sse string }{
		{"https://push.example.com", "wss://push.example.com/ws", "https://push.example.com/sse"},
		{"https://push.example.com/", "wss://push.example.com/ws", "https://push.example.com/sse"},
		{"http://proxy.local:8080/pushd", "ws://proxy.local:8080/pushd/ws", "http://proxy.local:8080/pushd/sse"},
	} {
		t.Run(tc.public, func(t *testing.T) {
			t.Parallel()
			h := newE2E(t, func(c *e2eConfig) { c.Opts.PublicURL = tc.public })
			obj := h.api("POST", "/api/ws/connect", map[string]any{"userId": "carol"}).expectStatus(t, 200).object(t)
			if obj["wsUrl"] != tc.ws || obj["sseUrl"] != tc.sse {
				t.Errorf("PublicURL %q: wsUrl %v sseUrl %v, want %s and %s", tc.public, obj["wsUrl"], obj["sseUrl"], tc.ws, tc.sse)
			}
		})
	}
}

// pushAccepted checks the 202 {message, id, timestamp} shape and returns id
// and timestamp.
func pushAccepted(t *testing.T, what string, r *e2eResp) (string, float64) {
	t.Helper()
	r.expectStatus(t, http.StatusAccepted)
	obj := r.object(t)
	checkShape(t, what, obj, map[string]string{"message": "string", "id": "string", "timestamp": "integer"})
	checkMillis(t, what+" timestamp", obj["timestamp"])
	id, _ := obj["id"].(string)
	if id == "" {
		t.Fatalf("%s: empty id: %s", what, r)
	}
	ts, _ := obj["timestamp"].(float64)
	return id, ts
}

func TestE2EPushRoutesShape(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	sse := h.openSSE("dana", "")
	expectConnected(t, sse, "dana", "sse")
	ws := h.openWS("dana", "")
	expectConnected(t, ws, "dana", "ws")

	cases := []struct {
		name, path string
		body       map[string]any
		typ        string
		payload    map[string]string
		check      func(t *testing.T, p map[string]any)
	}{
		{
			name: "notification (all fields)", path: "/api/ws/push/notification",
			body: map[string]any{"userId": "dana", "title": "T", "body": "B", "icon": "/i.png", "url": "/x", "data": map[string]any{"k": 1}},
			typ:  "notification",
			payload: map[string]string{
				"title": "string", "body": "string", "icon": "string", "url": "string", "data": "object",
			},
			check: func(t *testing.T, p map[string]any) {
				if p["title"] != "T" || p["body"] != "B" || p["icon"] != "/i.png" || p["url"] != "/x" || compact(p["data"]) != `{"k":1}` {
					t.Errorf("notification payload %s does not carry the pushed fields", compact(p))
				}
			},
		},
		{
			name: "notification (required fields only)", path: "/api/ws/push/notification",
			body:    map[string]any{"userId": "dana", "title": "T2", "body": "B2"},
			typ:     "notification",
			payload: map[string]string{"title": "string", "body": "string"},
		},
		{
			name: "dashboard", path: "/api/ws/push/dashboard",
			body:    map[string]any{"userId": "dana", "widgetId": "cpu", "data": map[string]any{"value": 42}},
			typ:     "dashboard_update",
			payload: map[string]string{"widgetId": "string", "data": "object", "timestamp": "integer"},
			check: func(t *testing.T, p map[string]any) {
				if p["widgetId"] != "cpu" || compact(p["data"]) != `{"value":42}` {
					t.Errorf("dashboard payload %s does not carry the pushed fields", compact(p))
				}
				checkMillis(t, "dashboard_update payload timestamp", p["timestamp"])
			},
		},
		{
			name: "data-change", path: "/api/ws/push/data-change",
			body:    map[string]any{"userId": "dana", "tableId": "orders", "rowId": "17", "action": "update", "data": map[string]any{"total": 9.5}},
			typ:     "data_change",
			payload: map[string]string{"tableId": "string", "rowId": "string", "action": "string", "data": "object", "timestamp": "integer"},
			check: func(t *testing.T, p map[string]any) {
				if p["tableId"] != "orders" || p["rowId"] != "17" || p["action"] != "update" || compact(p["data"]) != `{"total":9.5}` {
					t.Errorf("data_change payload %s does not carry the pushed fields", compact(p))
				}
				checkMillis(t, "data_change payload timestamp", p["timestamp"])
			},
		},
		{
			name: "data-change without data", path: "/api/ws/push/data-change",
			body:    map[string]any{"userId": "dana", "tableId": "orders", "rowId": "18", "action": "delete"},
			typ:     "data_change",
			payload: map[string]string{"tableId": "string", "rowId": "string", "action": "string", "timestamp": "integer"},
		},
		{
			name: "audit-log", path: "/api/ws/push/audit-log",
			body:    map[string]any{"userId": "dana", "entry": map[string]any{"actor": "root", "op": "login"}},
			typ:     "audit_log",
			payload: map[string]string{"entry": "object", "timestamp": "integer"},
			check: func(t *testing.T, p map[string]any) {
				if compact(p["entry"]) != `{"actor":"root","op":"login"}` {
					t.Errorf("audit_log payload %s does not carry the entry", compact(p))
				}
			},
		},
		{
			name: "broadcast", path: "/api/ws/broadcast",
			body:    map[string]any{"title": "All", "body": "hands"},
			typ:     "notification",
			payload: map[string]string{"title": "string", "body": "string"},
		},
	}
	var lastID string
	for _, tc := range cases {
		id, ts := pushAccepted(t, "POST "+tc.path+" "+tc.name, h.api("POST", tc.path, tc.body))
		if lastID != "" && id <= lastID {
			t.Errorf("%s: id %q is not above the previous id %q (ids increase in a user's stream)", tc.name, id, lastID)
		}
		lastID = id
		for _, s := range []subscriber{sse, ws} {
			e := expectIDs(t, s, id)[0]
			if e.Type != tc.typ {
				t.Errorf("%s on %s: type %q, want %q", tc.name, s.Name(), e.Type, tc.typ)
			}
			if e.Timestamp != ts {
				t.Errorf("%s on %s: envelope timestamp %.0f, REST answered %.0f", tc.name, s.Name(), e.Timestamp, ts)
			}
			checkShape(t, tc.name+" payload on "+s.Name(), e.Payload, tc.payload)
			if tc.check != nil {
				tc.check(t, e.Payload)
			}
		}
	}
}

func TestE2EBatch(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	sse := h.openSSE("erin", "")
	expectConnected(t, sse, "erin", "sse")
	r := h.api("POST", "/api/ws/push/batch", map[string]any{"messages": []any{
		map[string]any{"kind": "notification", "userId": "erin", "title": "a", "body": "1"},
		map[string]any{"kind": "dashboard", "userId": "erin", "widgetId": "w", "data": 1},
		map[string]any{"kind": "data-change", "userId": "erin", "tableId": "t", "rowId": "r", "action": "create"},
		map[string]any{"kind": "audit-log", "userId": "erin", "entry": "logged in"},
		map[string]any{"kind": "broadcast", "title": "b", "body": "2"},
		map[string]any{"kind": "notification", "userId": "someone-else", "title": "c", "body": "3"},
	}}).expectStatus(t, http.StatusAccepted)
	obj := r.object(t)
	checkShape(t, "POST /api/ws/push/batch", obj, map[string]string{"message": "string", "ids": "array", "timestamp": "integer"})
	raw, _ := obj["ids"].([]any)
	var got []string
	for i, v := range raw {
		s, ok := v.(string)
		if !ok || s == "" {
			t.Fatalf("ids[%d] = %v, want a non-empty string", i, v)
		}
		if i > 0 && s <= got[i-1] {
			t.Errorf("ids[%d] = %q not above ids[%d] = %q: ids must be in order", i, s, i-1, got[i-1])
		}
		got = append(got, s)
	}
	if len(got) != 6 {
		t.Fatalf("got %d ids, want 6: %s", len(got), r)
	}
	es := expectIDs(t, sse, got[:5]...)
	for i, typ := range []string{"notification", "dashboard_update", "data_change", "audit_log", "notification"} {
		if es[i].Type != typ {
			t.Errorf("batch message %d delivered as %q, want %q", i, es[i].Type, typ)
		}
	}
	// The message for someone-else is not part of erin's stream.
	marker := h.notify("erin", "marker")
	expectIDs(t, sse, marker)
}

func TestE2EBatchInvalidRejectsWhole(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	valid := func(title string) map[string]any {
		return map[string]any{"kind": "notification", "userId": "fay", "title": title, "body": "x"}
	}
	for _, tc := range []struct {
		name string
		bad  any
	}{
		{"missing title", map[string]any{"kind": "notification", "userId": "fay", "body": "x"}},
		{"unknown kind", map[string]any{"kind": "sms", "userId": "fay", "title": "t", "body": "x"}},
		{"no kind", map[string]any{"userId": "fay", "title": "t", "body": "x"}},
		{"bad action", map[string]any{"kind": "data-change", "userId": "fay", "tableId": "t", "rowId": "1", "action": "upsert"}},
		{"not an object", "hello"},
		{"unknown field", map[string]any{"kind": "notification", "userId": "fay", "title": "t", "body": "x", "color": "red"}},
		{"wrong type", map[string]any{"kind": "dashboard", "userId": 7, "widgetId": "w", "data": 1}},
	} {
		r := h.api("POST", "/api/ws/push/batch", map[string]any{"messages": []any{valid("v0"), valid("v1"), tc.bad, valid("v3")}})
		msg := r.expectError(t, 400, "bad_request")
		if !strings.Contains(msg, "[2]") && !strings.Contains(msg, "index 2") && !strings.Contains(msg, "message 2") {
			t.Errorf("batch with an invalid message at index 2 (%s): error %q does not name index 2", tc.name, msg)
		}
	}
	// Nothing of the rejected batches was stored: a user never delivered
	// anything gets every kept message on connect, and only the marker is
	// there.
	if p := h.stats().QueueStats.PendingMessages; p != 0 {
		t.Errorf("pendingMessages = %d after rejected batches, want 0", p)
	}
	marker := h.notify("fay", "marker")
	sse := h.openSSE("fay", "")
	expectConnected(t, sse, "fay", "sse")
	expectIDs(t, sse, marker)
	// And no resume finds them either.
	sse2 := h.openSSE("fay", "lastEventId=bogus")
	expectConnected(t, sse2, "fay", "sse")
	expectType(t, sse2, "reset")
	expectIDs(t, sse2, marker)
}

func TestE2EBatchLimits(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Opts.MaxMessageBytes = 1 << 20 })
	batch := func(n int) map[string]any {
		ms := make([]any, n)
		for i := range ms {
			ms[i] = map[string]any{"kind": "notification", "userId": "gus", "title": fmt.Sprint("t", i), "body": "b"}
		}
		return map[string]any{"messages": ms}
	}
	h.api("POST", "/api/ws/push/batch", batch(1001)).expectError(t, 400, "bad_request")
	if p := h.stats().QueueStats.PendingMessages; p != 0 {
		t.Errorf("pendingMessages = %d after a rejected batch of 1001, want 0", p)
	}
	h.api("POST", "/api/ws/push/batch", map[string]any{"messages": []any{}}).expectError(t, 400, "bad_request")
	h.api("POST", "/api/ws/push/batch", map[string]any{}).expectError(t, 400, "bad_request")
	h.api("POST", "/api/ws/push/batch", map[string]any{"messages": "x"}).expectError(t, 400, "bad_request")

	r := h.api("POST", "/api/ws/push/batch", batch(1000)).expectStatus(t, http.StatusAccepted)
	var out struct {
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil || len(out.IDs) != 1000 {
		t.Fatalf("batch of 1000: got %d ids (%v), want 1000", len(out.IDs), err)
	}
}

func TestE2EStatsReflectConnections(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	obj := h.api("GET", "/api/ws/stats", nil).expectStatus(t, 200).object(t)
	checkShape(t, "GET /api/ws/stats", obj, map[string]string{
		"totalConnections": "integer", "uniqueUsers": "integer", "transports": "object",
		"queueStats": "object", "nodes": "integer", "timestamp": "integer",
	})
	if obj["nodes"] != float64(1) {
		t.Errorf("stats nodes = %v with the in-memory store, want 1", obj["nodes"])
	}
	tr, _ := obj["transports"].(map[string]any)
	checkShape(t, "stats transports", tr, map[string]string{"sse": "integer", "ws": "integer"})
	qs, _ := obj["queueStats"].(map[string]any)
	checkShape(t, "stats queueStats", qs, map[string]string{"pendingMessages": "integer", "deliveredMessages": "integer", "expiredMessages": "integer"})
	if s := h.stats(); s.TotalConnections != 0 || s.UniqueUsers != 0 {
		t.Fatalf("fresh server: %+v, want no connections", s)
	}

	// Two offline messages for hal are pending.
	h.notify("hal", "one")
	h.notify("hal", "two")
	if s := h.stats(); s.QueueStats.PendingMessages != 2 || s.QueueStats.DeliveredMessages != 0 {
		t.Errorf("after two pushes to an offline user: queueStats %+v, want pending 2 delivered 0", s.QueueStats)
	}

	a1 := h.openSSE("ivy", "")
	expectConnected(t, a1, "ivy", "sse")
	a2 := h.openSSE("ivy", "")
	expectConnected(t, a2, "ivy", "sse")
	b := h.openWS("hal", "")
	expectConnected(t, b, "hal", "ws")
	nextNonHeartbeat(t, b)
	nextNonHeartbeat(t, b)

	s := h.stats()
	if s.TotalConnections != 3 || s.UniqueUsers != 2 || s.Transports.SSE != 2 || s.Transports.WS != 1 {
		t.Errorf("with 2 SSE of ivy and 1 WS of hal: %+v, want totalConnections 3, uniqueUsers 2, sse 2, ws 1", s)
	}
	eventually(t, "the offline messages to count as delivered", func() (bool, string) {
		s := h.stats()
		return s.QueueStats.PendingMessages == 0 && s.QueueStats.DeliveredMessages == 2, fmt.Sprintf("%+v", s.QueueStats)
	})

	a2.Close()
	h.waitConnections(2)
	b.Close()
	h.waitConnections(1)
	if s := h.stats(); s.UniqueUsers != 1 || s.Transports.SSE != 1 || s.Transports.WS != 0 {
		t.Errorf("after closing ivy's second tab and hal's socket: %+v, want 1 user, sse 1, ws 0", s)
	}
}

func TestE2EConnectionsListing(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	obj := h.api("GET", "/api/ws/connections/nobody", nil).expectStatus(t, 200).object(t)
	checkShape(t, "GET /api/ws/connections/nobody", obj, map[string]string{"userId": "string", "connections": "array", "timestamp": "integer"})
	if obj["userId"] != "nobody" {
		t.Errorf("userId = %v, want nobody", obj["userId"])
	}

	req, cancel := h.sseRequest("access_token=" + url.QueryEscape(h.token("jay")))
	req.Header.Set("User-Agent", "e2e-sse-agent/1.0")
	sse := h.startSSE(req, cancel, "SSE(jay)")
	sse.expectPreamble(t, h.cfg.Opts.SSEPadding)
	ce := expectConnected(t, sse, "jay", "sse")
	conn, _, err := h.dialWS("access_token="+url.QueryEscape(h.token("jay")), http.Header{"User-Agent": {"e2e-ws-agent/2.0"}})
	if err != nil {
		t.Fatal(err)
	}
	ws := h.wsFrom(conn, "WS(jay)", true)
	we := expectConnected(t, ws, "jay", "ws")

	obj = h.api("GET", "/api/ws/connections/jay", nil).expectStatus(t, 200).object(t)
	checkShape(t, "GET /api/ws/connections/jay", obj, map[string]string{"userId": "string", "connections": "array", "timestamp": "integer"})
	list, _ := obj["connections"].([]any)
	if len(list) != 2 {
		t.Fatalf("jay has %d listed connections, want 2: %s", len(list), compact(obj))
	}
	seen := map[string]bool{}
	for i, v := range list {
		c, _ := v.(map[string]any)
		checkShape(t, fmt.Sprintf("connections[%d]", i), c, map[string]string{
			"id": "string", "node": "string", "transport": "string", "connectedAt": "integer", "remoteAddr": "string", "userAgent": "string",
		})
		if c["node"] != h.nodeID(t) {
			t.Errorf("connections[%d].node = %v, want this node's id %s", i, c["node"], h.nodeID(t))
		}
		checkMillis(t, fmt.Sprintf("connections[%d].connectedAt", i), c["connectedAt"])
		if ra, _ := c["remoteAddr"].(string); !strings.HasPrefix(ra, "127.0.0.1:") {
			t.Errorf("connections[%d].remoteAddr = %q, want the loopback client address", i, ra)
		}
		switch c["transport"] {
		case "sse":
			if c["userAgent"] != "e2e-sse-agent/1.0" || c["id"] != ce.Payload["connectionId"] {
				t.Errorf("SSE connection %s: want userAgent e2e-sse-agent/1.0 and id %v (connected event)", compact(c), ce.Payload["connectionId"])
			}
		case "ws":
			if c["userAgent"] != "e2e-ws-agent/2.0" || c["id"] != we.Payload["connectionId"] {
				t.Errorf("WS connection %s: want userAgent e2e-ws-agent/2.0 and id %v (connected event)", compact(c), we.Payload["connectionId"])
			}
		default:
			t.Errorf("connections[%d].transport = %v, want sse or ws", i, c["transport"])
		}
		seen[fmt.Sprint(c["transport"])] = true
	}
	if !seen["sse"] || !seen["ws"] {
		t.Errorf("want one sse and one ws connection, got %s", compact(list))
	}
	if n := len(h.connections("someone-else")); n != 0 {
		t.Errorf("someone-else lists %d connections, want 0", n)
	}
}

func TestE2EDisconnectUser(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	sse := h.openSSE("kim", "")
	expectConnected(t, sse, "kim", "sse")
	ws := h.openWS("kim", "")
	expectConnected(t, ws, "kim", "ws")
	other := h.openSSE("lee", "")
	expectConnected(t, other, "lee", "sse")

	r := h.api("POST", "/api/ws/disconnect/kim", map[string]any{"reason": "account suspended"}).expectStatus(t, 200)
	obj := r.object(t)
	checkShape(t, "POST /api/ws/disconnect/kim", obj, map[string]string{"message": "string", "disconnected": "integer", "timestamp": "integer"})
	if obj["disconnected"] != float64(2) {
		t.Errorf("disconnected = %v, want 2", obj["disconnected"])
	}

	d := expectType(t, sse, "disconnect")
	if d.HasID || d.SSE.HasID {
		t.Errorf("the disconnect event carries an id: %q", d.SSE.Raw)
	}
	if d.Payload["reason"] != "account suspended" {
		t.Errorf("SSE disconnect payload %s, want reason %q", compact(d.Payload), "account suspended")
	}
	expectEnd(t, sse)

	d = expectType(t, ws, "disconnect")
	if d.Payload["reason"] != "account suspended" {
		t.Errorf("WS disconnect payload %s, want reason %q", compact(d.Payload), "account suspended")
	}
	ws.expectClose(t, 4000)

	// Other users are untouched.
	id := h.notify("lee", "still here")
	expectIDs(t, other, id)
	h.waitConnections(1)
	if n := len(h.connections("kim")); n != 0 {
		t.Errorf("kim still lists %d connections after the disconnect", n)
	}

	// A user without connections: 0, and no body at all is fine.
	obj = h.api("POST", "/api/ws/disconnect/kim", nil).expectStatus(t, 200).object(t)
	if obj["disconnected"] != float64(0) {
		t.Errorf("disconnecting a user without connections: disconnected = %v, want 0", obj["disconnected"])
	}
	obj = h.api("POST", "/api/ws/disconnect/lee", map[string]any{}).expectStatus(t, 200).object(t)
	if obj["disconnected"] != float64(1) {
		t.Errorf("disconnect with {}: disconnected = %v, want 1", obj["disconnected"])
	}
	d = expectType(t, other, "disconnect")
	if r, _ := d.Payload["reason"].(string); r == "" {
		t.Errorf("disconnect without a reason: payload %s, want a default reason", compact(d.Payload))
	}
	expectEnd(t, other)
}

func TestE2EHealthReadyMetricsStatic(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		r := h.do("GET", p, nil, "")
		r.expectStatus(t, 200)
		r.object(t)
	}
	sse := h.openSSE("max", "")
	expectConnected(t, sse, "max", "sse")
	r := h.do("GET", "/metrics", nil, "").expectStatus(t, 200)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics Content-Type %q, want the Prometheus text format", ct)
	}
	if !strings.Contains(string(r.Body), "# TYPE pushd_connections gauge") {
		t.Errorf("/metrics has no pushd_connections gauge")
	}
	if v, ok := h.metric("pushd_connections", `transport="sse"`); !ok || v != 1 {
		t.Errorf("pushd_connections{transport=\"sse\"} = %v (found %v), want 1", v, ok)
	}
	if v, ok := h.metric("pushd_slow_consumer_disconnects_total"); !ok || v != 0 {
		t.Errorf("pushd_slow_consumer_disconnects_total = %v (found %v), want 0", v, ok)
	}
	// Two pushes answered: two observations under their route; the stream
	// itself is not timed.
	h.notify("max", "one")
	h.notify("max", "two")
	if v, ok := h.metric("pushd_http_request_duration_seconds_count", `route="POST /api/ws/push/notification"`); !ok || v != 2 {
		t.Errorf("pushd_http_request_duration_seconds_count{route=\"POST /api/ws/push/notification\"} = %v (found %v), want 2", v, ok)
	}
	if _, ok := h.metric("pushd_http_request_duration_seconds_count", `route="GET /sse"`); ok {
		t.Errorf("the SSE stream's duration is in pushd_http_request_duration_seconds")
	}

	r = h.do("GET", "/client.js", nil, "").expectStatus(t, 200)
	if ct := r.Header.Get("Content-Type"); !strings.Contains(ct, "javascript") {
		t.Errorf("/client.js Content-Type %q, want JavaScript", ct)
	}
	if !strings.Contains(string(r.Body), "PushClient") {
		t.Errorf("/client.js does not define PushClient")
	}
	r = h.do("GET", "/", nil, "").expectStatus(t, 200)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("/ Content-Type %q, want text/html", ct)
	}
}

func TestE2ECORS(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Opts.AllowedOrigins = []string{"https://app.example"} })
	pre := func(origin string) *e2eResp {
		return h.do("OPTIONS", "/api/ws/push/notification", nil, "",
			"Origin", origin,
			"Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization, content-type")
	}
	r := pre("https://app.example")
	if r.Status != 204 && r.Status != 200 {
		t.Fatalf("preflight from an allowed origin: status %d, want 204 or 200: %s", r.Status, r)
	}
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Errorf("preflight Access-Control-Allow-Origin = %q, want https://app.example", got)
	}
	if got := r.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "POST") {
		t.Errorf("preflight Access-Control-Allow-Methods = %q, want POST in it", got)
	}
	allowH := strings.ToLower(r.Header.Get("Access-Control-Allow-Headers"))
	if !strings.Contains(allowH, "authorization") || !strings.Contains(allowH, "content-type") {
		t.Errorf("preflight Access-Control-Allow-Headers = %q, want Authorization and Content-Type", allowH)
	}

	r = pre("https://evil.example")
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("preflight from a disallowed origin: Access-Control-Allow-Origin = %q, want none", got)
	}

	// The actual request carries the CORS header too.
	r = h.do("POST", "/api/ws/push/notification", map[string]any{"userId": "u", "title": "t", "body": "b"},
		"Bearer "+e2eAPIKey, "Origin", "https://app.example")
	r.expectStatus(t, http.StatusAccepted)
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Errorf("POST from an allowed origin: Access-Control-Allow-Origin = %q, want https://app.example", got)
	}
	// And errors too, so a browser can read them.
	r = h.do("POST", "/api/ws/push/notification", "{}", "", "Origin", "https://app.example")
	r.expectError(t, 401, "unauthorized")
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Errorf("401 to an allowed origin: Access-Control-Allow-Origin = %q, want https://app.example", got)
	}
}

func TestE2ECORSWildcard(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Opts.AllowedOrigins = []string{"*"} })
	r := h.do("OPTIONS", "/api/ws/stats", nil, "", "Origin", "https://anything.example", "Access-Control-Request-Method", "GET")
	if r.Status != 204 && r.Status != 200 {
		t.Fatalf("preflight: status %d: %s", r.Status, r)
	}
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "*" && got != "https://anything.example" {
		t.Errorf("with AllowedOrigins [*]: Access-Control-Allow-Origin = %q, want * or the origin", got)
	}
}
