package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// eventConn is one subscriber connection of either transport.
type eventConn interface {
	next() (typ, id, data []byte, err error)
	// fresh reports whether the last next read from the socket: the events
	// of one read arrived at the same time and share one receipt time.
	fresh() bool
	// buffered reports whether the next event may already be buffered, so
	// counters can wait until the reader is about to block.
	buffered() bool
	clearDeadline()
	io.Closer
}

// sub is one subscriber: a user with one connection at a time.
type sub struct {
	idx      int
	user     string
	token    string
	expected *bitset // message seqs this subscriber must receive
	got      *bitset // seqs received

	mu     sync.Mutex
	conn   eventConn
	lastID []byte // owned by the reader goroutine while it runs

	n atomic.Int64 // unique in-run messages received
}

// run is the shared state of one scenario run against one target.
type run struct {
	cfg    *config
	t      *target
	d      *dialer
	runID  string
	marker []byte // "pb:<runID>:"

	lat     shardedHist // publish -> receipt
	nodeLat []histogram // publish -> receipt by the node that delivered (--nodes)
	// recvAt, when set, takes receipt times by the marker's time field,
	// which then holds an index (db-changes: the commit time is known only
	// after the row is written).
	recvAt  []atomic.Int64
	connLat histogram // dial -> connected event

	delivered  atomic.Int64 // unique in-run deliveries
	dups       atomic.Int64
	foreign    atomic.Int64 // stored messages from other runs (offline backlog)
	resets     atomic.Int64
	disconnect atomic.Int64 // "disconnect" events
	drops      atomic.Int64 // streams that ended while the run wanted them open
	reconnects atomic.Int64
	reconnErrs atomic.Int64
	lastRecv   atomic.Int64 // unix nanos of the newest in-run delivery
	live       atomic.Int64 // connections currently open

	closing  atomic.Bool
	readers  sync.WaitGroup
	errMu    sync.Mutex
	errCount map[string]int
}

func newRun(cfg *config, t *target, d *dialer) *run {
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	r := &run{cfg: cfg, t: t, d: d, runID: id, marker: []byte("pb:" + id + ":"), errCount: map[string]int{}}
	if len(t.nodes) > 1 {
		r.nodeLat = make([]histogram, len(t.nodes))
	}
	return r
}

// body is the marker a published message carries in its body: run id,
// sequence number within the subscriber's expected set, and send time.
func (r *run) body(seq int, sentAt time.Time) string {
	return "pb:" + r.runID + ":" + strconv.Itoa(seq) + ":" + strconv.FormatInt(sentAt.UnixNano(), 10)
}

func (r *run) noteErr(kind string, err error) {
	msg := kind
	if err != nil {
		s := err.Error()
		if len(s) > 120 {
			s = s[:120]
		}
		msg += ": " + s
	}
	r.errMu.Lock()
	if len(r.errCount) < 50 || r.errCount[msg] > 0 {
		r.errCount[msg]++
	}
	r.errMu.Unlock()
}

func (r *run) errors() []string {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	var out []string
	for k, v := range r.errCount {
		out = append(out, fmt.Sprintf("%dx %s", v, k))
	}
	return out
}

// tally is what one reader counted since it last flushed its counters:
// shared atomics are touched once per read, not once per event (with 10 000
// readers on two cores, per-event atomics cost the client as much as the
// parsing).
type tally struct {
	now       time.Time // receipt time of the current read
	delivered int64
}

