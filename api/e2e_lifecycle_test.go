package api_test

// Server lifecycle and configuration variants: graceful shutdown of the
// streams, --auth-required=false, --offline-enabled=false.

import (
	"context"
	"net/url"
	"strconv"
	"testing"
)

// TestE2EShutdownEndsStreams: on shutdown a WebSocket gets 1012 (reconnect
// and resume) and an SSE stream ends after a retry: hint spread over
// [0.75 s, 3 s], without a disconnect event (which would tell the client not
// to come back). Connections arriving afterwards are refused with 503 and
// Retry-After before any stream byte or upgrade.
func TestE2EShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	sse := h.openSSE("ari", "")
	expectConnected(t, sse, "ari", "sse")
	ws := h.openWS("ari", "")
	expectConnected(t, ws, "ari", "ws")
	id := h.notify("ari", "before shutdown")
	expectIDs(t, sse, id)
	expectIDs(t, ws, id)

	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	h.mgr.Shutdown(ctx)
	ws.expectClose(t, 1012)
	ev, ok := sse.NextRaw(t)
	if !ok || ev.HasData || ev.Retry == "" {
		t.Fatalf("SSE: want a retry-only event before the end, got %q (ok %v)", ev.Raw, ok)
	}
	if ms, err := strconv.Atoi(ev.Retry); err != nil || ms < 750 || ms > 3000 {
		t.Errorf("SSE shutdown retry: %q ms, want a jittered value in [750, 3000]", ev.Retry)
	}
	expectEnd(t, sse)

	req, cancelReq := h.sseRequest("access_token=" + url.QueryEscape(h.token("ari")))
	defer cancelReq()
	r := h.send(req)
	r.expectError(t, 503, "unavailable")
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("SSE refused during shutdown without Retry-After: %s", r)
	}
	_, resp, err := h.dialWS("access_token="+url.QueryEscape(h.token("ari")), nil)
	if err == nil || resp == nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("WS during shutdown: %v %v, want 503 with Retry-After before the upgrade", err, resp)
	}
}

// TestE2EAuthNotRequired: with AuthRequired off, a subscriber without a
// token names itself; a token that is present must still be valid.
func TestE2EAuthNotRequired(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Opts.AuthRequired = false })
	req, cancel := h.sseRequest("userId=bo")
	c := h.startSSE(req, cancel, "SSE(bo, no token)")
	c.expectPreamble(t, h.cfg.Opts.SSEPadding)
	expectConnected(t, c, "bo", "sse")
	id := h.notify("bo", "open mode")
	expectIDs(t, c, id)

	w := h.wsFrom(h.mustDialWS("userId=bo", nil), "WS(bo, no token)", true)
	expectConnected(t, w, "bo", "ws")

	for _, bt := range badTokens(t)[:3] {
		req, cancel := h.sseRequest("userId=bo&access_token=" + url.QueryEscape(bt.token))
		defer cancel()
		expectSSERefused(t, h, req, "auth not required, but a bad token <"+bt.name+">")
	}
}

// TestE2EOfflineDisabled: with offline storage off (MaxCount 0) live
// delivery still works, and nothing is kept for later.
func TestE2EOfflineDisabled(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Keep.MaxCount = 0 })
	live := h.openSSE("cy", "")
	expectConnected(t, live, "cy", "sse")
	id := h.notify("cy", "live only")
	expectIDs(t, live, id)

	h.notify("dee", "nobody listening")
	late := h.openWS("dee", "")
	expectConnected(t, late, "dee", "ws")
	marker := h.notify("dee", "marker")
	expectMarker(t, late, marker, "offline storage is disabled: nothing is kept")
}
