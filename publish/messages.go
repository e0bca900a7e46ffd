package publish

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Paths of the REST API.
const (
	pathNotification = "/api/ws/push/notification"
	pathDashboard    = "/api/ws/push/dashboard"
	pathDataChange   = "/api/ws/push/data-change"
	pathAuditLog     = "/api/ws/push/audit-log"
	pathBroadcast    = "/api/ws/broadcast"
	pathBatch        = "/api/ws/push/batch"
)

// Message is one push: a Notification, DashboardUpdate, DataChange,
// AuditLog or Broadcast. Batch and Batcher take any mix of them.
type Message interface {
	// kind is the batch item's "kind" and path the single push's route.
	route() (kind, path string)
}

// Notification is a notification for one user.
type Notification struct {
	UserID string `json:"userId"`
	Title  string `json:"title"`
	Body   string `json:"body"`
	Icon   string `json:"icon,omitempty"`
	URL    string `json:"url,omitempty"`
	// Data is any JSON object (a map, a struct or json.RawMessage).
	Data any `json:"data,omitempty"`
}

// DashboardUpdate is the latest value of one widget of a user's dashboard;
// only the newest per widget is replayed.
type DashboardUpdate struct {
	UserID   string `json:"userId"`
	WidgetID string `json:"widgetId"`
	// Data is any JSON value; it is required.
	Data any `json:"data"`
}

// Action is what happened to a row.
type Action string

// The actions of a DataChange.
const (
	Create Action = "create"
	Update Action = "update"
	Delete Action = "delete"
)

// DataChange tells a user a row was created, updated or deleted.
type DataChange struct {
	UserID  string `json:"userId"`
	TableID string `json:"tableId"`
	RowID   string `json:"rowId"`
	Action  Action `json:"action"`
	Data    any    `json:"data,omitempty"`
}

// AuditLog is an audit-log entry for a user.
type AuditLog struct {
	UserID string `json:"userId"`
	// Entry is any JSON value; it is required.
	Entry any `json:"entry"`
}

// Broadcast is a notification for every user except ExcludeUserIDs.
type Broadcast struct {
	Title          string   `json:"title"`
	Body           string   `json:"body"`
	Icon           string   `json:"icon,omitempty"`
	URL            string   `json:"url,omitempty"`
	Data           any      `json:"data,omitempty"`
	ExcludeUserIDs []string `json:"excludeUserIds,omitempty"`
}

func (Notification) route() (string, string)    { return "notification", pathNotification }
func (DashboardUpdate) route() (string, string) { return "dashboard", pathDashboard }
func (DataChange) route() (string, string)      { return "data-change", pathDataChange }
func (AuditLog) route() (string, string)        { return "audit-log", pathAuditLog }
func (Broadcast) route() (string, string)       { return "broadcast", pathBroadcast }

// Result is the server's acknowledgement of a stored message.
type Result struct {
	// ID is the message's event id, as subscribers see it.
	ID string
	// Timestamp is when the server accepted it.
	Timestamp time.Time
}

type acceptedBody struct {
	Message   string `json:"message"`
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"`
}

// Publish stores m for delivery, whatever kind of push it is.
func (c *Client) Publish(ctx context.Context, m Message) (Result, error) {
	_, path := m.route()
	var a acceptedBody
	err := c.do(ctx, request{method: http.MethodPost, path: path, body: m, idempotencyKey: NewIdempotencyKey()}, &a)
	if err != nil {
		return Result{}, err
	}
	return Result{ID: a.ID, Timestamp: time.UnixMilli(a.Timestamp)}, nil
}

// Notify sends a notification to a user.
func (c *Client) Notify(ctx context.Context, n Notification) (Result, error) {
	return c.Publish(ctx, n)
}

// Dashboard sends a dashboard update to a user.
func (c *Client) Dashboard(ctx context.Context, d DashboardUpdate) (Result, error) {
	return c.Publish(ctx, d)
}

// DataChange tells a user a row changed.
func (c *Client) DataChange(ctx context.Context, d DataChange) (Result, error) {
	return c.Publish(ctx, d)
}

// AuditLog sends an audit-log entry to a user.
func (c *Client) AuditLog(ctx context.Context, a AuditLog) (Result, error) { return c.Publish(ctx, a) }

// Broadcast sends a notification to every user but the excluded ones.
func (c *Client) Broadcast(ctx context.Context, b Broadcast) (Result, error) {
	return c.Publish(ctx, b)
}

// MaxBatch is the most messages one batch may carry.
const MaxBatch = 1000

// batchItem is a message with its "kind" for POST /api/ws/push/batch.
type batchItem struct{ m Message }

