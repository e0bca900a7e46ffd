package clustertest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// subscriber is a Go test client that behaves like the browser client: it
// reconnects after any end but a disconnect, resuming with the last id it
// received, and records everything it got.
type subscriber struct {
	t         *testing.T
	user      string
	transport string // "sse" or "ws"
	base      string
	token     string
	cancel    context.CancelFunc
	finished  chan struct{}

	mu       sync.Mutex
	lastID   string
	ids      []string          // ids of stored messages, in arrival order
	titles   map[string]string // notification title by id
	resets   []string
	connects int
	ended    string // why it stopped reconnecting: "disconnect: <reason>"
	closes   []int  // WebSocket close codes seen
	endedAt  time.Time
}

// subscribe starts a subscriber of user on base (a node or the proxy).
func subscribe(t *testing.T, c client, base, user, transport string) *subscriber {
	t.Helper()
	s := &subscriber{t: t, user: user, transport: transport, base: base, token: c.token(user)}
	startSubscriber(t, s)
	return s
}

// startSubscriber runs s (its fields set: user, transport, base, token, and
// lastID to resume from) until the test ends.
func startSubscriber(t *testing.T, s *subscriber) {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.finished = cancel, make(chan struct{})
	go s.loop(ctx)
	t.Cleanup(s.close)
}

func (s *subscriber) close() {
	s.cancel()
	<-s.finished
}

func (s *subscriber) loop(ctx context.Context) {
	defer close(s.finished)
	for ctx.Err() == nil {
		var err error
		if s.transport == "ws" {
			err = s.runWS(ctx)
		} else {
			err = s.runSSE(ctx)
		}
		s.mu.Lock()
		ended := s.ended != ""
		s.mu.Unlock()
		if ended || ctx.Err() != nil {
			return
		}
		_ = err // any other end: reconnect and resume, as the browser client does
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// event records one envelope.
func (s *subscriber) event(id, typ string, payload json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch typ {
	case "connected":
		s.connects++
	case "reset":
		s.resets = append(s.resets, string(payload))
	case "disconnect":
		var p struct {
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(payload, &p)
		s.ended = "disconnect: " + p.Reason
		s.endedAt = time.Now()
	}
	if id != "" {
		s.ids = append(s.ids, id)
		s.lastID = id
		var p struct {
			Title string `json:"title"`
		}
		_ = json.Unmarshal(payload, &p)
		if s.titles == nil {
			s.titles = map[string]string{}
		}
		s.titles[id] = p.Title
	}
}

func (s *subscriber) resumeID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

func (s *subscriber) runSSE(ctx context.Context) error {
	q := url.Values{"access_token": {s.token}}
	req, err := http.NewRequestWithContext(ctx, "GET", s.base+"/sse?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if id := s.resumeID(); id != "" {
		req.Header.Set("Last-Event-ID", id)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("sse: status %d", res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var id, typ, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			typ = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		case line == "" && typ != "":
			s.event(id, typ, envelopePayload(data))
			id, typ, data = "", "", ""
		}
	}
	return sc.Err()
}

func envelopePayload(data string) json.RawMessage {
	var env struct {
		Payload json.RawMessage `json:"payload"`
	}
	_ = json.Unmarshal([]byte(data), &env)
	return env.Payload
}

func (s *subscriber) runWS(ctx context.Context) error {
	q := url.Values{"access_token": {s.token}}
	if id := s.resumeID(); id != "" {
		q.Set("lastEventId", id)
	}
	u := "ws" + strings.TrimPrefix(s.base, "http") + "/ws?" + q.Encode()
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, u, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				s.mu.Lock()
				s.closes = append(s.closes, ce.Code)
				if ce.Code == 4000 && s.ended == "" {
					s.ended = "close 4000 without a disconnect event"
				}
				s.mu.Unlock()
			}
			return err
		}
		var env struct {
			ID      string          `json:"id"`
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(msg, &env); err != nil {
			return err
		}
		s.event(env.ID, env.Type, env.Payload)
	}
}

// snapshot returns copies of what the subscriber recorded.
func (s *subscriber) snapshot() (ids, resets []string, connects int, ended string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...), append([]string(nil), s.resets...), s.connects, s.ended
}

func (s *subscriber) String() string { return s.transport + "(" + s.user + ")" }

// waitConnected waits for the subscriber's first connected event.
func (s *subscriber) waitConnected(t *testing.T) {
	t.Helper()
	eventually(t, 10*time.Second, s.String()+" to connect", func() (bool, string) {
		_, _, n, _ := s.snapshot()
		return n > 0, "not connected"
	})
}

// checkExactly fails t unless the subscriber received every id of want
// (sorted in stream order) once, in order, and no reset. Besides those it
// may have received messages whose title is in uncertain: publishes whose
// answer was lost (a node went away mid-request), stored or not.
func (s *subscriber) checkExactly(t *testing.T, want []string, uncertain map[string]bool) {
	t.Helper()
	got, resets, _, _ := s.snapshot()
	if len(resets) > 0 {
		t.Errorf("%s: reset %v", s, resets)
	}
	s.mu.Lock()
	var sure []string
	for _, id := range got {
		if !uncertain[s.titles[id]] {
			sure = append(sure, id)
		}
	}
	s.mu.Unlock()
	ordered := true
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			ordered = false
		}
	}
	if ordered && slices.Equal(sure, want) {
		return
	}
	t.Errorf("%s: got %d messages (%d sure), want %d; %s", s, len(got), len(sure), len(want), diffIDs(got, want))
}

// received reports whether the subscriber holds every id of want.
func (s *subscriber) received(want []string) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	have := make(map[string]bool, len(s.ids))
	for _, id := range s.ids {
		have[id] = true
	}
	missing := 0
	for _, id := range want {
		if !have[id] {
			missing++
		}
	}
	return missing == 0, fmt.Sprintf("%s: %d of %d missing, %d connects", s, missing, len(want), s.connects)
}

// diffIDs describes how got differs from want: duplicates, missing, order.
func diffIDs(got, want []string) string {
	seen := map[string]int{}
	var dups []string
	for _, id := range got {
		seen[id]++
		if seen[id] == 2 {
			dups = append(dups, id)
		}
	}
	var missing []string
	for _, id := range want {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	var disorder []string
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			disorder = append(disorder, got[i-1]+" then "+got[i])
		}
	}
	return fmt.Sprintf("duplicates %s; missing %s; out of order %s", clip(dups), clip(missing), clip(disorder))
}

func clip(s []string) string {
	if len(s) > 5 {
		return fmt.Sprintf("%v… (%d)", s[:5], len(s))
	}
	return fmt.Sprint(s)
}
