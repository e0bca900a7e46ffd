package persist

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pushd/pushd/stream"
)

// Postgres is the durable Store, and the bus between pushd nodes that share
// one database.
//
// The log is push.messages. Positions are assigned by one writer goroutine
// per process with group commit (postgres_append.go): every transaction that
// appends holds pg_advisory_xact_lock(AppendLock), bumps push.meta.head and
// commits before the lock is released, so positions become visible in order
// on every node. After commit it NOTIFYs; each node's tail
// (postgres_tail.go) then reads "seq > last" and feeds its Manager, with a
// poll as safety net, so a lost notification costs latency, never a message.
//
// Retention (postgres_retention.go) follows the memory store exactly:
// messages leave the offline store by count cap, age or conflation; rows are
// only marked gone (gone_at) in the appending transaction and deleted later,
// because the table is also the bus and another node may not have read them
// yet. ReadStream (postgres_read.go) computes a user's window at read time,
// so age and cap apply even before the retention pass has run.
//
// It is also a stream.Cluster: the node registry (postgres_nodes.go) and the
// requests nodes answer for each other (postgres_cluster.go) go through the
// same database, so nodes need no addresses of each other.
//
// A Postgres is safe for concurrent use by multiple goroutines. It holds no
// mutex: one writer goroutine owns the appending state (the fields marked
// "the writer's"), and the rest are channels and atomics.
// Idempotency keys are committed with their messages
// (postgres_idempotency.go); a commit whose reply is lost is settled before
// the append answers (postgres_outcome.go).
type Postgres struct {
	pool  *pgxpool.Pool
	cfg   *pgxpool.Config
	r     stream.Retention
	log   *slog.Logger
	epoch string
	node  string // NOTIFY payload: lets the tail skip its own commits

	// purgeAfter is how long gone rows stay readable by lagging tails.
	purgeAfter time.Duration
	// pollEvery is the period of the tail's safety-net poll.
	pollEvery time.Duration

	reqs       chan *appendReq
	kept       *keptCache // the writer's
	relayWake  chan struct{}
	relayState relayState // the writer's
	writerGone chan struct{}
	local      chan []*stream.Message // committed here, for the tail
	wake       chan struct{}
	feed       atomic.Pointer[func([]*stream.Message)]
	cluster    atomic.Pointer[cluster] // set by Join (postgres_nodes.go)
	stop       chan struct{}
	stopCtx    context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	closed     atomic.Bool
	closeOnce  sync.Once
	// shut is closed once Close has stopped everything and closed the pool.
	shut chan struct{}

	// changeDataLimit is the largest row data a database change carries;
	// a larger one goes out without data ("dataOmitted").
	changeDataLimit int
	// marks counts the writer's groups; outcomes how commits in doubt were
	// settled (postgres_outcome.go).
	marks    int64
	outcomes outcomeCounts
	// outcomeWindow, when not zero, replaces the default window for
	// settling a commit in doubt (tests).
	outcomeWindow time.Duration
	// settling is set while the writer is learning an outcome and the
	// database does not answer; appends are refused meanwhile.
	settling atomic.Bool
}

// The interfaces the PostgreSQL store implements.
var (
	_ stream.Store          = (*Postgres)(nil)
	_ stream.Pinger         = (*Postgres)(nil)
	_ stream.QueueReporter  = (*Postgres)(nil)
	_ stream.Expirer        = (*Postgres)(nil)
	_ stream.OutboxReporter = (*Postgres)(nil)
	_ stream.Cluster        = (*Postgres)(nil)
)

// Defaults of the PostgreSQL store.
const (
	defaultMaxConns   = 8
	defaultPurgeAfter = 5 * time.Minute
	defaultPollEvery  = time.Second
	// reconnectDelay is how soon the LISTEN connection is retried after a
	// loss.
	reconnectDelay = time.Second
)

// PostgresOption configures OpenPostgres.
type PostgresOption func(*Postgres)

// WithChangeDataLimit sets the largest row data (in bytes of JSON) a
// database-driven change carries; a larger one is pushed with
// "dataOmitted": true instead. The default is 65536, the default of
// --max-message-bytes.
func WithChangeDataLimit(n int) PostgresOption {
	return func(s *Postgres) {
		if n > 0 {
			s.changeDataLimit = n
		}
	}
}