// onEvent handles one event of s's stream, received at t.now.
func (r *run) onEvent(s *sub, typ, id, data []byte, t *tally) {
	if len(id) > 0 {
		s.lastID = append(s.lastID[:0], id...)
	}
	switch string(typ) {
	case "connected", "heartbeat":
		return
	case "reset":
		r.resets.Add(1)
		return
	case "disconnect":
		r.disconnect.Add(1)
		return
	}
	i := bytes.Index(data, []byte("pb:"))
	if i < 0 || !bytes.HasPrefix(data[i:], r.marker) {
		if len(id) > 0 {
			r.foreign.Add(1)
		}
		return
	}
	rest := data[i+len(r.marker):]
	seq, rest := parseUint(rest)
	if len(rest) == 0 || rest[0] != ':' {
		r.noteErr("malformed marker", nil)
		return
	}
	sent, _ := parseUint(rest[1:])
	if s.got.set(int(seq)) {
		r.dups.Add(1)
		return
	}
	t.delivered++
	if r.recvAt != nil {
		if sent < uint64(len(r.recvAt)) {
			r.recvAt[sent].Store(t.now.UnixNano())
		}
		return
	}
	lat := t.now.Sub(time.Unix(0, int64(sent)))
	r.lat.record(s.idx, lat)
	if r.nodeLat != nil {
		r.nodeLat[s.idx%len(r.nodeLat)].record(lat)
	}
}

// flushTally adds t's counts to the run's and s's counters.
func (r *run) flushTally(s *sub, t *tally) {
	if t.delivered == 0 {
		return
	}
	r.delivered.Add(t.delivered)
	s.n.Add(t.delivered)
	t.delivered = 0
	now := t.now.UnixNano()
	for {
		l := r.lastRecv.Load()
		if now <= l || r.lastRecv.CompareAndSwap(l, now) {
			break
		}
	}
}

// handle processes one event just returned by c.next.
func (r *run) handle(s *sub, c eventConn, typ, id, data []byte, t *tally) {
	if t.now.IsZero() || c.fresh() {
		t.now = time.Now()
	}
	r.onEvent(s, typ, id, data, t)
	if !c.buffered() {
		r.flushTally(s, t)
	}
}

func parseUint(b []byte) (uint64, []byte) {
	var v uint64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + uint64(b[i]-'0')
	}
	return v, b[i:]
}

// dial opens a connection for s and returns once the server's "connected"
// event has arrived (events before it are processed too).
func (r *run) dial(ctx context.Context, s *sub, lastID string) (eventConn, error) {
	var (
		c   eventConn
		err error
	)
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	base, _ := r.t.nodeOf(s.idx)
	switch r.cfg.transport {
	case "ws":
		c, err = dialWS(cctx, r.d, base, s.token, lastID)
	default:
		c, err = dialSSE(cctx, r.d, base, s.token, lastID)
	}
	if err != nil {
		return nil, err
	}
	var t tally
	for {
		typ, id, data, err := c.next()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("before connected event: %w", err)
		}
		r.handle(s, c, typ, id, data, &t)
		if string(typ) == "connected" {
			break
		}
	}
	r.flushTally(s, &t)
	c.clearDeadline()
	r.connLat.record(time.Since(start))
	return c, nil
}

// open connects s and starts its reader goroutine.
func (r *run) open(ctx context.Context, s *sub, lastID string) error {
	c, err := r.dial(ctx, s, lastID)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	r.live.Add(1)
	r.readers.Add(1)
	go r.read(ctx, s, c)
	return nil
}

// read runs s's stream until it ends; an unwanted end is counted and, with
// --reconnect, resumed from the last event id.
func (r *run) read(ctx context.Context, s *sub, c eventConn) {
	defer r.readers.Done()
	for {
		var err error
		var t tally
		for {
			var typ, id, data []byte
			typ, id, data, err = c.next()
			if err != nil {
				break
			}
			r.handle(s, c, typ, id, data, &t)
		}
		r.flushTally(s, &t)
		c.Close()
		r.live.Add(-1)
		if r.closing.Load() || ctx.Err() != nil {
			return
		}
		r.drops.Add(1)
		if code := closeCode(err); code != 0 {
			r.noteErr("stream ended: close code "+strconv.Itoa(code), nil)
		} else {
			r.noteErr("stream ended", err)
		}
		if !r.cfg.reconnect {
			return
		}
		for attempt := 0; ; attempt++ {
			time.Sleep(time.Duration(50+attempt*100) * time.Millisecond)
			if r.closing.Load() || ctx.Err() != nil {
				return
			}
			c, err = r.dial(ctx, s, string(s.lastID))
			if err == nil {
				break
			}
			r.reconnErrs.Add(1)
			if attempt > 20 {
				r.noteErr("reconnect failed", err)
				return
			}
		}
		r.reconnects.Add(1)
		r.live.Add(1)
		s.mu.Lock()
		s.conn = c
		s.mu.Unlock()
	}
}

