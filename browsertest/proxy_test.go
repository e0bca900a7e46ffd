package browsertest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// front is the origin the browser talks to in most tests: it serves the test
// pages under /__test/ and passes everything else to pushd, except that it
// can break /sse (and /ws) the way proxies and outages do.
type front struct {
	t        *testing.T
	srv      *httptest.Server
	upstream *url.URL
	rp       *httputil.ReverseProxy
	client   *http.Client

	mu       sync.Mutex
	sseMode  string // "" pass through, "502", "hang": 200 + headers, never a body byte
	down     bool   // answer /sse and /ws with 502, as while pushd is unreachable
	wsDown   bool   // answer /ws alone with 502
	streams  []*sseStream
	requests []string // request URIs of /sse and /ws, in order
}

type sseStream struct{ frozen atomic.Bool }

func newFront(t *testing.T, p *pushd) *front {
	t.Helper()
	up, err := url.Parse(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	f := &front{
		t:        t,
		upstream: up,
		rp:       httputil.NewSingleHostReverseProxy(up),
		client:   &http.Client{Transport: &http.Transport{DisableCompression: true}},
	}
	f.rp.ErrorLog = log.New(io.Discard, "", 0)
	f.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, "bad gateway: "+err.Error(), http.StatusBadGateway)
	}
	mux := http.NewServeMux()
	mux.Handle("/__test/", http.StripPrefix("/__test/", http.FileServer(http.Dir("testdata"))))
	mux.HandleFunc("/sse", f.serveSSE)
	mux.HandleFunc("/ws", f.serveWS)
	mux.Handle("/", f.rp)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

// URL is the origin of the front server.
func (f *front) URL() string { return f.srv.URL }

func (f *front) setSSEMode(mode string) {
	f.mu.Lock()
	f.sseMode = mode
	f.mu.Unlock()
}

func (f *front) setDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

// setWSDown refuses /ws alone, so a test can bring SSE back first and know
// which transport a client ends up on.
func (f *front) setWSDown(down bool) {
	f.mu.Lock()
	f.wsDown = down
	f.mu.Unlock()
}

// freezeSSE makes every open SSE stream stop forwarding bytes while staying
// open: from the browser's side the stream is dead without being closed.
func (f *front) freezeSSE() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.streams {
		s.frozen.Store(true)
	}
}

// log returns the request URIs of /sse and /ws seen so far.
func (f *front) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

func (f *front) count(prefix string) int {
	n := 0
	for _, r := range f.log() {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func (f *front) record(r *http.Request) (mode string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.URL.RequestURI())
	return f.sseMode, f.down
}

func (f *front) serveWS(w http.ResponseWriter, r *http.Request) {
	_, down := f.record(r)
	f.mu.Lock()
	down = down || f.wsDown
	f.mu.Unlock()
	if down {
		http.Error(w, "upstream down", http.StatusBadGateway)
		return
	}
	f.rp.ServeHTTP(w, r)
}

func (f *front) serveSSE(w http.ResponseWriter, r *http.Request) {
	mode, down := f.record(r)
	switch {
	case down || mode == "502":
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return
	case mode == "hang":
		// A buffering proxy: the response starts but nothing ever arrives.
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	u := *f.upstream
	u.Path = r.URL.Path
	u.RawQuery = r.URL.RawQuery
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Host = r.Host
	for _, h := range []string{"Accept", "Authorization", "Last-Event-ID", "Origin", "User-Agent", "Cache-Control"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	res, err := f.client.Do(req)
	if err != nil {
		http.Error(w, "bad gateway: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	for k, vs := range res.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(res.StatusCode)
	fl := w.(http.Flusher)
	fl.Flush()
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(w, res.Body)
		return
	}
	s := &sseStream{}
	f.mu.Lock()
	f.streams = append(f.streams, s)
	f.mu.Unlock()
	buf := make([]byte, 32<<10)
	for {
		n, err := res.Body.Read(buf)
		if n > 0 && !s.frozen.Load() {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			fl.Flush()
		}
		if err != nil {
			return
		}
	}
}