// OpenPostgres connects to the database at url, applies pending migrations,
// and starts the writer (which also relays database-driven changes) and the
// tail. The pool size is pool_max_conns from the URL, 8 when absent; LISTEN
// runs on one more, dedicated connection (and, once the node joins the
// cluster, its requests on another).
func OpenPostgres(ctx context.Context, url string, r stream.Retention, logger *slog.Logger, opts ...PostgresOption) (*Postgres, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if r.MaxCount < 0 || r.TTL < 0 {
		return nil, fmt.Errorf("persist: negative retention %+v", r)
	}
	cfg, err := poolConfig(url)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, cfg.ConnConfig); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("persist: postgres pool: %w", err)
	}
	s := &Postgres{
		pool:       pool,
		cfg:        cfg,
		r:          r,
		log:        logger.With("store", "postgres"),
		node:       newNodeID(),
		purgeAfter: defaultPurgeAfter,
		pollEvery:  defaultPollEvery,
		reqs:       make(chan *appendReq, 4096),
		kept:       newKeptCache(),
		relayWake:  make(chan struct{}, 1),
		writerGone: make(chan struct{}),
		local:      make(chan []*stream.Message, 256),
		wake:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		shut:       make(chan struct{}),

		changeDataLimit: defaultChangeDataLimit,
	}
	for _, o := range opts {
		o(s)
	}
	// Changes committed while no pushd ran are relayed at once.
	s.kickRelay()
	var head int64
	if err := pool.QueryRow(ctx, `SELECT epoch, head FROM push.meta`).Scan(&s.epoch, &head); err != nil {
		pool.Close()
		return nil, s.fail(ctx, "read push.meta", err)
	}
	if err := s.kept.load(ctx, pool); err != nil {
		s.log.Info("append-time trim looks at every user until it has learnt them", "reason", err)
	}
	s.stopCtx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(3)
	go s.writer()
	go s.tail(uint64(head))
	go s.listen()
	return s, nil
}

func poolConfig(url string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("persist: database url: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// An unreachable server must fail a request, not hang it.
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if _, set := cfg.ConnConfig.RuntimeParams["jit"]; !set {
		// Our statements are short index probes; a misestimate (a fresh
		// table, a generic plan) must not buy a 20-100 ms JIT compile.
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	cfg.HealthCheckPeriod = 15 * time.Second
	cfg.AfterConnect = rememberBackend
	return cfg, nil
}

// newNodeID names this process among the nodes: the host name (so an
// operator can tell GET /api/ws/nodes entries apart) and random hex digits
// (several nodes may share a host). It never contains a space: it is a word
// of NOTIFY payloads.
func newNodeID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return -1
	}, host)
	if len(host) > 40 {
		host = host[:40]
	}
	if host == "" {
		return suffix
	}
	return host + "-" + suffix
}

// Epoch implements stream.Store.
func (s *Postgres) Epoch() string { return s.epoch }

// SetFeed implements stream.Store.
func (s *Postgres) SetFeed(feed func([]*stream.Message)) {
	s.feed.Store(&feed)
	s.kick()
}

func (s *Postgres) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Head implements stream.Store.
func (s *Postgres) Head(ctx context.Context) (uint64, error) {
	if err := s.usable(); err != nil {
		return 0, err
	}
	var head int64
	if err := s.pool.QueryRow(ctx, `SELECT head FROM push.meta`).Scan(&head); err != nil {
		return 0, s.fail(ctx, "head", err)
	}
	return uint64(head), nil
}

// DeliveredCursor implements stream.Store.
func (s *Postgres) DeliveredCursor(ctx context.Context, userID string) (uint64, bool, error) {
	if err := s.usable(); err != nil {
		return 0, false, err
	}
	var seq int64
	var known bool
	err := s.pool.QueryRow(ctx, `SELECT delivered, known FROM push.users WHERE user_id = $1`, userID).Scan(&seq, &known)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, s.fail(ctx, "delivered cursor", err)
	}
	return uint64(seq), known, nil
}

