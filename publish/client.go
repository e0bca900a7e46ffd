package publish

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of the options.
const (
	DefaultRetries     = 3
	DefaultBaseBackoff = 100 * time.Millisecond
	DefaultMaxBackoff  = 10 * time.Second
	DefaultTimeout     = 30 * time.Second
)

// Client calls one pushd server (or a load balancer in front of several
// nodes). It is safe for concurrent use by multiple goroutines.
type Client struct {
	base        *url.URL
	apiKey      string
	http        *http.Client
	retries     int
	baseBackoff time.Duration
	maxBackoff  time.Duration
	userAgent   string
}

// Option configures a Client.
type Option func(*Client) error

// WithHTTPClient sends requests through hc instead of a client with
// DefaultTimeout per request.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("publish: WithHTTPClient(nil)")
		}
		c.http = hc
		return nil
	}
}

// WithRetries sets how many times a failed request is repeated (0 = never);
// default DefaultRetries.
func WithRetries(n int) Option {
	return func(c *Client) error {
		if n < 0 {
			return fmt.Errorf("publish: WithRetries(%d): must not be negative", n)
		}
		c.retries = n
		return nil
	}
}

// WithBackoff sets the first retry's backoff (doubled for each further
// retry) and the longest wait between two attempts, Retry-After included:
// a server asking for a longer wait is answered with the error at once.
func WithBackoff(base, maxWait time.Duration) Option {
	return func(c *Client) error {
		if base <= 0 || maxWait < base {
			return fmt.Errorf("publish: WithBackoff(%s, %s): want 0 < base <= max", base, maxWait)
		}
		c.baseBackoff, c.maxBackoff = base, maxWait
		return nil
	}
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		c.userAgent = ua
		return nil
	}
}

// New returns a client of the server at baseURL (scheme and host, e.g.
// "https://push.example.com") authenticating with apiKey.
func New(baseURL, apiKey string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("publish: base URL %q: want an absolute http(s) URL", baseURL)
	}
	if apiKey == "" {
		return nil, errors.New("publish: the API key is empty")
	}
	c := &Client{
		base: u, apiKey: apiKey,
		http:    &http.Client{Timeout: DefaultTimeout},
		retries: DefaultRetries, baseBackoff: DefaultBaseBackoff, maxBackoff: DefaultMaxBackoff,
		userAgent: "pushd-publish-go",
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// request is one API call; body is marshalled once and resent as it is.
type request struct {
	method, path   string
	body           any
	idempotencyKey string
}

// do sends req, retrying as the package doc says, and decodes a 2xx body
// into out.
func (c *Client) do(ctx context.Context, req request, out any) error {
	var body []byte
	if req.body != nil {
		var err error
		if body, err = json.Marshal(req.body); err != nil {
			return fmt.Errorf("publish: encoding the request: %w", err)
		}
	}
	for attempt := 1; ; attempt++ {
		err := c.attempt(ctx, req, body, out)
		if err == nil {
			return nil
		}
		var perr *Error
		if errors.As(err, &perr) {
			perr.Attempts = attempt
		}
		wait, ok := c.retryWait(ctx, err, req, attempt)
		if !ok {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("publish: %w (while waiting to retry after: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// retryWait decides whether the failed attempt is repeated and after how
// long: 429 and 503 after Retry-After (or the backoff), an unknown outcome
// or a network failure after the backoff, each plus jitter — but only when
// the request may be repeated safely.
func (c *Client) retryWait(ctx context.Context, err error, req request, attempt int) (time.Duration, bool) {
	if attempt > c.retries || ctx.Err() != nil {
		return 0, false
	}
	backoff := min(c.maxBackoff, c.baseBackoff<<min(attempt-1, 20))
	var perr *Error
	var nerr *networkError
	switch {
	case errors.As(err, &perr):
		if !perr.Retryable() || (perr.Code == CodeOutcomeUnknown && req.idempotencyKey == "") {
			return 0, false
		}
		if perr.RetryAfter > 0 {
			if perr.RetryAfter > c.maxBackoff {
				return 0, false
			}
			// Retry-After is the least wait; jitter spreads the clients
			// it was sent to over the next backoff's worth.
			return perr.RetryAfter + rand.N(backoff/2+1), true
		}
	case !errors.As(err, &nerr):
		return 0, false
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < backoff/2 {
		return 0, false
	}
	return backoff/2 + rand.N(backoff/2+1), true
}

// networkError is a request that got no complete answer: it may or may not
// have reached the server.
type networkError struct{ err error }

func (e *networkError) Error() string { return e.err.Error() }
func (e *networkError) Unwrap() error { return e.err }

func (c *Client) attempt(ctx context.Context, req request, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, c.base.String()+req.path, rd)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	hr.Header.Set("Authorization", "Bearer "+c.apiKey)
	hr.Header.Set("Accept", "application/json")
	if c.userAgent != "" {
		hr.Header.Set("User-Agent", c.userAgent)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if req.idempotencyKey != "" {
		hr.Header.Set("Idempotency-Key", req.idempotencyKey)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return &networkError{fmt.Errorf("publish: %s %s: %w", req.method, req.path, err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &networkError{fmt.Errorf("publish: %s %s: reading the answer: %w", req.method, req.path, err)}
	}
	if resp.StatusCode/100 != 2 {
		return answerError(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("publish: %s %s: decoding the answer: %w", req.method, req.path, err)
	}
	return nil
}

func answerError(resp *http.Response, data []byte) *Error {
	e := &Error{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(data))}
	var b struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &b) == nil && b.Error.Code != "" {
		e.Code, e.Message = b.Error.Code, b.Error.Message
	}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
		e.RetryAfter = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(resp.Header.Get("Retry-After")); err == nil {
		e.RetryAfter = max(0, time.Until(t))
	}
	return e
}

// NewIdempotencyKey returns a random key for the Idempotency-Key header
// (32 hex digits).
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
