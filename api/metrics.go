package api

import (
	"bufio"
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
// run several in one process).
type metrics struct {
	reg       *prometheus.Registry
	published prometheus.Counter
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

func newMetrics(m *stream.Manager) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mt := &metrics{
		reg: reg,
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushd_messages_published_total", Help: "Messages stored through the REST API.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushd_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pushd_http_request_duration_seconds",
			Help: "Time to answer REST requests by route (for a push: validated, stored, answered; delivery follows). Streams are not included.",
			// 250 µs to 8 s: a memory-store push answers in well under a
			// millisecond, a PostgreSQL one after its group commit.
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
		}, []string{"route"}),
	}
	reg.MustRegister(mt.published, mt.requests, mt.durations)
	for _, tr := range []string{"sse", "ws"} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pushd_connections", Help: "Live subscriber connections by transport.",
			ConstLabels: prometheus.Labels{"transport": tr},
		}, func() float64 { return float64(m.Counts().Transports[tr]) }))
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pushd_users", Help: "Distinct connected users."},
			func() float64 { return float64(m.Counts().Users) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushd_messages_dispatched_total", Help: "Committed messages fanned out by this node."},
			func() float64 { return float64(m.Metrics().Dispatched) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushd_deliveries_total", Help: "First deliveries of a message to a user written by this node."},
			func() float64 { return float64(m.Metrics().Delivered) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushd_slow_consumer_disconnects_total", Help: "Connections cut off because their queue overflowed."},
			func() float64 { return float64(m.Metrics().SlowConsumerKicks) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushd_cursor_flush_errors_total", Help: "Failed writes of delivered cursors (retried)."},
			func() float64 { return float64(m.Metrics().CursorFlushErrors) }),
	)
	return mt
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
