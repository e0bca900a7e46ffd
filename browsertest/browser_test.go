package browsertest

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const wait = 20 * time.Second

// The client connects (SSE under 'auto' and 'sse', WebSocket under 'ws') and a
// push made through the REST API appears in the page, with its id as the
// client's resume point.
func TestConnectAndReceive(t *testing.T) {
	p := startPushd(t)
	b := newBrowser(t)
	for _, c := range []struct{ name, transport, wsAuth, want string }{
		{"auto", "auto", "", "sse"},
		{"sse", "sse", "", "sse"},
		{"ws", "ws", "message", "ws"},     // token in the first frame
		{"ws-query", "ws", "query", "ws"}, // token as access_token
	} {
		t.Run(c.name, func(t *testing.T) {
			user := "recv-" + c.name
			f := newFront(t, p)
			tb := openTab(t, b, user, f.URL()+"/__test/harness.html")
			tb.startClient(clientOpts(p.token(user), c.transport, map[string]any{"wsAuth": c.wsAuth}))
			tb.waitFor("an open stream over "+c.want, fmt.Sprintf("client.status === 'open' && client.transport === %q", c.want), summary, wait)
			id := p.notify(user, "hello")
			tb.waitFor("the pushed notification", "H.notes().includes('hello')", summary, wait)
			for _, r := range f.log() {
				if strings.HasPrefix(r, "/ws") && strings.Contains(r, "access_token=") != (c.wsAuth == "query") {
					t.Errorf("wsAuth %q: WebSocket request %s", c.wsAuth, r)
				}
			}
			if got := tb.str("client.lastEventId"); got != id {
				t.Errorf("lastEventId = %q, want the push's id %q", got, id)
			}
			conns := p.connections(user)
			if len(conns) != 1 || conns[0]["transport"] != c.want {
				t.Errorf("server sees connections %v, want one over %s", conns, c.want)
			}
		})
	}
}

// With /sse broken by a proxy, 'auto' falls back to WebSocket and still receives.
func TestFallbackToWebSocket(t *testing.T) {
	p := startPushd(t)
	b := newBrowser(t)
	for _, mode := range []string{"502", "hang"} {
		t.Run("sse-"+mode, func(t *testing.T) {
			f := newFront(t, p)
			f.setSSEMode(mode)
			user := "fallback-" + mode
			tb := openTab(t, b, user, f.URL()+"/__test/harness.html")
			tb.startClient(clientOpts(p.token(user), "auto", map[string]any{"connectTimeout": 2500}))
			tb.waitFor("an open WebSocket stream", "client.status === 'open' && client.transport === 'ws'", summary, wait)
			if f.count("/sse") == 0 {
				t.Errorf("the client never tried SSE first; requests: %v", f.log())
			}
			p.notify(user, "via-ws")
			tb.waitFor("the notification over WebSocket", "H.notes().includes('via-ws')", summary, wait)
			if mode != "502" {
				return
			}
			// Once /sse works again, the next reconnection goes back to SSE.
			// WebSocket stays refused meanwhile: an attempt whose SSE meets
			// the restart's gap would otherwise fall back to it the moment
			// pushd is back.
			f.setSSEMode("")
			f.setWSDown(true)
			p.restart()
			tb.waitFor("SSE again after a reconnection", "client.status === 'open' && client.transport === 'sse'", summary, wait)
			f.setWSDown(false)
			p.notify(user, "via-sse")
			tb.waitFor("the notification over SSE", "H.notes().includes('via-sse')", summary, wait)
		})
	}
}

