package api

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/pushd/pushd/stream"
)

// metrics is this server's Prometheus registry (one per server, so tests can
// run several in one process). Every labelled child a hot path uses is
// resolved once here: publishing, limits and the manager's hooks never hash
// a label.
type metrics struct {
	reg       *prometheus.Registry
	published map[string]prometheus.Counter // by message type
	limited   [numLimits]prometheus.Counter
	storeOps  map[string]prometheus.Observer // by op
	requests  *prometheus.CounterVec
	durations *prometheus.HistogramVec
	// counters and observers cache the vectors' children by route and
	// status: resolving labels hashes them on every request otherwise.
	counters  sync.Map // requestKey -> prometheus.Counter
	observers sync.Map // route -> prometheus.Observer
}

type requestKey struct {
	route  string
	status int
}

// latencyBuckets suit 1 ms–10 s (and below a millisecond, where a memory
// store and an inline write answer): 250 µs to about 16 s, doubling.
var latencyBuckets = prometheus.ExponentialBuckets(0.00025, 2, 17)

// apiStoreOps are the store calls the API and cmd make themselves (the
// manager's are stream.StoreOpNames).
var apiStoreOps = []string{"ping", "queue_stats", "expire"}

func newMetrics(m *stream.Manager) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mt := &metrics{
		reg:       reg,
		published: map[string]prometheus.Counter{},
		storeOps:  map[string]prometheus.Observer{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushd_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushd_http_request_duration_seconds",
			Help:    "Time to answer REST requests by route (for a push: validated, stored, answered; delivery follows). Streams are not included.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
	}
	published := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushd_messages_published_total", Help: "Messages stored through this node's REST API, by message type (broadcasts are notifications).",
	}, []string{"type"})
	for _, t := range []string{stream.TypeNotification, stream.TypeDashboardUpdate, stream.TypeDataChange, stream.TypeAuditLog} {
		mt.published[t] = published.WithLabelValues(t)
	}
	limited := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushd_rate_limited_total", Help: "Requests and connections refused by a limit (--max-connections, --max-connections-per-user, --connect-rate-limit, --user-rate-limit, --rate-limit).",
	}, []string{"limit"})
	for i, name := range limitNames {
		mt.limited[i] = limited.WithLabelValues(name)
	}
	storeOps := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "pushd_store_operation_seconds", Help: "Duration of store calls by operation.", Buckets: latencyBuckets,
	}, []string{"op"})
	for _, op := range append(stream.StoreOpNames[:], apiStoreOps...) {
		mt.storeOps[op] = storeOps.WithLabelValues(op)
	}
	publishToWrite := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pushd_publish_to_write_seconds",
		Help:    "Time from the store's acknowledgement of a live message to a socket write that carried it (one observation per write, of its oldest message).",
		Buckets: latencyBuckets,
	})
	reg.MustRegister(published, limited, storeOps, publishToWrite, mt.requests, mt.durations, managerCollector{m})

	var byOp [len(stream.StoreOpNames)]prometheus.Observer
	for i, op := range stream.StoreOpNames {
		byOp[i] = mt.storeOps[op]
	}
	m.SetObserver(stream.Observer{
		PublishToWrite: func(d time.Duration) { publishToWrite.Observe(d.Seconds()) },
		StoreOperation: func(op stream.StoreOp, d time.Duration) { byOp[op].Observe(d.Seconds()) },
	})
	reg.MustRegister(outboxCollector{m})
	return mt
}

// StoreTimer returns a function that records a store call of op (one of
// ping, queue_stats, expire) that began at start; cmd times its expiry runs
// with it.
func (s *Server) StoreTimer(op string) func(start time.Time) {
	o := s.metrics.storeOps[op]
	return func(start time.Time) { o.Observe(time.Since(start).Seconds()) }
}

// managerCollector exposes the manager's counters and gauges, read once per
// scrape; the manager keeps them as plain atomics.
type managerCollector struct{ m *stream.Manager }

