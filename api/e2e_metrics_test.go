package api_test

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestE2EMetrics drives every kind of traffic, then checks the real /metrics
// output: it passes promlint (the linter of promtool check metrics), every
// name of CONTRACT §9 is there with its type and labels, none has a
// per-user or per-connection label, and the counters moved.
func TestE2EMetrics(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) {
		c.Stream.HeartbeatInterval = 200 * time.Millisecond
		c.Opts.HeartbeatTimeout = 200 * time.Millisecond
		c.Opts.ConnectRateLimit, c.Opts.ConnectRateBurst = 1000, 1000
	})
	sse := h.openSSE("mo", "")
	expectConnected(t, sse, "mo", "sse")
	ws := h.openWS("mo", "")
	expectConnected(t, ws, "mo", "ws")
	ids := []string{
		h.push("notification", map[string]any{"userId": "mo", "title": "t", "body": "b"}),
		h.push("dashboard", map[string]any{"userId": "mo", "widgetId": "w", "data": 1}),
		h.push("data-change", map[string]any{"userId": "mo", "tableId": "t", "rowId": "1", "action": "create"}),
		h.push("audit-log", map[string]any{"userId": "mo", "entry": map[string]any{"a": 1}}),
	}
	expectIDs(t, sse, ids...)
	expectIDs(t, ws, ids...)
	resumed := h.openSSE("mo", "lastEventId="+url.QueryEscape(ids[0]))
	expectConnected(t, resumed, "mo", "sse")
	expectIDs(t, resumed, ids[1:]...)
	unknown := h.openWS("mo", "lastEventId=nonsense")
	expectConnected(t, unknown, "mo", "ws")
	expectType(t, unknown, "reset")
	h.api("POST", "/api/ws/disconnect/mo", map[string]any{"reason": "metrics test"}).expectStatus(t, 200)
	h.waitConnections(0)
	// A WebSocket that never answers pings: closed after interval+timeout.
	mute := h.wsFrom(h.mustDialWS("access_token="+url.QueryEscape(h.token("mute")), nil), "WS(mute)", false)
	_ = mute
	h.waitConnections(1)
	h.waitConnections(0)

	body := h.do("GET", "/metrics", nil, "").expectStatus(t, 200).Body
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		typ    dto.MetricType
		labels string
	}{
		"pushd_connections":              {dto.MetricType_GAUGE, "transport"},
		"pushd_connects_total":           {dto.MetricType_COUNTER, "transport"},
		"pushd_disconnects_total":        {dto.MetricType_COUNTER, "reason"},
		"pushd_messages_published_total": {dto.MetricType_COUNTER, "type"},
		"pushd_deliveries_total":         {dto.MetricType_COUNTER, "transport"},
		"pushd_replays_total":            {dto.MetricType_COUNTER, ""},
		"pushd_resets_total":             {dto.MetricType_COUNTER, "reason"},
		"pushd_publish_to_write_seconds": {dto.MetricType_HISTOGRAM, ""},
		"pushd_store_operation_seconds":  {dto.MetricType_HISTOGRAM, "op"},
		"pushd_rate_limited_total":       {dto.MetricType_COUNTER, "limit"},
	}
	for name, w := range want {
		f := families[name]
		if f == nil {
			t.Errorf("/metrics lacks %s", name)
			continue
		}
		if f.GetType() != w.typ {
			t.Errorf("%s is a %v, want a %v", name, f.GetType(), w.typ)
		}
		for _, m := range f.Metric {
			var names []string
			for _, l := range m.Label {
				names = append(names, l.GetName())
			}
			if got := strings.Join(names, ","); got != w.labels {
				t.Errorf("%s has labels %q, want %q", name, got, w.labels)
			}
		}
	}
	for name, f := range families {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if n := l.GetName(); n == "user" || n == "userId" || n == "connection" || n == "remote" {
					t.Errorf("%s has a per-%s label: unbounded series", name, n)
				}
			}
		}
		if strings.HasSuffix(name, "_seconds") && f.GetType() == dto.MetricType_HISTOGRAM {
			b := f.Metric[0].GetHistogram().GetBucket()
			if b[0].GetUpperBound() > 0.001 || b[len(b)-1].GetUpperBound() < 10 {
				t.Errorf("%s buckets span %v–%v s, want 1 ms–10 s covered", name, b[0].GetUpperBound(), b[len(b)-1].GetUpperBound())
			}
		}
	}
	value := func(name string, labels ...string) float64 {
		v, ok := h.metric(name, labels...)
		if !ok {
			t.Errorf("no sample of %s%v", name, labels)
		}
		return v
	}
	atLeast := func(what string, got, min float64) {
		if got < min {
			t.Errorf("%s = %v, want at least %v", what, got, min)
		}
	}
	atLeast("connects sse", value("pushd_connects_total", `transport="sse"`), 2)
	atLeast("connects ws", value("pushd_connects_total", `transport="ws"`), 3)
	atLeast("disconnects kicked", value("pushd_disconnects_total", `reason="kicked"`), 4)
	atLeast("disconnects heartbeat_timeout", value("pushd_disconnects_total", `reason="heartbeat_timeout"`), 1)
	for _, typ := range []string{"notification", "dashboard_update", "data_change", "audit_log"} {
		atLeast("published "+typ, value("pushd_messages_published_total", `type="`+typ+`"`), 1)
	}
	atLeast("deliveries sse", value("pushd_deliveries_total", `transport="sse"`), 7)
	atLeast("deliveries ws", value("pushd_deliveries_total", `transport="ws"`), 4)
	atLeast("replays", value("pushd_replays_total"), 2)
	atLeast("resets unknown_id", value("pushd_resets_total", `reason="unknown_id"`), 1)
	atLeast("publish to write", value("pushd_publish_to_write_seconds_count"), 1)
	atLeast("store append", value("pushd_store_operation_seconds_count", `op="append"`), 4)
	atLeast("store read_stream", value("pushd_store_operation_seconds_count", `op="read_stream"`), 4)
	for _, l := range []string{"max_connections", "max_connections_per_user", "connect_rate", "user_rate", "rest_rate"} {
		value("pushd_rate_limited_total", `limit="`+l+`"`)
	}
}
