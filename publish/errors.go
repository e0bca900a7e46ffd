package publish

import (
	"fmt"
	"net/http"
	"time"
)

// Error codes the server answers with (the "code" of its error body).
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodePayloadTooLarge  = "payload_too_large"
	CodeConflict         = "conflict"
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "unavailable"
	CodeOutcomeUnknown   = "outcome_unknown"
	CodeInternal         = "internal"
)

// Error is an error answer of the server, after any retries.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the server's error code, one of the Code constants (or the
	// status text when the body was not pushd's error shape).
	Code string
	// Message is the server's explanation.
	Message string
	// RetryAfter is the server's Retry-After delay, when it sent one.
	RetryAfter time.Duration
	// Attempts is how many requests were made.
	Attempts int
}

func (e *Error) Error() string {
	return fmt.Sprintf("pushd: %d %s: %s", e.Status, e.Code, e.Message)
}

// Retryable reports whether the request may be repeated as it was: the
// server stored nothing (429, 503) or the outcome is unknown and the
// request carried an idempotency key the server resolves it with.
func (e *Error) Retryable() bool {
	switch e.Status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return true
	}
	return e.Code == CodeOutcomeUnknown
}
