package browsertest

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestAdminConsole signs in to /admin with the API key, watches the live
// view count a user's SSE and WebSocket connections, looks the user up,
// disconnects them (the count drops, their streams get the reason), sends
// a test push and sees it, and a REST push, appear in the live tail. The
// key stays in sessionStorage, never in a URL. Its screenshot is saved as
// an artifact.
func TestAdminConsole(t *testing.T) {
	p := startPushd(t)
	b := newBrowser(t)
	const user = "kick-me"

	// Two connections of the user: SSE and WebSocket, from Go.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.URL()+"/sse?access_token="+url.QueryEscape(p.token(user)), nil)
	sse, err := http.DefaultClient.Do(req)
	if err != nil || sse.StatusCode != 200 {
		t.Fatalf("SSE: %v %v", err, sse)
	}
	defer sse.Body.Close()
	sseDisconnect := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(sse.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") && strings.Contains(sc.Text(), `"type":"disconnect"`) {
				sseDisconnect <- sc.Text()
				return
			}
		}
	}()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/ws?access_token="+url.QueryEscape(p.token(user)), nil)
	if err != nil {
		t.Fatalf("WebSocket: %v", err)
	}
	defer ws.Close()
	wsClosed := make(chan int, 1)
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				code := 0
				if ce, ok := err.(*websocket.CloseError); ok {
					code = ce.Code
				}
				wsClosed <- code
				return
			}
		}
	}()

	tb := openTab(t, b, "admin", p.URL()+"/admin")
	tb.waitFor("the sign-in form", "!document.getElementById('login').hidden", "document.body.innerText", wait)
	// A wrong key is refused and not kept.
	tb.mustEval(`(() => { document.getElementById('api-key').value = 'wrong'; document.getElementById('login-form').requestSubmit(); return true; })()`, nil)
	tb.waitFor("the refusal", "document.getElementById('login-error').textContent.includes('refused')", "document.body.innerText", wait)
	if got := tb.str("String(sessionStorage.getItem('pushd.admin.apiKey'))"); got != "null" {
		t.Fatalf("a refused key was kept: %q", got)
	}
	tb.mustEval(`(() => { document.getElementById('api-key').value = `+jsString(p.apiKey)+`; document.getElementById('login-form').requestSubmit(); return true; })()`, nil)
	tb.waitFor("the console", "!document.getElementById('console').hidden", "document.body.innerText", wait)
	if got := tb.str("sessionStorage.getItem('pushd.admin.apiKey')"); got != p.apiKey {
		t.Fatalf("sessionStorage holds %q, want the API key", got)
	}

	tb.waitFor("the live view", `document.getElementById('stat-connections').textContent === '2' &&
		document.getElementById('stat-sse').textContent === '1' && document.getElementById('stat-ws').textContent === '1' &&
		document.getElementById('stat-users').textContent === '1'`, "document.querySelector('.stats').innerText", wait)
	tb.waitFor("the tail", "document.getElementById('tail-status').textContent === 'open'", "document.getElementById('tail-status').textContent", wait)

	// Look the user up.
	tb.mustEval(`(() => { document.getElementById('lookup-user').value = `+jsString(user)+`; document.getElementById('lookup-form').requestSubmit(); return true; })()`, nil)
	tb.waitFor("two connections", "document.querySelectorAll('#conn-table tbody tr').length === 2", "document.getElementById('conn-table').innerText", wait)
	rows := tb.str(`document.getElementById('conn-table').innerText`)
	for _, want := range []string{"sse", "ws", "127.0.0.1", "Go-http-client"} {
		if !strings.Contains(rows, want) {
			t.Errorf("connection rows lack %q:\n%s", want, rows)
		}
	}

	// A test push from the console, and one over REST, appear in the tail.
	tb.mustEval(`(() => { document.getElementById('push-user').value = `+jsString(user)+`;
		document.getElementById('push-title').value = 'Console push'; document.getElementById('push-form').requestSubmit(); return true; })()`, nil)
	tb.waitFor("the console push stored", "document.getElementById('push-result').textContent.startsWith('stored as ')", "document.getElementById('push-result').textContent", wait)
	consoleID := strings.TrimPrefix(tb.str("document.getElementById('push-result').textContent"), "stored as ")
	restID := p.notify("someone-else", "Pushed over REST")
	for _, id := range []string{consoleID, restID} {
		tb.waitFor("message "+id+" in the tail", `document.querySelector('#tail-list tr[data-id="`+id+`"]') !== null`, "document.getElementById('tail-list').innerText", wait)
	}
	if row := tb.str(`document.querySelector('#tail-list tr[data-id="` + restID + `"]').innerText`); !strings.Contains(row, "Pushed over REST") || !strings.Contains(row, "someone-else") {
		t.Errorf("tail row for the REST push: %q", row)
	}
	tb.waitFor("a published rate", "Number(document.getElementById('chart-published-now').textContent.split(' ')[0]) > 0 || document.querySelector('#chart-published polyline')?.getAttribute('points').length > 0", "document.getElementById('chart-published-now').textContent", wait)

	// The screenshot shows the user's connections and the tail.
	tb.saveScreenshot("pushd-admin.png")

	// Kick the user: the count drops and both streams end with the reason.
	tb.mustEval(`(() => { document.getElementById('disconnect-reason').value = 'kicked by the test'; document.getElementById('disconnect-form').requestSubmit(); return true; })()`, nil)
	tb.waitFor("the disconnect answer", "document.getElementById('lookup-summary').textContent.includes('2 connections ended')", "document.getElementById('lookup-summary').textContent", wait)
	tb.waitFor("no connections left", "document.querySelectorAll('#conn-table tbody tr').length === 0 && document.getElementById('lookup-summary').textContent.includes('0 connections')", "document.getElementById('lookup-summary').textContent", wait)
	tb.waitFor("the count drops", "document.getElementById('stat-connections').textContent === '0'", "document.querySelector('.stats').innerText", wait)
	select {
	case line := <-sseDisconnect:
		if !strings.Contains(line, "kicked by the test") {
			t.Errorf("SSE disconnect event %q lacks the reason", line)
		}
	case <-time.After(wait):
		t.Error("the SSE stream got no disconnect event")
	}
	select {
	case code := <-wsClosed:
		if code != 4000 {
			t.Errorf("WebSocket closed with %d, want 4000", code)
		}
	case <-time.After(wait):
		t.Error("the WebSocket was not closed")
	}

	// The key never went into a URL: every request the page made is
	// same-origin and carries no key in its address.
	urls := tb.str(`performance.getEntriesByType('resource').map(e => e.name).concat([location.href]).join('\n')`)
	if strings.Contains(urls, p.apiKey) {
		t.Errorf("the API key appears in a URL:\n%s", urls)
	}
	for _, u := range strings.Split(urls, "\n") {
		if u != "" && !strings.HasPrefix(u, p.URL()+"/") {
			t.Errorf("the console loaded %s from elsewhere", u)
		}
	}

	// Signing out forgets the key.
	tb.mustEval(`(() => { document.getElementById('logout').click(); return true; })()`, nil)
	tb.waitFor("signed out", "!document.getElementById('login').hidden && sessionStorage.getItem('pushd.admin.apiKey') === null", "document.body.innerText", wait)
}
