package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser is the headless Chromium shared by all tests of the package. Each
// test talks to its own pushd (and front server) on its own port, so its pages
// have their own origin: BroadcastChannels, Web Locks and storage do not leak
// between tests.
var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel func()
	dir    string
	err    error
}

// newBrowser returns the context of the shared browser, starting it on first
// use with a fresh profile; tabs are opened from it with openTab.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	needBrowser(t)
	browser.once.Do(startBrowser)
	if browser.err != nil {
		t.Fatalf("start chromium %s: %v", chromePath, browser.err)
	}
	return browser.ctx
}

func startBrowser() {
	dir, err := os.MkdirTemp("", "pushd-chromium-")
	if err != nil {
		browser.err = err
		return
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromePath),
		chromedp.UserDataDir(dir),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Tabs in the background must keep their timers (watchdogs, backoff).
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	browser.ctx, browser.dir = bctx, dir
	browser.cancel = func() {
		cancelBrowser()
		cancelAlloc()
		os.RemoveAll(dir)
	}
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		browser.err = err
	}
}

// closeBrowser stops the shared browser, if one was started.
func closeBrowser() {
	if browser.cancel != nil {
		browser.cancel()
	}
}

// tab is one browser tab.
type tab struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	logs   *syncBuffer
	closed bool
}

// openTab opens url in a new tab of the browser. The page's console output and
// uncaught exceptions are printed if the test fails.
func openTab(t *testing.T, browser context.Context, name, url string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	tb := &tab{t: t, name: name, ctx: ctx, cancel: cancel, logs: &syncBuffer{}}
	if err := chromedp.Do(ctx); err != nil { // opens the tab
		cancel()
		t.Fatalf("tab %s: %v", name, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			fmt.Fprintf(tb.logs, "%s %s: %s\n", m.Time.Format("15:04:05.000"), m.Type, m.Text)
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		cancel()
		t.Fatalf("tab %s: navigate %s: %v", name, url, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if out := tb.logs.String(); out != "" {
				t.Logf("tab %s console:\n%s", name, tail(out, 80))
			}
		}
		tb.close()
	})
	return tb
}

// close closes the tab (the page goes away as when a user closes it).
func (tb *tab) close() {
	if tb.closed {
		return
	}
	tb.closed = true
	tb.cancel()
}

// evalJSON evaluates a JavaScript expression (awaiting a promise) and returns
// its JSON encoding.
func (tb *tab) evalJSON(expr string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
}

// eval evaluates a JavaScript expression into out (nil: ignore the value).
func (tb *tab) eval(expr string, out any) error {
	raw, err := tb.evalJSON(expr)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

func (tb *tab) mustEval(expr string, out any) {
	tb.t.Helper()
	if err := tb.eval(expr, out); err != nil {
		tb.t.Fatalf("tab %s: %s: %v", tb.name, expr, err)
	}
}

// waitFor polls the boolean expression until it is true or timeout passes.
// On timeout it fails the test, printing debug (a JS expression) if not empty.
func (tb *tab) waitFor(what, expr, debug string, timeout time.Duration) {
	tb.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		var ok bool
		lastErr = tb.eval("(() => { try { return !!("+expr+"); } catch (e) { return false; } })()", &ok)
		if lastErr == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	state := ""
	if debug != "" {
		var s string
		if err := tb.eval(debug, &s); err == nil {
			state = "\nstate: " + s
		} else {
			state = "\nstate: " + err.Error()
		}
	}
	tb.t.Fatalf("tab %s: timed out after %s waiting for %s (%s; eval error %v)%s", tb.name, timeout, what, expr, lastErr, state)
}

// startClient waits for the harness page and starts a PushClient in it.
func (tb *tab) startClient(opts map[string]any) {
	tb.t.Helper()
	tb.waitFor("the harness page", "window.H && window.H.ready", "", 15*time.Second)
	b, err := json.Marshal(opts)
	if err != nil {
		tb.t.Fatal(err)
	}
	tb.mustEval("window.startClient("+string(b)+")", nil)
}

// notes returns the titles of the notifications the harness client received.
func (tb *tab) notes() []string {
	tb.t.Helper()
	var out []string
	tb.mustEval("H.notes()", &out)
	return out
}

func (tb *tab) str(expr string) string {
	tb.t.Helper()
	var s string
	tb.mustEval("String("+expr+")", &s)
	return s
}

const summary = "H.summary()"

// clientOpts returns PushClient options with test-friendly timings.
func clientOpts(token, transport string, extra map[string]any) map[string]any {
	o := map[string]any{
		"token":              token,
		"transport":          transport,
		"reconnectBaseDelay": 200,
		"reconnectMaxDelay":  1000,
		"heartbeatTimeout":   3000, // generous: the machine may be loaded
		"connectTimeout":     5000,
		"debug":              true,
	}
	for k, v := range extra {
		o[k] = v
	}
	return o
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// saveScreenshot writes a full-page PNG of the tab as name under
// $PUSH_ARTIFACTS_DIR (default: the temp dir).
func (tb *tab) saveScreenshot(name string) {
	tb.t.Helper()
	png, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("screenshot: %v", err)
	}
	if !strings.HasPrefix(string(png), "\x89PNG") {
		tb.t.Errorf("screenshot is not a PNG")
	}
	dir := os.Getenv("PUSH_ARTIFACTS_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot: %s (%d bytes)", path, len(png))
}