// pushd restarts: the client reconnects with backoff and either resumes without
// loss (PostgreSQL store) or is told to reload its state (memory store).
func TestServerRestart(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		p := startPushd(t)
		f := newFront(t, p)
		b := newBrowser(t)
		tb := openTab(t, b, "restart-mem", f.URL()+"/__test/harness.html")
		tb.startClient(clientOpts(p.token("rm"), "auto", map[string]any{"reconnectMaxAttempts": 30}))
		tb.waitFor("an open stream", "client.status === 'open'", summary, wait)
		p.notify("rm", "before")
		tb.waitFor("the first notification", "H.notes().includes('before')", summary, wait)

		p.restart()
		tb.waitFor("a reset after the restart", "H.resets.length > 0 && client.status === 'open'", summary, wait)
		if tb.str("H.statuses.some(s => s.status === 'reconnecting')") != "true" {
			t.Errorf("no 'reconnecting' status was reported: %s", tb.str(summary))
		}
		if r := tb.str("H.resets[0].reason"); r != "unknown_id" {
			t.Errorf("reset reason = %q, want unknown_id (the memory store's history is gone)", r)
		}
		p.notify("rm", "after")
		tb.waitFor("a push after the restart", "H.notes().includes('after')", summary, wait)
	})

	t.Run("postgres", func(t *testing.T) {
		dbURL, ok := testDatabase(t)
		if !ok {
			t.Skip("PUSH_TEST_DATABASE_URL not set: skipping the PostgreSQL restart test (.ci/run sets it)")
		}
		p := startPushd(t, "--database-url", dbURL)
		f := newFront(t, p)
		b := newBrowser(t)
		tb := openTab(t, b, "restart-pg", f.URL()+"/__test/harness.html")
		tb.startClient(clientOpts(p.token("rp"), "auto", map[string]any{"reconnectMaxAttempts": 50}))
		tb.waitFor("an open stream", "client.status === 'open'", summary, wait)
		first := p.notify("rp", "pg-1")
		tb.waitFor("the first notification", "H.notes().includes('pg-1')", summary, wait)

		// Keep the client away while pushd restarts and messages are
		// published, so it can only get them by resuming.
		f.setDown(true)
		p.restart()
		tb.waitFor("the client to notice", "client.status === 'reconnecting'", summary, wait)
		for i := 2; i <= 5; i++ {
			p.notify("rp", fmt.Sprintf("pg-%d", i))
		}
		before := len(f.log())
		f.setDown(false)
		tb.waitFor("the messages published while away", "H.notes().includes('pg-5') && client.status === 'open'", summary, wait)
		want := []string{"pg-1", "pg-2", "pg-3", "pg-4", "pg-5"}
		if got := tb.notes(); !slices.Equal(got, want) {
			t.Errorf("notifications = %v, want %v exactly once each, in order", got, want)
		}
		if n := tb.str("H.resets.length"); n != "0" {
			t.Errorf("got %s reset events; nothing was lost, so none is due: %s", n, tb.str(summary))
		}
		resumed := false
		for _, r := range f.log()[before:] {
			if u, err := url.Parse(r); err == nil && u.Query().Get("lastEventId") == first {
				resumed = true
			}
		}
		if !resumed {
			t.Errorf("no reconnection carried lastEventId=%s; requests: %v", first, f.log()[before:])
		}
	})
}

// A server-side disconnect stops the client for good.
func TestDisconnectStopsReconnecting(t *testing.T) {
	p := startPushd(t)
	f := newFront(t, p)
	b := newBrowser(t)
	for _, transport := range []string{"sse", "ws"} {
		t.Run(transport, func(t *testing.T) {
			user := "bye-" + transport
			tb := openTab(t, b, user, f.URL()+"/__test/harness.html")
			tb.startClient(clientOpts(p.token(user), transport, nil))
			tb.waitFor("an open stream", "client.status === 'open'", summary, wait)
			p.mustCall("POST", "/api/ws/disconnect/"+user, map[string]any{"reason": "maintenance"})
			tb.waitFor("the disconnect event and status closed", "H.disconnects.length === 1 && client.status === 'closed'", summary, wait)
			if r := tb.str("H.disconnects[0].reason"); r != "maintenance" {
				t.Errorf("disconnect reason = %q, want maintenance", r)
			}
			before := f.count("/" + transport)
			time.Sleep(3 * time.Second) // several backoff periods (base 200 ms)
			if after := f.count("/" + transport); after != before {
				t.Errorf("the client reconnected after a disconnect: %d new requests", after-before)
			}
			if st := tb.str("client.status"); st != "closed" {
				t.Errorf("status = %s, want closed", st)
			}
			if conns := p.connections(user); len(conns) != 0 {
				t.Errorf("server still has connections %v", conns)
			}
		})
	}
}

