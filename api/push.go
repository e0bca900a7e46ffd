package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/pushd/pushd/internal/flatjson"
	"github.com/pushd/pushd/stream"
)

// A push kind turns one request object into a stored draft. The same
// builders serve the single endpoints and POST /api/ws/push/batch, so both
// validate identically.
type pushKind func(raw []byte, now int64) (stream.Draft, error)

var pushKinds = map[string]pushKind{
	"notification": buildNotification,
	"dashboard":    buildDashboard,
	"data-change":  buildDataChange,
	"audit-log":    buildAuditLog,
	"broadcast":    buildBroadcast,
}

// kindField lets batch items carry "kind" and "idempotencyKey" through the
// strict decoders.
type kindField struct {
	Kind           string  `json:"kind,omitempty"`
	IdempotencyKey *string `json:"idempotencyKey,omitempty"`
}

func marshalPayload(v any) json.RawMessage {
	b, _ := json.Marshal(v) // only maps of validated JSON values
	return b
}

type notificationReq struct {
	kindField
	UserID string          `json:"userId"`
	Title  string          `json:"title"`
	Body   string          `json:"body"`
	Icon   string          `json:"icon,omitempty"`
	URL    string          `json:"url,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

type notificationPayload struct {
	Title string          `json:"title"`
	Body  string          `json:"body"`
	Icon  string          `json:"icon,omitempty"`
	URL   string          `json:"url,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

func (q *notificationReq) payload() (json.RawMessage, error) {
	if err := checkText("title", q.Title); err != nil {
		return nil, err
	}
	if err := checkText("body", q.Body); err != nil {
		return nil, err
	}
	if err := checkObject("data", q.Data); err != nil {
		return nil, err
	}
	if !present(q.Data) {
		return q.plainPayload(), nil
	}
	return marshalPayload(notificationPayload{Title: q.Title, Body: q.Body, Icon: q.Icon, URL: q.URL, Data: q.Data}), nil
}

// plainPayload is the payload of a notification without data, appended by
// hand: the bytes marshalPayload writes, without its reflection.
func (q *notificationReq) plainPayload() json.RawMessage {
	b := make([]byte, 0, 32+len(q.Title)+len(q.Body)+len(q.Icon)+len(q.URL))
	b = flatjson.AppendString(append(b, `{"title":`...), q.Title)
	b = flatjson.AppendString(append(b, `,"body":`...), q.Body)
	if q.Icon != "" {
		b = flatjson.AppendString(append(b, `,"icon":`...), q.Icon)
	}
	if q.URL != "" {
		b = flatjson.AppendString(append(b, `,"url":`...), q.URL)
	}
	return append(b, '}')
}

// flatFields are the members decodeFlat may fill in q.
func (q *notificationReq) flatFields() [7]flatField {
	return [7]flatField{
		{name: "userId", str: &q.UserID}, {name: "title", str: &q.Title}, {name: "body", str: &q.Body},
		{name: "icon", str: &q.Icon}, {name: "url", str: &q.URL}, {name: "data", raw: &q.Data},
		{name: "kind", str: &q.Kind},
	}
}

// decode fills q from raw: the hand-written fast path when raw has the
// everyday shape, else the strict decoder.
func (q *notificationReq) decode(raw []byte) error {
	if fields := q.flatFields(); decodeFlat(raw, fields[:]) {
		return nil
	}
	var strict notificationReq // a separate variable: only this path pays decodeStrict's heap copy
	err := decodeStrict(raw, &strict)
	*q = strict
	return err
}

func buildNotification(raw []byte, now int64) (stream.Draft, error) {
	var q notificationReq
	if err := q.decode(raw); err != nil {
		return stream.Draft{}, err
	}
	if err := checkID("userId", q.UserID); err != nil {
		return stream.Draft{}, err
	}
	p, err := q.payload()
	if err != nil {
		return stream.Draft{}, err
	}
	return stream.Draft{Type: stream.TypeNotification, UserID: q.UserID, Payload: p, Timestamp: now}, nil
}

type broadcastReq struct {
	notificationReq
	ExcludeUserIDs []string `json:"excludeUserIds,omitempty"`
}

func buildBroadcast(raw []byte, now int64) (stream.Draft, error) {
	var q broadcastReq
	if err := decodeStrict(raw, &q); err != nil {
		return stream.Draft{}, err
	}
	if q.UserID != "" {
		return stream.Draft{}, badf("a broadcast has no userId; use excludeUserIds to skip users")
	}
	for i, u := range q.ExcludeUserIDs {
		if err := checkID(fmt.Sprintf("excludeUserIds[%d]", i), u); err != nil {
			return stream.Draft{}, err
		}
	}
	if len(q.ExcludeUserIDs) > 10000 {
		return stream.Draft{}, badf("excludeUserIds has more than 10000 entries")
	}
	p, err := q.payload()
	if err != nil {
		return stream.Draft{}, err
	}
	return stream.Draft{Type: stream.TypeNotification, Exclude: q.ExcludeUserIDs, Payload: p, Timestamp: now}, nil
}

type dashboardReq struct {
	kindField
	UserID   string          `json:"userId"`
	WidgetID string          `json:"widgetId"`
	Data     json.RawMessage `json:"data"`
}

func buildDashboard(raw []byte, now int64) (stream.Draft, error) {
	var q dashboardReq
	if err := decodeStrict(raw, &q); err != nil {
		return stream.Draft{}, err
	}
	if err := checkID("userId", q.UserID); err != nil {
		return stream.Draft{}, err
	}
	if err := checkID("widgetId", q.WidgetID); err != nil {
		return stream.Draft{}, err
	}
	if len(q.Data) == 0 {
		return stream.Draft{}, badf("data is required")
	}
	p := marshalPayload(map[string]any{"widgetId": q.WidgetID, "data": q.Data, "timestamp": now})
	return stream.Draft{Type: stream.TypeDashboardUpdate, UserID: q.UserID, Key: q.WidgetID, Payload: p, Timestamp: now}, nil
}

type dataChangeReq struct {
	kindField
	UserID  string          `json:"userId"`
	TableID string          `json:"tableId"`
	RowID   string          `json:"rowId"`
	Action  string          `json:"action"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func buildDataChange(raw []byte, now int64) (stream.Draft, error) {
	var q dataChangeReq
	if err := decodeStrict(raw, &q); err != nil {
		return stream.Draft{}, err
	}
	if err := checkID("userId", q.UserID); err != nil {
		return stream.Draft{}, err
	}
	if err := checkID("tableId", q.TableID); err != nil {
		return stream.Draft{}, err
	}
	if err := checkID("rowId", q.RowID); err != nil {
		return stream.Draft{}, err
	}
	switch q.Action {
	case "create", "update", "delete":
	default:
		return stream.Draft{}, badf("action must be one of create, update, delete; got %q", q.Action)
	}
	p := map[string]any{"tableId": q.TableID, "rowId": q.RowID, "action": q.Action, "timestamp": now}
	if present(q.Data) {
		p["data"] = q.Data
	}
	return stream.Draft{Type: stream.TypeDataChange, UserID: q.UserID, Payload: marshalPayload(p), Timestamp: now}, nil
}

type auditLogReq struct {
	kindField
	UserID string          `json:"userId"`
	Entry  json.RawMessage `json:"entry"`
}

func buildAuditLog(raw []byte, now int64) (stream.Draft, error) {
	var q auditLogReq
	if err := decodeStrict(raw, &q); err != nil {
		return stream.Draft{}, err
	}
	if err := checkID("userId", q.UserID); err != nil {
		return stream.Draft{}, err
	}
	if !present(q.Entry) {
		return stream.Draft{}, badf("entry is required")
	}
	p := marshalPayload(map[string]any{"entry": q.Entry, "timestamp": now})
	return stream.Draft{Type: stream.TypeAuditLog, UserID: q.UserID, Payload: p, Timestamp: now}, nil
}

// accepted is the 202 body of a single push.
var pushMessages = map[string]string{
	"notification": "Notification stored and queued for delivery",
	"dashboard":    "Dashboard update stored and queued for delivery",
	"data-change":  "Data change stored and queued for delivery",
	"audit-log":    "Audit log entry stored and queued for delivery",
	"broadcast":    "Broadcast stored and queued for delivery",
}

// handlePush serves the single-message push endpoints and the broadcast.
func (s *Server) handlePush(kind string) http.HandlerFunc {
	build := pushKinds[kind]
	return func(w http.ResponseWriter, r *http.Request) {
		body, ok := s.readBody(w, r)
		if !ok {
			return
		}
		key, err := idempotencyKeyOf(r)
		if err != nil {
			s.requestError(w, err)
			return
		}
		now := stream.NowMillis()
		d, err := build(body, now)
		if err != nil {
			s.requestError(w, err)
			return
		}
		var k kindField
		if mayHoldKeyField(body) && json.Unmarshal(body, &k) == nil && k.IdempotencyKey != nil {
			s.requestError(w, badf("idempotencyKey is a field of batch items; send the %s header instead", idempotencyHeader))
			return
		}
		if key != "" {
			d.IdempotencyKey, d.Fingerprint = key, fingerprint(kind, body)
		}
		msgs, ok := s.publish(w, r, []stream.Draft{d}, func(*stream.KeyConflictError) string {
			return idempotencyHeader + " was already used with a different request"
		})
		if !ok {
			return
		}
		writeAccepted(w, pushMessages[kind], msgs[0])
	}
}

// writeAccepted answers a stored single push: {"message","id","timestamp"},
// built by appending (the message texts and event ids need no escaping).
func writeAccepted(w http.ResponseWriter, message string, m *stream.Message) {
	b := make([]byte, 0, 64+len(message)+len(m.ID))
	b = append(b, `{"message":"`...)
	b = append(b, message...)
	b = append(b, `","id":"`...)
	b = append(b, m.ID...)
	b = append(b, `","timestamp":`...)
	b = strconv.AppendInt(b, m.Timestamp, 10)
	writeJSONBody(w, http.StatusAccepted, append(b, "}\n"...))
}

// maxBatch is the most messages one batch request may carry.
const maxBatch = 1000

// handleBatch serves POST /api/ws/push/batch: all messages are validated
// first; one invalid message rejects the batch; the rest are appended in one
// store call (one transaction on PostgreSQL).
func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	// A batch has its own body limit (--max-batch-bytes); each message in
	// it is held to --max-message-bytes like a single push.
	body, ok := s.readBodyLimit(w, r, s.opts.MaxBatchBytes)
	if !ok {
		return
	}
	var q struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := decodeStrict(body, &q); err != nil {
		s.requestError(w, err)
		return
	}
	if len(q.Messages) == 0 {
		s.requestError(w, badf("messages is required and must be a non-empty array"))
		return
	}
	if len(q.Messages) > maxBatch {
		s.requestError(w, badf("messages has %d entries; at most %d per batch", len(q.Messages), maxBatch))
		return
	}
	key, err := idempotencyKeyOf(r)
	if err != nil {
		s.requestError(w, err)
		return
	}
	var batchFingerprint string
	if key != "" {
		batchFingerprint = fingerprint("batch", body)
	}
	now := stream.NowMillis()
	drafts := make([]stream.Draft, len(q.Messages))
	for i, raw := range q.Messages {
		if int64(len(raw)) > s.opts.MaxMessageBytes {
			writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("messages[%d]: over %d bytes", i, s.opts.MaxMessageBytes))
			return
		}
		var k struct {
			Kind string `json:"kind"`
		}
		if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &k) != nil {
			s.requestError(w, badf("messages[%d]: want an object with a kind", i))
			return
		}
		build := pushKinds[k.Kind]
		if build == nil {
			s.requestError(w, badf("messages[%d]: kind must be one of notification, dashboard, data-change, audit-log, broadcast; got %q", i, k.Kind))
			return
		}
		d, err := build(raw, now)
		if err != nil {
			s.requestError(w, badf("messages[%d]: %v", i, err))
			return
		}
		var item kindField // its types were checked by build
		if mayHoldKeyField(raw) {
			_ = json.Unmarshal(raw, &item)
		}
		switch {
		case item.IdempotencyKey != nil && key != "":
			s.requestError(w, badf("messages[%d]: idempotencyKey cannot be combined with the %s header, which covers the whole batch", i, idempotencyHeader))
			return
		case item.IdempotencyKey != nil:
			if err := checkKey(fmt.Sprintf("messages[%d].idempotencyKey", i), *item.IdempotencyKey); err != nil {
				s.requestError(w, err)
				return
			}
			d.IdempotencyKey, d.Fingerprint = *item.IdempotencyKey, fingerprint(k.Kind, raw)
		case key != "":
			d.IdempotencyKey, d.Fingerprint = batchItemKey(key, i), batchFingerprint
		}
		drafts[i] = d
	}
	msgs, ok := s.publish(w, r, drafts, func(c *stream.KeyConflictError) string {
		if key != "" {
			return idempotencyHeader + " was already used with a different batch"
		}
		return fmt.Sprintf("messages[%d]: idempotencyKey %q was already used with a different message", c.Index, c.Key)
	})
	if !ok {
		return
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	stamp := now
	if key != "" {
		stamp = msgs[0].Timestamp // a repeat answers what the first answered
	}
	writeJSON(w, http.StatusAccepted, map[string]any{
		"message": fmt.Sprintf("%d messages stored and queued for delivery", len(ids)), "ids": ids, "timestamp": stamp,
	})
}