// MarkDelivered implements stream.Store. Users are written in sorted order,
// so concurrent callers (other nodes) never deadlock on push.users.
func (s *Postgres) MarkDelivered(ctx context.Context, ds []stream.Delivery) error {
	if err := s.usable(); err != nil {
		return err
	}
	if len(ds) == 0 {
		return nil
	}
	// One row per user: ON CONFLICT cannot touch a row twice in a statement.
	idx := make(map[string]int, len(ds))
	var users []string
	var seqs []int64
	var count int64
	for _, d := range ds {
		count += int64(d.Count)
		i, ok := idx[d.UserID]
		if !ok {
			idx[d.UserID] = len(users)
			users = append(users, d.UserID)
			seqs = append(seqs, int64(d.Seq))
			continue
		}
		seqs[i] = max(seqs[i], int64(d.Seq))
	}
	_, err := s.pool.Exec(ctx, `
WITH u AS (
    INSERT INTO push.users AS u (user_id, delivered, known)
    SELECT d.user_id, d.seq, true
    FROM unnest($1::text[], $2::bigint[]) AS d(user_id, seq)
    ORDER BY d.user_id
    ON CONFLICT (user_id) DO UPDATE
        SET delivered = greatest(u.delivered, excluded.delivered), known = true
)
UPDATE push.counters SET value = value + $3 WHERE name = 'delivered' AND $3 <> 0`,
		users, seqs, count)
	if err != nil {
		return s.fail(ctx, "mark delivered", err)
	}
	return nil
}

// QueueStats implements stream.QueueReporter.
func (s *Postgres) QueueStats(ctx context.Context) (stream.QueueStats, error) {
	var st stream.QueueStats
	if err := s.usable(); err != nil {
		return st, err
	}
	err := s.pool.QueryRow(ctx, `
SELECT
    (SELECT count(*) FROM push.messages m LEFT JOIN push.users u USING (user_id)
     WHERE m.gone_at IS NULL AND m.user_id IS NOT NULL AND m.ts > $1
       AND m.seq > coalesce(u.delivered, 0)),
    (SELECT value FROM push.counters WHERE name = 'delivered'),
    (SELECT value FROM push.counters WHERE name = 'expired')`,
		s.cutoff(s.r.Clock())).Scan(&st.PendingMessages, &st.DeliveredMessages, &st.ExpiredMessages)
	if err != nil {
		return st, s.fail(ctx, "queue stats", err)
	}
	return st, nil
}

// Ping implements stream.Pinger.
func (s *Postgres) Ping(ctx context.Context) error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.pool.Ping(ctx); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// Close implements stream.Store: later calls fail at once; the node leaves
// the registry, queued appends fail, the writer finishes its transaction
// (which can take up to commitTimeout), the tail and the listeners stop,
// the pool closes. It waits for all that at most until ctx ends.
func (s *Postgres) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		go func() {
			s.leave()
			close(s.stop)
			s.cancel() // aborts the tail's read and the LISTEN wait, not a commit
			s.wg.Wait()
			s.pool.Close()
			close(s.shut)
		}()
	})
	select {
	case <-s.shut:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errClosed = fmt.Errorf("persist: postgres store closed: %w", stream.ErrUnavailable)

func (s *Postgres) usable() error {
	if s.closed.Load() {
		return errClosed
	}
	return nil
}

// cutoff is the newest timestamp that counts as expired at now; with no TTL
// nothing expires.
func (s *Postgres) cutoff(now time.Time) int64 {
	if s.r.TTL <= 0 {
		return -1 << 63
	}
	return now.UnixMilli() - s.r.TTL.Milliseconds()
}

// fail names the operation and classifies err (see classify).
func (s *Postgres) fail(ctx context.Context, op string, err error) error {
	return classify(ctx, "persist: postgres "+op, err)
}

// classify prefixes err with what failed and sorts it: everything that means
// "the database cannot be reached or cannot serve now" wraps
// stream.ErrUnavailable, so the API answers 503 and acknowledges nothing;
// anything else (a bug or bad data) is returned as it is.
func classify(ctx context.Context, what string, err error) error {
	if isUnavailable(ctx, err) {
		return fmt.Errorf("%s: %w: %w", what, stream.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// isUnavailable reports whether err means an outage rather than a fault of
// the request. A context the caller cancelled is not one.
func isUnavailable(ctx context.Context, err error) bool {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return false // the caller gave up; not the database's fault
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"), // insufficient resources (too many connections)
			strings.HasPrefix(pgErr.Code, "57"), // operator intervention: shutdown, cannot connect now, statement timeout
			strings.HasPrefix(pgErr.Code, "58"), // system error
			pgErr.Code == "25006":               // read-only transaction: a standby after failover
			return true
		}
		return false // a bug or bad data: not an outage
	}
	// Network errors, timeouts, closed connections and a closed pool.
	return true
}