// A stream that stays open but stops delivering (no heartbeats) is detected
// and replaced, and the replacement resumes what the dead one swallowed.
func TestHeartbeatWatchdog(t *testing.T) {
	p := startPushd(t)
	f := newFront(t, p)
	b := newBrowser(t)
	tb := openTab(t, b, "watchdog", f.URL()+"/__test/harness.html")
	tb.startClient(clientOpts(p.token("wd"), "sse", map[string]any{"heartbeatTimeout": 1000}))
	tb.waitFor("an open stream", "client.status === 'open'", summary, wait)
	p.notify("wd", "live-1")
	tb.waitFor("the first notification", "H.notes().includes('live-1')", summary, wait)
	first := tb.str("client.connectionId")

	f.freezeSSE()
	p.notify("wd", "swallowed")
	tb.waitFor("a replacement stream", "client.status === 'open' && client.connectionId !== "+jsString(first), summary, wait)
	if tb.str("H.statuses.some(s => s.reason === 'heartbeat_timeout')") != "true" {
		t.Errorf("the replacement was not caused by the heartbeat watchdog: %s", tb.str(summary))
	}
	tb.waitFor("the message sent to the dead stream", "H.notes().includes('swallowed')", summary, wait)
	p.notify("wd", "live-2")
	tb.waitFor("a push on the new stream", "H.notes().includes('live-2')", summary, wait)
	if got, want := tb.notes(), []string{"live-1", "swallowed", "live-2"}; !slices.Equal(got, want) {
		t.Errorf("notifications = %v, want %v", got, want)
	}
}

// Eight tabs of one user share one stream; every tab receives every push;
// closing the leading tab hands the stream over without loss or duplicates.
func TestEightTabsShareOneStream(t *testing.T) {
	p := startPushd(t)
	b := newBrowser(t)
	t.Run("web-locks", func(t *testing.T) { testTabsShareOneStream(t, p, b, 8, "tabs-locks", nil) })
	// Browsers without navigator.locks elect the leader over the BroadcastChannel.
	t.Run("election", func(t *testing.T) {
		testTabsShareOneStream(t, p, b, 4, "tabs-election", map[string]any{"noWebLocks": true})
	})
}