func (s *Server) requestError(w http.ResponseWriter, err error) {
	var br *badRequest
	if errors.As(err, &br) {
		writeError(w, http.StatusBadRequest, codeBadRequest, br.msg)
		return
	}
	writeError(w, http.StatusInternalServerError, codeInternal, "internal error")
}

// publish stores drafts and answers a failure: 429 past the per-user rate,
// 409 for an idempotency key reused with another request (conflict says
// which), 503 with Retry-After when the store is unavailable (nothing
// stored), 500 outcome_unknown when the store cannot tell whether it
// committed, 500 internal for anything else — a draft the store rejects
// (stream.ErrRejected: a field the API's validation let through) included,
// which is logged as such.
func (s *Server) publish(w http.ResponseWriter, r *http.Request, drafts []stream.Draft, conflict func(*stream.KeyConflictError) string) ([]*stream.Message, bool) {
	if !s.userRateAllowed(w, r, drafts) {
		return nil, false
	}
	msgs, err := s.manager.Publish(r.Context(), drafts)
	var kc *stream.KeyConflictError
	switch {
	case err == nil:
		stored := 0
		for _, m := range msgs {
			if !m.Repeat {
				s.metrics.published[m.Type].Inc()
				stored++
			}
		}
		if stored == 0 {
			w.Header().Set(replayedHeader, "true")
		}
		return msgs, true
	case errors.As(err, &kc):
		writeError(w, http.StatusConflict, codeConflict, conflict(kc))
	case errors.Is(err, stream.ErrOutcomeUnknown):
		s.log.Error("store error: publish outcome unknown", "err", err, "messages", len(drafts), "request_id", requestID(r))
		writeError(w, http.StatusInternalServerError, codeOutcomeUnknown,
			"the store's connection broke during the commit and whether it committed could not be learnt; retrying with the same Idempotency-Key is safe")
	case errors.Is(err, stream.ErrUnavailable):
		s.log.Warn("store error: publish failed, store unavailable", "err", err, "messages", len(drafts), "request_id", requestID(r))
		retryAfter(w, s.opts.RetryAfter)
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "store unavailable: message not stored, retry later")
	case errors.Is(err, stream.ErrRejected):
		s.log.Error("store error: the store rejected a draft the API accepted", "err", err, "messages", len(drafts), "request_id", requestID(r))
		writeError(w, http.StatusInternalServerError, codeInternal, "internal error")
	case r.Context().Err() != nil:
		s.log.Info("publisher went away before the store answered", "err", err, "messages", len(drafts), "request_id", requestID(r))
		writeError(w, http.StatusInternalServerError, codeInternal, "internal error")
	default:
		s.log.Error("store error: publish failed", "err", err, "messages", len(drafts), "request_id", requestID(r))
		writeError(w, http.StatusInternalServerError, codeInternal, "internal error")
	}
	return nil, false
}