// closeAll ends every subscriber connection and waits for the readers.
func (r *run) closeAll(subs []*sub) {
	r.closing.Store(true)
	for _, s := range subs {
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
			s.conn = nil
		}
		s.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { r.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		r.noteErr("readers did not stop within 30s", nil)
	}
	r.closing.Store(false)
}

// makeSubs creates n subscribers with fresh user ids and fetches a token for
// each through POST /api/ws/connect.
func (r *run) makeSubs(ctx context.Context, n int, expected func(i int) *bitset, gotCap int) ([]*sub, error) {
	subs := make([]*sub, n)
	for i := range subs {
		subs[i] = &sub{idx: i, user: fmt.Sprintf("pb-%s-%d", r.runID, i), expected: expected(i), got: newBitset(gotCap)}
	}
	err := parallel(ctx, r.cfg.apiConcurrency, n, func(i int) error {
		tok, err := r.t.token(ctx, subs[i].user)
		subs[i].token = tok
		return err
	})
	return subs, err
}

// connectAll opens a connection for every subscriber with at most
// --connect-concurrency dials in flight; it returns the wall time.
func (r *run) connectAll(ctx context.Context, subs []*sub, withLastID bool) (time.Duration, int) {
	start := time.Now()
	var failed atomic.Int64
	_ = parallel(ctx, r.cfg.connectConcurrency, len(subs), func(i int) error {
		last := ""
		if withLastID {
			last = string(subs[i].lastID)
		}
		if err := r.open(ctx, subs[i], last); err != nil {
			failed.Add(1)
			r.noteErr("connect", err)
		}
		return nil
	})
	return time.Since(start), int(failed.Load())
}

// missing counts expected messages never received, over all subscribers.
func missing(subs []*sub) int64 {
	var n int64
	for _, s := range subs {
		n += int64(s.expected.andNotCount(s.got))
	}
	return n
}

// waitDelivered waits until want in-run deliveries arrived or timeout.
func (r *run) waitDelivered(ctx context.Context, want int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for r.delivered.Load() < want {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// parallel runs f(0..n-1) on at most workers goroutines; it stops handing
// out work after the first error or when ctx ends, and returns that error.
func parallel(ctx context.Context, workers, n int, f func(i int) error) error {
	if workers < 1 {
		workers = 1
	}
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		stop    atomic.Bool
	)
	for w := 0; w < workers && w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errOnce.Do(func() { first = err; stop.Store(true) })
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// finishPublished completes a run that published messages: publish figures,
// wait for the expected deliveries, CPU, delivery rate, missing, verdict.
func (r *run) finishPublished(ctx context.Context, cfg *config, res *result, cw *cpuWindow, subs []*sub,
	start time.Time, took time.Duration, okN, failN, expected int64) {
	res.Published, res.PublishErrors = okN, failN
	res.PublishSeconds = round(took.Seconds(), 3)
	res.PublishRate = round(float64(okN)/took.Seconds(), 1)
	res.Expected = expected
	r.waitDelivered(ctx, res.Expected, cfg.drain)
	cw.finish(res, r.delivered.Load())
	if last := r.lastRecv.Load(); last > 0 {
		res.DeliveryPS = round(float64(r.delivered.Load())/time.Unix(0, last).Sub(start).Seconds(), 1)
	}
	res.Missing = missing(subs)
	r.closeAll(subs)
	r.fillCommon(res)
	res.OK = res.ConnectFailed == 0 && failN == 0 && res.Missing == 0 && res.Duplicates == 0
}
