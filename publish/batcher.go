package publish

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// Defaults of BatcherOptions.
const (
	DefaultBatchSize     = 250
	DefaultBatchDelay    = 5 * time.Millisecond
	DefaultBatchInFlight = 4
)

// BatcherOptions tune a Batcher; zero fields take the defaults.
type BatcherOptions struct {
	// MaxSize is the most messages per request (at most MaxBatch); a batch
	// this full is sent at once. Default DefaultBatchSize.
	MaxSize int
	// MaxDelay is how long the first message of a batch waits for others.
	// Default DefaultBatchDelay.
	MaxDelay time.Duration
	// MaxInFlight is how many batch requests may be under way at once;
	// beyond it, Publish waits. Default DefaultBatchInFlight.
	MaxInFlight int
}

// ErrBatcherClosed is returned by Publish after Close.
var ErrBatcherClosed = errors.New("publish: batcher closed")

// Batcher groups single publishes into POST /api/ws/push/batch requests: a
// batch goes out when it holds MaxSize messages or its first message has
// waited MaxDelay. Each caller gets its own message's result. A message the
// server rejects on its own fails alone: the rest of its batch is sent
// again without it. Messages published from one goroutine one after the
// other keep their order; concurrent ones have none to keep.
//
// A Batcher is safe for concurrent use by multiple goroutines.
type Batcher struct {
	c    *Client
	opts BatcherOptions
	in   chan *pending
	sem  chan struct{}
	wg   sync.WaitGroup

	closeOnce sync.Once
	closing   chan struct{}
	done      chan struct{}
}

type pending struct {
	m   Message
	res Result
	err error
	// done is closed once res or err is set.
	done chan struct{}
}

// NewBatcher starts a batcher publishing through c. Close it to send what
// is waiting and release its goroutine.
func (c *Client) NewBatcher(opts BatcherOptions) (*Batcher, error) {
	if opts.MaxSize == 0 {
		opts.MaxSize = DefaultBatchSize
	}
	if opts.MaxDelay == 0 {
		opts.MaxDelay = DefaultBatchDelay
	}
	if opts.MaxInFlight == 0 {
		opts.MaxInFlight = DefaultBatchInFlight
	}
	switch {
	case opts.MaxSize < 1 || opts.MaxSize > MaxBatch:
		return nil, fmt.Errorf("publish: BatcherOptions.MaxSize %d: want 1..%d", opts.MaxSize, MaxBatch)
	case opts.MaxDelay < 0:
		return nil, fmt.Errorf("publish: BatcherOptions.MaxDelay %s: must not be negative", opts.MaxDelay)
	case opts.MaxInFlight < 1:
		return nil, fmt.Errorf("publish: BatcherOptions.MaxInFlight %d: want at least 1", opts.MaxInFlight)
	}
	b := &Batcher{
		c: c, opts: opts,
		in:      make(chan *pending),
		sem:     make(chan struct{}, opts.MaxInFlight),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go b.loop()
	return b, nil
}

// Publish queues m for the next batch and waits for its result. When ctx
// ends first, Publish returns ctx's error, but a message already handed to
// a batch may still be stored.
func (b *Batcher) Publish(ctx context.Context, m Message) (Result, error) {
	if m == nil {
		return Result{}, errors.New("publish: nil message")
	}
	p := &pending{m: m, done: make(chan struct{})}
	select {
	case b.in <- p:
	case <-b.closing:
		return Result{}, ErrBatcherClosed
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// Close sends the messages waiting, waits for every batch under way and
// stops the batcher; ctx bounds the wait.
func (b *Batcher) Close(ctx context.Context) error {
	b.closeOnce.Do(func() { close(b.closing) })
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Batcher) loop() {
	defer close(b.done)
	var batch []*pending
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		timer.Stop()
		b.sem <- struct{}{} // bounds the requests under way
		b.wg.Add(1)
		go b.send(batch)
		batch = nil
	}
	for {
		select {
		case p := <-b.in:
			batch = append(batch, p)
			if len(batch) == 1 {
				timer.Reset(b.opts.MaxDelay)
			}
			if len(batch) >= b.opts.MaxSize {
				flush()
			}
		case <-timer.C:
			flush()
		case <-b.closing:
			flush()
			b.wg.Wait()
			return
		}
	}
}

// batchTimeout bounds one batch's requests, retries included: the callers
// waiting on it may have no deadline of their own.
const batchTimeout = 2 * time.Minute

// send publishes one batch and hands every caller its result.
func (b *Batcher) send(batch []*pending) {
	defer func() { <-b.sem; b.wg.Done() }()
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	for len(batch) > 0 {
		msgs := make([]Message, len(batch))
		for i, p := range batch {
			msgs[i] = p.m
		}
		res, err := b.c.Batch(ctx, msgs)
		if err == nil {
			for i, p := range batch {
				p.res = res[i]
				close(p.done)
			}
			return
		}
		i, itemErr := rejectedItem(err, len(batch))
		if i < 0 {
			for _, p := range batch {
				p.err = err
				close(p.done)
			}
			return
		}
		batch[i].err = itemErr
		close(batch[i].done)
		batch = append(batch[:i], batch[i+1:]...)
	}
}

// itemRe finds the index the server names when one message of a batch is
// invalid: "messages[7]: title is required".
var itemRe = regexp.MustCompile(`^messages\[(\d+)\]: ?`)

// rejectedItem reports which message err blames, and the error for its
// caller (without the index, which means nothing to them); -1 when err is
// about the whole batch.
func rejectedItem(err error, n int) (int, error) {
	var perr *Error
	if !errors.As(err, &perr) || (perr.Status != http.StatusBadRequest && perr.Status != http.StatusRequestEntityTooLarge) {
		return -1, nil
	}
	m := itemRe.FindStringSubmatch(perr.Message)
	if m == nil {
		return -1, nil
	}
	i, convErr := strconv.Atoi(m[1])
	if convErr != nil || i >= n {
		return -1, nil
	}
	own := *perr
	own.Message = perr.Message[len(m[0]):]
	return i, &own
}