func testTabsShareOneStream(t *testing.T, p *pushd, b context.Context, n int, user string, extra map[string]any) {
	f := newFront(t, p)
	tok := p.token(user)
	var tabs []*tab
	for i := range n {
		tb := openTab(t, b, fmt.Sprintf("tab%d", i), f.URL()+"/__test/harness.html")
		tb.startClient(clientOpts(tok, "auto", extra))
		tabs = append(tabs, tb)
	}
	for _, tb := range tabs {
		tb.waitFor("status open (own stream or shared)", "client.status === 'open'", summary, wait)
		if extra["noWebLocks"] == true && tb.str("navigator.locks === undefined") != "true" {
			t.Fatal("navigator.locks is still there: the election fallback is not exercised")
		}
	}
	waitConns := func(want int) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for {
			conns := p.connections(user)
			if len(conns) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("server sees %d connections for the user, want %d: %v", len(conns), want, conns)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitConns(1)
	if got := f.count("/sse") + f.count("/ws"); got != 1 {
		t.Errorf("%d tabs made %d stream requests, want 1: %v", n, got, f.log())
	}

	var want []string
	for i := 1; i <= 5; i++ {
		title := fmt.Sprintf("m%02d", i)
		p.notify(user, title)
		want = append(want, title)
	}
	leader := -1
	for i, tb := range tabs {
		tb.waitFor("the first five pushes", "H.notes().length >= 5", summary, wait)
		if got := tb.notes(); !slices.Equal(got, want) {
			t.Errorf("tab %d got %v, want %v", i, got, want)
		}
		if tb.str("client.isLeader") == "true" {
			if leader >= 0 {
				t.Errorf("tabs %d and %d both lead", leader, i)
			}
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no tab leads")
	}

	// Publish continuously while the leading tab is closed.
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 6; i <= 30; i++ {
			if err := notifyNoFatal(p, user, fmt.Sprintf("m%02d", i)); err != nil {
				errs <- err
				return
			}
			time.Sleep(40 * time.Millisecond)
		}
	}()
	for i := 6; i <= 30; i++ {
		want = append(want, fmt.Sprintf("m%02d", i))
	}
	time.Sleep(300 * time.Millisecond)
	tabs[leader].close()
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	newLeaders := 0
	for i, tb := range tabs {
		if i == leader {
			continue
		}
		tb.waitFor("all 30 pushes", "H.notes().length >= 30 && client.status === 'open'", summary, wait)
		if got := tb.notes(); !slices.Equal(got, want) {
			t.Errorf("tab %d after the handover got %v, want %v (no loss, no duplicate, in order)", i, got, want)
		}
		if tb.str("client.isLeader") == "true" {
			newLeaders++
		}
	}
	if newLeaders != 1 {
		t.Errorf("%d tabs lead after the handover, want 1", newLeaders)
	}
	waitConns(1)
}

func notifyNoFatal(p *pushd, user, title string) error {
	req := fmt.Sprintf(`{"userId":%s,"title":%s,"body":"b"}`, jsString(user), jsString(title))
	res, err := httpPost(p, "/api/ws/push/notification", req)
	if err != nil {
		return err
	}
	if res/100 != 2 {
		return fmt.Errorf("push %s: status %d", title, res)
	}
	return nil
}

// The React bindings render updates with a real React (18, UMD builds as an
// application would load them): PushProvider, usePush, useSubscription and
// useDashboardRealtime, whose autoRefreshInterval polls only while disconnected.
func TestReactHooks(t *testing.T) {
	p := startPushd(t)
	f := newFront(t, p)
	b := newBrowser(t)
	f.setDown(true) // start disconnected: onRefresh must be polled
	tb := openTab(t, b, "react", f.URL()+"/__test/react.html")
	tb.waitFor("the React page", "window.R && R.ready", "", wait)
	opts, _ := jsonString(clientOpts(p.token("react"), "auto", map[string]any{"reconnectMaxAttempts": 100, "connectTimeout": 3000}))
	tb.mustEval("window.mount("+opts+")", nil)
	tb.waitFor("a rendered status", "document.getElementById('status') !== null", "", wait)
	tb.waitFor("onRefresh polled while disconnected", "R.refreshes >= 3", "JSON.stringify(R)", wait)
	if s := tb.str("document.getElementById('connected').textContent"); s != "false" {
		t.Errorf("isConnected rendered %q while the server is unreachable", s)
	}

	// SSE first: an attempt whose SSE failed just before this falls back
	// to WebSocket, which must then fail too, so the client ends on SSE.
	f.setWSDown(true)
	f.setDown(false)
	tb.waitFor("status open rendered", "document.getElementById('status').textContent === 'open' && document.getElementById('dash-connected').textContent === 'true'", "document.body.innerText", wait)
	f.setWSDown(false)
	var r1, r2 int
	time.Sleep(300 * time.Millisecond) // let React flush the effect that stops the polling
	tb.mustEval("R.refreshes", &r1)
	time.Sleep(1 * time.Second)
	tb.mustEval("R.refreshes", &r2)
	if r2 > r1 {
		t.Errorf("onRefresh was polled %d more times while connected", r2-r1)
	}

	p.mustCall("POST", "/api/ws/push/dashboard", map[string]any{"userId": "react", "widgetId": "cpu", "data": map[string]any{"value": 73}})
	tb.waitFor("the widget value rendered", `document.querySelector('[data-widget="cpu"]')?.textContent === '73'`, "document.body.innerText", wait)
	p.mustCall("POST", "/api/ws/push/dashboard", map[string]any{"userId": "react", "widgetId": "cpu", "data": map[string]any{"value": 74}})
	tb.waitFor("the widget value updated", `document.querySelector('[data-widget="cpu"]')?.textContent === '74'`, "document.body.innerText", wait)
	p.notify("react", "react-toast")
	tb.waitFor("the notification rendered", "document.getElementById('toasts').textContent.includes('react-toast') && document.getElementById('last').textContent === 'notification'", "document.body.innerText", wait)
	if n := tb.str("document.querySelectorAll('#toasts li').length"); n != "1" {
		t.Errorf("the notification rendered %s times, want once (StrictMode must not double-subscribe)", n)
	}
	if s := tb.str("document.getElementById('transport').textContent"); s != "sse" {
		t.Errorf("transport rendered %q, want sse", s)
	}

	// The bare exports (React found on window) work too; this second client
	// in the same page shares the first one's stream.
	tb.mustEval("window.mountBare("+opts+")", nil)
	tb.waitFor("the bare-export provider's status", "document.getElementById('bare-status')?.textContent === 'open'", "document.body.innerText", wait)
}

// The backoff schedule and defaults are the seed's client config: base 1 s,
// max 30 s, 10 attempts, full jitter.
func TestBackoffDefaults(t *testing.T) {
	p := startPushd(t)
	f := newFront(t, p)
	b := newBrowser(t)
	tb := openTab(t, b, "backoff", f.URL()+"/__test/harness.html")
	tb.waitFor("the harness page", "window.H && window.H.ready", "", wait)
	var got struct {
		Defaults struct {
			ReconnectBaseDelay, ReconnectMaxDelay, ReconnectMaxAttempts, HeartbeatInterval, HeartbeatTimeout int
			Transport                                                                                        string
			MultiTab                                                                                         bool
		}
		Max []int
		Min []int
	}
	tb.mustEval(`import('/client.js').then(m => ({
		defaults: m.DEFAULT_OPTIONS,
		max: [1,2,3,4,5,6,7,8,9,10].map(n => m.backoffDelay(n, m.DEFAULT_OPTIONS.reconnectBaseDelay, m.DEFAULT_OPTIONS.reconnectMaxDelay, () => 0.9999999)),
		min: [1,5,10].map(n => m.backoffDelay(n, 1000, 30000, () => 0)),
	}))`, &got)
	d := got.Defaults
	if d.ReconnectBaseDelay != 1000 || d.ReconnectMaxDelay != 30000 || d.ReconnectMaxAttempts != 10 ||
		d.HeartbeatInterval != 30000 || d.HeartbeatTimeout != 10000 || d.Transport != "auto" || !d.MultiTab {
		t.Errorf("defaults = %+v", d)
	}
	want := []int{999, 1999, 3999, 7999, 15999, 29999, 29999, 29999, 29999, 29999}
	if !slices.Equal(got.Max, want) {
		t.Errorf("largest delays = %v, want %v", got.Max, want)
	}
	if !slices.Equal(got.Min, []int{0, 0, 0}) {
		t.Errorf("smallest delays = %v, want 0 (full jitter)", got.Min)
	}
}

// The demo dashboard at / shows a pushed widget value, a toast, a table row,
// an audit entry and live stats; its screenshot is saved as an artifact.
func TestDemoDashboard(t *testing.T) {
	p := startPushd(t)
	b := newBrowser(t)
	const user = "dash"
	frag := url.Values{"token": {p.token(user)}, "apiKey": {p.apiKey}, "user": {user}, "statsInterval": {"500"}}
	tb := openTab(t, b, "dashboard", p.URL()+"/#"+frag.Encode())
	tb.waitFor("status badge open", "document.getElementById('status').textContent === 'open'", "document.body.innerText", wait)
	if tr := tb.str("document.getElementById('transport').textContent"); tr != "sse" {
		t.Errorf("transport badge = %q, want sse", tr)
	}

	p.mustCall("POST", "/api/ws/push/dashboard", map[string]any{"userId": user, "widgetId": "cpu", "data": map[string]any{"value": 87}})
	tb.waitFor("the widget value", `document.querySelector('[data-widget="cpu"] .value').textContent === '87'`, "document.body.innerText", wait)
	p.notify(user, "Deploy finished")
	tb.waitFor("a toast", `[...document.querySelectorAll('.toast')].some(e => e.textContent.includes('Deploy finished'))`, "document.body.innerText", wait)
	p.mustCall("POST", "/api/ws/push/data-change", map[string]any{"userId": user, "tableId": "orders", "rowId": "42", "action": "create", "data": map[string]any{"status": "paid", "total": 99.5}})
	tb.waitFor("a table row", `document.querySelector('#table tr[data-key="orders/42"]')?.textContent.includes('paid')`, "document.body.innerText", wait)
	p.mustCall("POST", "/api/ws/push/audit-log", map[string]any{"userId": user, "entry": map[string]any{"message": "admin changed settings"}})
	tb.waitFor("an audit entry", `document.getElementById('audit').textContent.includes('admin changed settings')`, "document.body.innerText", wait)
	tb.waitFor("live stats", `Number(document.querySelector('[data-stat="totalConnections"]').textContent) >= 1 && Number(document.querySelector('[data-stat="sse"]').textContent) >= 1`, "document.body.innerText", wait)

	// The page's own form sends a push through the REST API.
	tb.mustEval(`(() => {
		const f = document.getElementById('push-form');
		f.kind.value = 'dashboard'; f.kind.dispatchEvent(new Event('change'));
		f.widgetId.value = 'memory'; f.value.value = '64';
		f.requestSubmit(); return true; })()`, nil)
	tb.waitFor("the form's push", `document.querySelector('[data-widget="memory"] .value').textContent === '64'`, "document.body.innerText", wait)
	for _, v := range []int{40, 55, 48, 71, 66, 90} {
		p.mustCall("POST", "/api/ws/push/dashboard", map[string]any{"userId": user, "widgetId": "requests", "data": map[string]any{"value": v}})
	}
	tb.waitFor("the last requests value", `document.querySelector('[data-widget="requests"] .value').textContent === '90'`, "document.body.innerText", wait)

	if w := tb.str("document.documentElement.scrollWidth > document.documentElement.clientWidth"); w != "false" {
		t.Errorf("the dashboard scrolls horizontally in a 1280 px window")
	}
	tb.saveScreenshot("pushd-dashboard.png")
}

// The token option may be a provider: it is asked again before each
// reconnection, so an expired token is replaced by a fresh one.
func TestTokenProviderRefreshesExpiredToken(t *testing.T) {
	p := startPushd(t)
	f := newFront(t, p)
	b := newBrowser(t)
	for _, transport := range []string{"sse", "ws"} {
		t.Run(transport, func(t *testing.T) {
			user := "refresh-" + transport
			expired := p.expiredToken(t, user)
			tb := openTab(t, b, user, f.URL()+"/__test/harness.html")
			tb.startClient(clientOpts("", transport, map[string]any{
				"tokens":   []string{expired, p.token(user)},
				"multiTab": false,
			}))
			tb.waitFor("an open stream with the second token", "client.status === 'open' && H.tokenCalls >= 2", summary, wait)
			if transport == "ws" && tb.str("H.errors.some(e => e.code === 'unauthorized')") != "true" {
				t.Errorf("close code 4001 was not reported as an unauthorized error: %s", tb.str(summary))
			}
			p.notify(user, "fresh")
			tb.waitFor("a push", "H.notes().includes('fresh')", summary, wait)
		})
	}
}

// With persistLastEventId the resume point survives a page reload
// (sessionStorage), so what was pushed during the reload is replayed.
func TestLastEventIdSurvivesReload(t *testing.T) {
	p := startPushd(t)
	f := newFront(t, p)
	b := newBrowser(t)
	const user = "reload"
	opts := clientOpts(p.token(user), "sse", map[string]any{"persistLastEventId": true})
	tb := openTab(t, b, user, f.URL()+"/__test/harness.html")
	tb.startClient(opts)
	tb.waitFor("an open stream", "client.status === 'open'", summary, wait)
	first := p.notify(user, "r1")
	tb.waitFor("the first push", "H.notes().includes('r1')", summary, wait)

	if err := chromedp.Do(tb.ctx, chromedp.Reload()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	p.notify(user, "r2")
	before := len(f.log())
	tb.startClient(opts)
	tb.waitFor("the push made during the reload", "H.notes().includes('r2')", summary, wait)
	reqs := f.log()[before:]
	if len(reqs) == 0 {
		t.Fatal("no stream request after the reload")
	}
	if u, err := url.Parse(reqs[0]); err != nil || u.Query().Get("lastEventId") != first {
		t.Errorf("first request after the reload = %s, want lastEventId=%s", reqs[0], first)
	}
	if got := tb.notes(); !slices.Equal(got, []string{"r2"}) {
		t.Errorf("after the reload the page got %v, want [r2]", got)
	}
}

// A newcomer who opens / without the printed link gets a connect form; the API
// key is enough: the page mints a token through POST /api/ws/connect.
func TestDemoDashboardConnectForm(t *testing.T) {
	p := startPushd(t)
	b := newBrowser(t)
	tb := openTab(t, b, "dashboard-setup", p.URL()+"/")
	tb.waitFor("the connect form", "!document.getElementById('setup').hidden && document.getElementById('app').hidden", "document.body.innerText", wait)
	tb.mustEval(`(() => {
		const f = document.getElementById('setup-form');
		f.apiKey.value = `+jsString(p.apiKey)+`; f.user.value = 'newcomer';
		f.requestSubmit(); return true; })()`, nil)
	tb.waitFor("status badge open", "document.getElementById('status').textContent === 'open'", "document.body.innerText", wait)
	p.mustCall("POST", "/api/ws/push/dashboard", map[string]any{"userId": "newcomer", "widgetId": "cpu", "data": 12})
	tb.waitFor("the widget value", `document.querySelector('[data-widget="cpu"] .value').textContent === '12'`, "document.body.innerText", wait)
}
