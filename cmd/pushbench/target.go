package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// target is one server under test (pushd or the baseline) and its REST API.
type target struct {
	name   string
	base   *url.URL
	apiKey string
	pid    int
	poster *poster

	// nodes are the bases of every node of a cluster (--nodes), base being
	// the first: subscriber i connects to nodes[i%len(nodes)], publishing
	// goes through base. Empty for a single server.
	nodes []*url.URL
	// pids are every node's process id (--node-pids), for CPU summed over
	// the cluster; empty: pid alone.
	pids []int
}

// nodeOf is the base URL subscriber idx connects to, and its node's index.
func (t *target) nodeOf(idx int) (*url.URL, int) {
	if len(t.nodes) == 0 {
		return t.base, 0
	}
	i := idx % len(t.nodes)
	return t.nodes[i], i
}

// allPIDs are the processes whose CPU counts as the server's.
func (t *target) allPIDs() []int {
	if len(t.pids) > 0 {
		return t.pids
	}
	if t.pid > 0 {
		return []int{t.pid}
	}
	return nil
}

// newCluster is the pushd target of --nodes: published to through the
// first node, subscribed to on all.
func newCluster(urls []string, apiKey string, pids []int, d *dialer) (*target, error) {
	t, err := newTarget("pushd", urls[0], apiKey, 0, d)
	if err != nil {
		return nil, err
	}
	for _, raw := range urls {
		n, err := newTarget("pushd", raw, apiKey, 0, d)
		if err != nil {
			return nil, err
		}
		t.nodes = append(t.nodes, n.base)
	}
	if len(pids) > 0 {
		t.pid = pids[0]
	}
	t.pids = pids
	return t, nil
}

func newTarget(name, rawURL, apiKey string, pid int, d *dialer) (*target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%s: bad URL %q: %v", name, rawURL, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%s: only http:// URLs are supported (got %q)", name, rawURL)
	}
	if u.Port() == "" {
		u.Host += ":80"
	}
	if err := checkLoopback(u.Host); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return &target{name: name, base: u, apiKey: apiKey, pid: pid, poster: newPoster(d, u.Host, apiKey)}, nil
}

// apiError is a non-2xx answer of the REST API.
type apiError struct {
	status int
	body   string
}

func (e *apiError) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.body) }

// post sends body as JSON and decodes a 200/202 answer into out, waiting out
// 429 answers (Retry-After) up to a few times.
func (t *target) post(ctx context.Context, path string, body, out any) error {
	payload, err := json.Marshal(body)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		res, err := t.poster.post(ctx, path, payload)
		if err != nil {
			return fmt.Errorf("POST %s: %w", path, err)
		}
		if res.status == http.StatusTooManyRequests && attempt < 20 {
			wait := time.Second
			if s, err := strconv.Atoi(res.retryAfter); err == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if res.status != http.StatusOK && res.status != http.StatusAccepted {
			b := res.body
			if len(b) > 300 {
				b = b[:300]
			}
			return fmt.Errorf("POST %s: %w", path, &apiError{res.status, string(bytes.TrimSpace(b))})
		}
		if out != nil {
			if err := json.Unmarshal(res.body, out); err != nil {
				return fmt.Errorf("POST %s: decoding answer: %v", path, err)
			}
		}
		return nil
	}
}

func (t *target) token(ctx context.Context, user string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	if err := t.post(ctx, "/api/ws/connect", map[string]string{"userId": user}, &out); err != nil {
		return "", err
	}
	if out.Token == "" {
		return "", fmt.Errorf("POST /api/ws/connect: no token in answer")
	}
	return out.Token, nil
}

type pushAnswer struct {
	ID  string   `json:"id"`
	IDs []string `json:"ids"`
}

func (t *target) broadcast(ctx context.Context, title, body string) error {
	return t.post(ctx, "/api/ws/broadcast", map[string]string{"title": title, "body": body}, &pushAnswer{})
}

func (t *target) notify(ctx context.Context, user, title, body string) error {
	return t.post(ctx, "/api/ws/push/notification", map[string]string{"userId": user, "title": title, "body": body}, &pushAnswer{})
}

// batchItem is one message of POST /api/ws/push/batch.
type batchItem struct {
	Kind   string `json:"kind"`
	UserID string `json:"userId,omitempty"`
	Title  string `json:"title"`
	Body   string `json:"body"`
}

func (t *target) batch(ctx context.Context, items []batchItem) error {
	var out pushAnswer
	if err := t.post(ctx, "/api/ws/push/batch", map[string]any{"messages": items}, &out); err != nil {
		return err
	}
	if len(out.IDs) != len(items) {
		return fmt.Errorf("POST /api/ws/push/batch: %d ids for %d messages", len(out.IDs), len(items))
	}
	return nil
}

func parseURL(s string) (*url.URL, error) { return url.Parse(s) }
