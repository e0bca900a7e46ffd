package publish_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/api"
	"github.com/pushd/pushd/publish"
)

func newClient(t testing.TB, ts *testServer, opts ...publish.Option) *publish.Client {
	t.Helper()
	opts = append([]publish.Option{publish.WithBackoff(10*time.Millisecond, 3*time.Second)}, opts...)
	c, err := publish.New(ts.URL, testKey, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestEveryPushRouteReachesTheSubscriber publishes one message of each kind
// and finds it, with the acknowledged id, on the user's stream.
func TestEveryPushRouteReachesTheSubscriber(t *testing.T) {
	ts := startServer(t, nil)
	c := newClient(t, ts)
	ctx := ctxT(t)
	tok, err := c.Connect(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if tok.UserID != "alice" || tok.Token == "" || !strings.HasSuffix(tok.SSEURL, "/sse") || !strings.HasPrefix(tok.WSURL, "ws://") || time.Until(tok.ExpiresAt) < 30*time.Minute {
		t.Fatalf("Connect = %+v", tok)
	}
	events := subscribe(t, tok.SSEURL, tok.Token)

	cases := []struct {
		want    string
		publish func() (publish.Result, error)
		check   string
	}{
		{"notification", func() (publish.Result, error) {
			return c.Notify(ctx, publish.Notification{UserID: "alice", Title: "T", Body: "B", URL: "/x", Data: map[string]int{"n": 1}})
		}, `"title":"T"`},
		{"dashboard_update", func() (publish.Result, error) {
			return c.Dashboard(ctx, publish.DashboardUpdate{UserID: "alice", WidgetID: "w1", Data: 42})
		}, `"widgetId":"w1"`},
		{"data_change", func() (publish.Result, error) {
			return c.DataChange(ctx, publish.DataChange{UserID: "alice", TableID: "orders", RowID: "7", Action: publish.Update, Data: map[string]string{"status": "paid"}})
		}, `"action":"update"`},
		{"audit_log", func() (publish.Result, error) {
			return c.AuditLog(ctx, publish.AuditLog{UserID: "alice", Entry: map[string]string{"who": "bob"}})
		}, `"who":"bob"`},
		{"notification", func() (publish.Result, error) {
			return c.Broadcast(ctx, publish.Broadcast{Title: "All", Body: "hands", ExcludeUserIDs: []string{"carol"}})
		}, `"title":"All"`},
	}
	for _, tc := range cases {
		res, err := tc.publish()
		if err != nil {
			t.Fatalf("%s: %v", tc.want, err)
		}
		if res.ID == "" || time.Since(res.Timestamp) > time.Minute {
			t.Fatalf("%s: result %+v", tc.want, res)
		}
		e := next(t, events)
		if e.ID != res.ID || e.Type != tc.want || !strings.Contains(string(e.Payload), tc.check) {
			t.Fatalf("%s: got event %s %s %s, want id %s", tc.want, e.ID, e.Type, e.Payload, res.ID)
		}
	}
}

// TestErrorsCarryTheCode: the server's answers come back as *publish.Error
// with the code, and are not retried when repeating cannot help.
func TestErrorsCarryTheCode(t *testing.T) {
	ts := startServer(t, func(o *api.Options) { o.MaxMessageBytes = 1024 })
	c := newClient(t, ts)
	ctx := ctxT(t)
	check := func(name string, err error, status int, code string) {
		t.Helper()
		var perr *publish.Error
		if !errors.As(err, &perr) {
			t.Fatalf("%s: error %v is not a *publish.Error", name, err)
		}
		if perr.Status != status || perr.Code != code || perr.Message == "" || perr.Attempts != 1 || perr.Retryable() {
			t.Fatalf("%s: %+v, want %d %s after one attempt", name, perr, status, code)
		}
	}
	_, err := c.Notify(ctx, publish.Notification{UserID: "alice", Title: "", Body: "b"})
	check("empty title", err, http.StatusBadRequest, publish.CodeBadRequest)
	_, err = c.DataChange(ctx, publish.DataChange{UserID: "a", TableID: "t", RowID: "1", Action: "upsert"})
	check("bad action", err, http.StatusBadRequest, publish.CodeBadRequest)
	_, err = c.Notify(ctx, publish.Notification{UserID: "alice", Title: "t", Body: strings.Repeat("x", 2000)})
	check("too large", err, http.StatusRequestEntityTooLarge, publish.CodePayloadTooLarge)
	_, err = c.Connections(ctx, strings.Repeat("u", 300))
	check("user id too long", err, http.StatusBadRequest, publish.CodeBadRequest)

	wrong, err := publish.New(ts.URL, "not-the-key")
	if err != nil {
		t.Fatal(err)
	}
	_, err = wrong.Stats(ctx)
	check("wrong key", err, http.StatusUnauthorized, publish.CodeUnauthorized)

	if ts.store.appends.Load() != 0 {
		t.Fatalf("%d appends for requests that were all rejected", ts.store.appends.Load())
	}
}

func TestNewRejectsBadArguments(t *testing.T) {
	for _, tc := range []struct {
		url, key string
		opts     []publish.Option
	}{
		{"localhost:3001", "k", nil},
		{"ftp://h", "k", nil},
		{"http://h", "", nil},
		{"http://h", "k", []publish.Option{publish.WithRetries(-1)}},
		{"http://h", "k", []publish.Option{publish.WithBackoff(time.Second, time.Millisecond)}},
		{"http://h", "k", []publish.Option{publish.WithHTTPClient(nil)}},
	} {
		if _, err := publish.New(tc.url, tc.key, tc.opts...); err == nil {
			t.Errorf("New(%q, %q) accepted", tc.url, tc.key)
		}
	}
}

// TestRateLimitedIsRetriedAfterRetryAfter: with the REST rate limit at one
// request per second, the second publish is answered 429 with Retry-After
// and succeeds on a retry no sooner than the server asked.
func TestRateLimitedIsRetriedAfterRetryAfter(t *testing.T) {
	ts := startServer(t, func(o *api.Options) { o.RateLimit, o.RateBurst = 1, 1 })
	ctx := ctxT(t)

	noRetry := newClient(t, ts, publish.WithRetries(0))
	if _, err := noRetry.Notify(ctx, publish.Notification{UserID: "a", Title: "1", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	_, err := noRetry.Notify(ctx, publish.Notification{UserID: "a", Title: "2", Body: "b"})
	var perr *publish.Error
	if !errors.As(err, &perr) || perr.Code != publish.CodeRateLimited || perr.RetryAfter < time.Second || !perr.Retryable() {
		t.Fatalf("over the limit without retries: %v (%+v)", err, perr)
	}

	c := newClient(t, ts)
	start := time.Now()
	if _, err := c.Notify(ctx, publish.Notification{UserID: "a", Title: "3", Body: "b"}); err != nil {
		t.Fatalf("with retries: %v", err)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Fatalf("succeeded after %s: Retry-After (1s) was not honoured", waited)
	}
	keys := ts.recorded("/api/ws/push/notification")
	last := keys[len(keys)-1].IdempotencyKey
	if len(keys) < 4 || keys[len(keys)-2].IdempotencyKey != last {
		t.Fatalf("the retry did not reuse the publish's idempotency key: %+v", keys)
	}

	// A server asking for a longer wait than WithBackoff's maximum is not
	// waited for.
	impatient := newClient(t, ts, publish.WithBackoff(time.Millisecond, 10*time.Millisecond))
	_, _ = impatient.Notify(ctx, publish.Notification{UserID: "a", Title: "4", Body: "b"})
	start = time.Now()
	_, err = impatient.Notify(ctx, publish.Notification{UserID: "a", Title: "5", Body: "b"})
	if !errors.As(err, &perr) || perr.Code != publish.CodeRateLimited || perr.Attempts != 1 || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("Retry-After beyond the maximum wait: %v after %s", err, time.Since(start))
	}
}

// TestUnavailableIsRetried: while the store fails, publishes answer 503;
// the client retries with the same key and the message is stored once.
func TestUnavailableIsRetried(t *testing.T) {
	ts := startServer(t, func(o *api.Options) { o.RetryAfter = time.Second })
	ctx := ctxT(t)
	c := newClient(t, ts)
	ts.store.failAppends.Store(2)
	res, err := c.Notify(ctx, publish.Notification{UserID: "bob", Title: "t", Body: "b"})
	if err != nil {
		t.Fatalf("after two 503s: %v", err)
	}
	reqs := ts.recorded("/api/ws/push/notification")
	if len(reqs) != 3 || reqs[0].IdempotencyKey == "" || reqs[1].IdempotencyKey != reqs[0].IdempotencyKey || reqs[2].IdempotencyKey != reqs[0].IdempotencyKey {
		t.Fatalf("requests %+v: want 3 with one key", reqs)
	}
	if ts.store.appends.Load() != 1 || res.ID == "" {
		t.Fatalf("stored %d times (id %q), want once", ts.store.appends.Load(), res.ID)
	}

	// Bounded: an outage longer than the retries gives up with the code.
	ts.store.failAppends.Store(100)
	c2 := newClient(t, ts, publish.WithRetries(2))
	_, err = c2.Notify(ctx, publish.Notification{UserID: "bob", Title: "t", Body: "b"})
	var perr *publish.Error
	if !errors.As(err, &perr) || perr.Code != publish.CodeUnavailable || perr.Attempts != 3 {
		t.Fatalf("long outage: %v (%+v), want unavailable after 3 attempts", err, perr)
	}
	// A new publish gets a new key.
	reqs = ts.recorded("/api/ws/push/notification")
	if reqs[len(reqs)-1].IdempotencyKey == reqs[0].IdempotencyKey {
		t.Fatal("two publishes shared an idempotency key")
	}
}

// TestContextEndsTheRetryWait: a caller's deadline is not overrun by a
// Retry-After wait.
func TestContextEndsTheRetryWait(t *testing.T) {
	ts := startServer(t, func(o *api.Options) { o.RetryAfter = 5 * time.Second })
	ts.store.failAppends.Store(100)
	c := newClient(t, ts, publish.WithBackoff(10*time.Millisecond, 10*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Notify(ctx, publish.Notification{UserID: "bob", Title: "t", Body: "b"})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("got %v after %s, want the deadline within ~300ms", err, time.Since(start))
	}
}

// TestNetworkFailureIsRetriedWithTheSameKey: a connection closed without an
// answer is retried, with the publish's key.
func TestNetworkFailureIsRetriedWithTheSameKey(t *testing.T) {
	ts := startServer(t, nil)
	ts.dropNext.Store(1)
	c := newClient(t, ts)
	if _, err := c.Dashboard(ctxT(t), publish.DashboardUpdate{UserID: "u", WidgetID: "w", Data: 1}); err != nil {
		t.Fatal(err)
	}
	reqs := ts.recorded("/api/ws/push/dashboard")
	if len(reqs) != 2 || reqs[0].IdempotencyKey != reqs[1].IdempotencyKey || ts.store.appends.Load() != 1 {
		t.Fatalf("requests %+v, %d appends", reqs, ts.store.appends.Load())
	}
}

func TestBatch(t *testing.T) {
	ts := startServer(t, nil)
	c := newClient(t, ts)
	ctx := ctxT(t)
	tok, err := c.Connect(ctx, "dora")
	if err != nil {
		t.Fatal(err)
	}
	events := subscribe(t, tok.SSEURL, tok.Token)
	msgs := []publish.Message{
		publish.Notification{UserID: "dora", Title: "a", Body: "b"},
		publish.DashboardUpdate{UserID: "dora", WidgetID: "w", Data: []int{1, 2}},
		publish.DataChange{UserID: "dora", TableID: "t", RowID: "r", Action: publish.Delete},
		publish.AuditLog{UserID: "dora", Entry: "logged in"},
		publish.Broadcast{Title: "x", Body: "y"},
	}
	res, err := c.Batch(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []string{"notification", "dashboard_update", "data_change", "audit_log", "notification"}
	for i, r := range res {
		e := next(t, events)
		if e.ID != r.ID || e.Type != wantTypes[i] {
			t.Fatalf("message %d: event %s %s, want %s %s", i, e.ID, e.Type, r.ID, wantTypes[i])
		}
	}
	if b := ts.recorded("/api/ws/push/batch"); len(b) != 1 || b[0].IdempotencyKey == "" {
		t.Fatalf("batch requests %+v", b)
	}

	_, err = c.Batch(ctx, []publish.Message{msgs[0], publish.Notification{UserID: "dora", Body: "no title"}})
	var perr *publish.Error
	if !errors.As(err, &perr) || perr.Code != publish.CodeBadRequest || !strings.HasPrefix(perr.Message, "messages[1]") {
		t.Fatalf("invalid item: %v", err)
	}
}

// TestBatcherGroupsPublishes: concurrent single publishes go out as a few
// batch requests, and every caller gets its own message's id.
func TestBatcherGroupsPublishes(t *testing.T) {
	ts := startServer(t, nil)
	c := newClient(t, ts)
	b, err := c.NewBatcher(publish.BatcherOptions{MaxSize: 100, MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	tok, err := c.Connect(ctx, "erin")
	if err != nil {
		t.Fatal(err)
	}
	events := subscribe(t, tok.SSEURL, tok.Token)
	const n = 500
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			r, err := b.Publish(ctx, publish.Notification{UserID: "erin", Title: fmt.Sprint(i), Body: "b"})
			if err != nil {
				errs <- err
				return
			}
			ids[i] = r.ID
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := map[string]string{} // id -> title
	for range n {
		e := next(t, events)
		var p struct{ Title string }
		_ = json.Unmarshal(e.Payload, &p)
		got[e.ID] = p.Title
	}
	for i, id := range ids {
		if got[id] != fmt.Sprint(i) {
			t.Fatalf("publish %d got id %s, which the stream carries for %q", i, id, got[id])
		}
	}
	batches := len(ts.recorded("/api/ws/push/batch"))
	if batches < n/100 || batches > n/10 {
		t.Fatalf("%d batch requests for %d publishes of at most 100", batches, n)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, publish.Notification{UserID: "erin", Title: "t", Body: "b"}); !errors.Is(err, publish.ErrBatcherClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestBatcherRejectsOnlyTheBadMessage: an invalid message fails its own
// caller; the others in its batch are stored.
func TestBatcherRejectsOnlyTheBadMessage(t *testing.T) {
	ts := startServer(t, nil)
	c := newClient(t, ts)
	b, err := c.NewBatcher(publish.BatcherOptions{MaxSize: 10, MaxDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	results := make([]error, 10)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			title := "ok"
			if i%4 == 3 {
				title = "" // invalid
			}
			_, results[i] = b.Publish(ctx, publish.Notification{UserID: "fred", Title: title, Body: "b"})
		})
	}
	wg.Wait()
	for i, err := range results {
		var perr *publish.Error
		switch {
		case i%4 == 3 && (!errors.As(err, &perr) || perr.Code != publish.CodeBadRequest || strings.Contains(perr.Message, "messages[")):
			t.Errorf("invalid message %d: %v", i, err)
		case i%4 != 3 && err != nil:
			t.Errorf("valid message %d: %v", i, err)
		}
	}
	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.QueueStats.PendingMessages != 8 {
		t.Fatalf("pending messages %d, want the 8 valid ones", st.QueueStats.PendingMessages)
	}
	_ = b.Close(ctx)
	if _, err := c.NewBatcher(publish.BatcherOptions{MaxSize: 1001}); err == nil {
		t.Fatal("MaxSize over 1000 accepted")
	}
}

// TestAdminCalls: Stats, Connections and Disconnect on a live connection.
func TestAdminCalls(t *testing.T) {
	ts := startServer(t, nil)
	c := newClient(t, ts)
	ctx := ctxT(t)
	tok, err := c.Connect(ctx, "user with space")
	if err != nil {
		t.Fatal(err)
	}
	events := subscribe(t, tok.SSEURL, tok.Token)
	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalConnections != 1 || st.UniqueUsers != 1 || st.Transports["sse"] != 1 {
		t.Fatalf("stats %+v", st)
	}
	conns, err := c.Connections(ctx, "user with space")
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 1 || conns[0].Transport != "sse" || conns[0].ID == "" || conns[0].RemoteAddr == "" || time.Since(time.UnixMilli(conns[0].ConnectedAt)) > time.Minute {
		t.Fatalf("connections %+v", conns)
	}
	n, err := c.Disconnect(ctx, "user with space", "maintenance")
	if err != nil || n != 1 {
		t.Fatalf("Disconnect = %d, %v", n, err)
	}
	if e := next(t, events); e.Type != "disconnect" || !strings.Contains(string(e.Payload), "maintenance") {
		t.Fatalf("event %s %s", e.Type, e.Payload)
	}
	if n, err := c.Disconnect(ctx, "nobody", ""); err != nil || n != 0 {
		t.Fatalf("Disconnect(nobody) = %d, %v", n, err)
	}
}

// TestImportsNothingOfTheServer keeps the package usable on its own: no
// non-test file may import another package of this module.
func TestImportsNothingOfTheServer(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			if strings.HasPrefix(strings.Trim(imp.Path.Value, `"`), "github.com/pushd/pushd/") {
				t.Errorf("%s imports %s", f, imp.Path.Value)
			}
		}
	}
}
