// Package publish is a Go client for pushd's publisher and admin REST API.
//
// It imports nothing of the server: any Go program that can reach a pushd
// node over HTTP can publish with it.
//
//	c, err := publish.New("https://push.example.com", os.Getenv("PUSH_API_KEY"))
//	res, err := c.Notify(ctx, publish.Notification{UserID: "alice", Title: "Hi", Body: "there"})
//
// Every call takes a context. A failed call returns an *Error carrying the
// server's error code (CodeBadRequest, CodeRateLimited, CodeUnavailable, …),
// to be inspected with errors.As.
//
// # Retries
//
// A request answered 429 (rate limited) or 503 (store unavailable: nothing
// was stored) is retried after the server's Retry-After delay, a request
// that failed on the network or was answered 500 outcome_unknown after an
// exponential backoff, each wait with random jitter, at most WithRetries
// times. Every publish carries an Idempotency-Key generated for it and
// reused by its retries, so a retry after a lost answer never stores the
// message twice (on a server that keeps idempotency keys).
//
// # Batching
//
// Batcher groups single publishes from many goroutines into
// POST /api/ws/push/batch requests, by size and by delay, and gives each
// caller its own message's result.
package publish