func (it batchItem) MarshalJSON() ([]byte, error) {
	raw, err := json.Marshal(it.m)
	if err != nil {
		return nil, err
	}
	kind, _ := it.m.route()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, err
	}
	fields["kind"], _ = json.Marshal(kind)
	return json.Marshal(fields)
}

// Batch stores up to MaxBatch messages of any kinds in one request, all or
// none: one invalid message rejects the batch with a bad_request error
// naming its index. The results are in the order of msgs.
func (c *Client) Batch(ctx context.Context, msgs []Message) ([]Result, error) {
	items := make([]batchItem, len(msgs))
	for i, m := range msgs {
		items[i] = batchItem{m}
	}
	var a struct {
		IDs       []string `json:"ids"`
		Timestamp int64    `json:"timestamp"`
	}
	req := request{method: http.MethodPost, path: pathBatch, body: map[string]any{"messages": items}, idempotencyKey: NewIdempotencyKey()}
	if err := c.do(ctx, req, &a); err != nil {
		return nil, err
	}
	if len(a.IDs) != len(msgs) {
		return nil, &Error{Status: http.StatusAccepted, Code: CodeInternal, Message: "the server acknowledged a different number of messages than were sent"}
	}
	out := make([]Result, len(msgs))
	for i, id := range a.IDs {
		out[i] = Result{ID: id, Timestamp: time.UnixMilli(a.Timestamp)}
	}
	return out, nil
}

// Token is a subscriber token for one user, with the stream URLs.
type Token struct {
	Token     string
	UserID    string
	ExpiresAt time.Time
	// SSEURL and WSURL are the absolute stream URLs; they carry no token.
	SSEURL, WSURL string
}

// Connect mints a subscriber token for userID (POST /api/ws/connect).
func (c *Client) Connect(ctx context.Context, userID string) (Token, error) {
	var a struct {
		Token     string `json:"token"`
		UserID    string `json:"userId"`
		ExpiresAt int64  `json:"expiresAt"`
		SSEURL    string `json:"sseUrl"`
		WSURL     string `json:"wsUrl"`
	}
	if err := c.do(ctx, request{method: http.MethodPost, path: "/api/ws/connect", body: map[string]string{"userId": userID}}, &a); err != nil {
		return Token{}, err
	}
	return Token{Token: a.Token, UserID: a.UserID, ExpiresAt: time.UnixMilli(a.ExpiresAt), SSEURL: a.SSEURL, WSURL: a.WSURL}, nil
}

// Stats are the server's live figures (GET /api/ws/stats).
type Stats struct {
	TotalConnections int            `json:"totalConnections"`
	UniqueUsers      int            `json:"uniqueUsers"`
	Transports       map[string]int `json:"transports"`
	QueueStats       struct {
		PendingMessages   int64 `json:"pendingMessages"`
		DeliveredMessages int64 `json:"deliveredMessages"`
		ExpiredMessages   int64 `json:"expiredMessages"`
	} `json:"queueStats"`
	// Nodes is how many nodes answered (0 from a server that does not say).
	Nodes int `json:"nodes"`
	// OutboxPending is the database-driven pushes not yet turned into
	// messages, when the server reports it (PostgreSQL).
	OutboxPending *int64 `json:"outboxPending,omitempty"`
	Timestamp     int64  `json:"timestamp"`
}

// Stats reads the server's live figures.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := c.do(ctx, request{method: http.MethodGet, path: "/api/ws/stats"}, &s)
	return s, err
}

// Connection is one live subscriber connection.
type Connection struct {
	ID string `json:"id"`
	// Node is the id of the node holding it (empty from a single node that
	// does not say).
	Node        string `json:"node,omitempty"`
	Transport   string `json:"transport"`
	ConnectedAt int64  `json:"connectedAt"`
	RemoteAddr  string `json:"remoteAddr"`
	UserAgent   string `json:"userAgent"`
}

// Connections lists userID's live connections.
func (c *Client) Connections(ctx context.Context, userID string) ([]Connection, error) {
	var a struct {
		Connections []Connection `json:"connections"`
	}
	err := c.do(ctx, request{method: http.MethodGet, path: "/api/ws/connections/" + url.PathEscape(userID)}, &a)
	return a.Connections, err
}

// Disconnect ends every connection of userID; their clients get a
// disconnect event with reason (the server's default when empty) and do not
// reconnect. It returns how many connections were ended.
func (c *Client) Disconnect(ctx context.Context, userID, reason string) (int, error) {
	var body any
	if reason != "" {
		body = map[string]string{"reason": reason}
	}
	var a struct {
		Disconnected int `json:"disconnected"`
	}
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/ws/disconnect/" + url.PathEscape(userID), body: body}, &a)
	return a.Disconnected, err
}