var (
	descConnections  = prometheus.NewDesc("pushd_connections", "Live subscriber connections by transport.", []string{"transport"}, nil)
	descUsers        = prometheus.NewDesc("pushd_users", "Distinct connected users.", nil, nil)
	descConnects     = prometheus.NewDesc("pushd_connects_total", "Subscriber connections started, by transport.", []string{"transport"}, nil)
	descDisconnects  = prometheus.NewDesc("pushd_disconnects_total", "Subscriber connections ended, by reason (auth: refused for its token).", []string{"reason"}, nil)
	descDeliveries   = prometheus.NewDesc("pushd_deliveries_total", "Stored messages written to subscriber connections, by transport.", []string{"transport"}, nil)
	descFirst        = prometheus.NewDesc("pushd_first_deliveries_total", "First deliveries of a message to a user written by this node.", nil, nil)
	descDispatched   = prometheus.NewDesc("pushd_messages_dispatched_total", "Committed messages fanned out by this node.", nil, nil)
	descReplays      = prometheus.NewDesc("pushd_replays_total", "Connections that resumed from a last event id.", nil, nil)
	descReplayed     = prometheus.NewDesc("pushd_replayed_messages_total", "Stored messages read for resumes and offline delivery.", nil, nil)
	descResets       = prometheus.NewDesc("pushd_resets_total", "Streams that began with a reset event, by reason.", []string{"reason"}, nil)
	descSlow         = prometheus.NewDesc("pushd_slow_consumer_disconnects_total", "Connections cut off because their queue overflowed or a write timed out.", nil, nil)
	descFlushErrors  = prometheus.NewDesc("pushd_cursor_flush_errors_total", "Failed writes of delivered cursors (retried).", nil, nil)
	managerDescsList = []*prometheus.Desc{descConnections, descUsers, descConnects, descDisconnects, descDeliveries, descFirst,
		descDispatched, descReplays, descReplayed, descResets, descSlow, descFlushErrors}
)

func (c managerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range managerDescsList {
		ch <- d
	}
}

func (c managerCollector) Collect(ch chan<- prometheus.Metric) {
	counts, mm, cs := c.m.Counts(), c.m.Metrics(), c.m.Counters()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, tr := range []int{stream.TransportSSE, stream.TransportWS} {
		name := stream.TransportNames[tr]
		gauge(descConnections, float64(counts.Transports[name]), name)
		counter(descConnects, cs.Connects[tr], name)
		counter(descDeliveries, cs.Deliveries[tr], name)
	}
	gauge(descUsers, float64(counts.Users))
	for i, r := range stream.DisconnectReasons {
		counter(descDisconnects, cs.Disconnects[i], r)
	}
	for i, r := range stream.ResetReasons {
		counter(descResets, cs.Resets[i], r)
	}
	counter(descFirst, mm.Delivered)
	counter(descDispatched, mm.Dispatched)
	counter(descReplays, cs.Replays)
	counter(descReplayed, cs.Replayed)
	counter(descSlow, mm.SlowConsumerKicks)
	counter(descFlushErrors, mm.CursorFlushErrors)
}

func (mt *metrics) handler() http.Handler {
	return promhttp.HandlerFor(mt.reg, promhttp.HandlerOpts{})
}

// instrument counts requests by route pattern (not raw path: bounded
// labels); handle() tags the recorder with the pattern.
func (mt *metrics) instrument(router http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK, route: "unmatched"}
		router.ServeHTTP(rec, r)
		if rec.route != "GET /sse" && rec.route != "GET /ws" && rec.route != "GET "+tailRoute {
			// A stream's handler lasts as long as the stream on HTTP/2.
			o, ok := mt.observers.Load(rec.route)
			if !ok {
				o, _ = mt.observers.LoadOrStore(rec.route, mt.durations.WithLabelValues(rec.route))
			}
			o.(prometheus.Observer).Observe(time.Since(start).Seconds())
		}
		k := requestKey{rec.route, rec.status}
		c, ok := mt.counters.Load(k)
		if !ok {
			c, _ = mt.counters.LoadOrStore(k, mt.requests.WithLabelValues(rec.route, strconv.Itoa(rec.status)))
		}
		c.(prometheus.Counter).Inc()
	})
}

// tagRoute labels the request's metrics with its route pattern.
func tagRoute(pattern string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := w.(*statusRecorder); ok {
			rec.route = pattern
		}
		h.ServeHTTP(w, r)
	})
}

// statusRecorder keeps the status code and still offers Flush (SSE) and
// Hijack (WebSocket upgrade), which gorilla needs by type assertion.
type statusRecorder struct {
	http.ResponseWriter
	status int
	route  string
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := s.ResponseWriter.(http.Hijacker); ok {
		s.status = http.StatusSwitchingProtocols
		return h.Hijack()
	}
	return nil, nil, errors.New("hijack not supported")
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// outboxCollector reports pushd_outbox_pending at scrape time. A store
// without an outbox (the in-memory one) has no such sample, and when the
// store cannot be read the sample is left out rather than made up.
type outboxCollector struct{ m *stream.Manager }

var outboxPendingDesc = prometheus.NewDesc("pushd_outbox_pending",
	"Database-driven changes in push.outbox, not yet in the log.", nil, nil)

func (c outboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- outboxPendingDesc }

func (c outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, ok, err := c.m.OutboxPending(ctx); ok && err == nil {
		ch <- prometheus.MustNewConstMetric(outboxPendingDesc, prometheus.GaugeValue, float64(n))
	}
}
