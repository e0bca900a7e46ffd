package persist

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sys/unix"

	"github.com/pushd/pushd/stream"
)

// Unknown commit outcomes (CONTRACT §5). When the connection breaks while a
// group's batch is in flight, the implicit COMMIT may or may not have
// happened: the reply is lost either way. Answering 503 then would lie when
// it did commit (a retry duplicates), answering 202 would lie when it did
// not. So the writer finds out before it answers:
//
//   - every group's transaction also writes the writer's row of
//     push.append_marks: the group's number (mark) and push.meta.head after
//     it. Only this writer writes its row, and it is blocked until the
//     outcome is known, so on a new connection the row says whether the
//     group committed (mark is the group's) and where (head);
//   - the row is only conclusive once the old backend is gone: a backend the
//     server has not noticed to be cut off may still commit. Each pool
//     connection remembers its backend's pid and start time (AfterConnect),
//     and the writer ends that backend (pg_terminate_backend) if it is still
//     there. After a server restart it is gone by itself; transaction ids
//     are not used, since one not yet in the WAL at a crash is handed out
//     again after it.
//
// It tries for outcomeWindow, reconnecting as the server comes back; past
// it the append fails with stream.ErrOutcomeUnknown (500 outcome_unknown).

// outcomeWindow bounds how long the writer tries to learn an outcome.
const outcomeWindow = 10 * time.Second

// backendStartKey holds a pool connection's backend start time in its
// pgconn.PgConn.CustomData.
const backendStartKey = "pushd.backendStart"

const sqlMarkGroup = `
INSERT INTO push.append_marks AS a (writer, mark, head, at)
SELECT $1, $2, head, $3 FROM push.meta
ON CONFLICT (writer) DO UPDATE SET mark = excluded.mark, head = excluded.head, at = excluded.at`

// marksKeptFor is how long the row of a writer that stopped committing is
// kept.
const marksKeptFor = 24 * time.Hour

// outcomeCounts counts how the outcomes the writer had to find out were
// settled.
type outcomeCounts struct {
	committed, notCommitted, unknown atomic.Int64
}

// rememberBackend is the pool's AfterConnect: it stores the backend's start
// time, which with its pid names the backend across server restarts.
func rememberBackend(ctx context.Context, conn *pgx.Conn) error {
	var start time.Time
	if err := conn.QueryRow(ctx, `SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()`).Scan(&start); err != nil {
		return err
	}
	conn.PgConn().CustomData()[backendStartKey] = start
	return nil
}

// flight is a group whose batch was sent on a connection.
type flight struct {
	mark  int64
	n     int // drafts
	pid   uint32
	start time.Time // zero when unknown
	// replied says the server answered the batch's first statement. An error
	// the server sent before that (a FATAL for a connection it ended while
	// idle) came before anything of the batch ran.
	replied bool
}

// errInDoubt refuses appends while the writer learns an outcome from a
// database that does not answer: they would queue behind it for up to
// outcomeWindow and then fail anyway.
var errInDoubt = fmt.Errorf("persist: postgres: a commit is in doubt and the database does not answer: %w", stream.ErrUnavailable)

// queueMark numbers the group and queues the write of the writer's mark.
func (s *Postgres) queueMark(b *pgx.Batch, n int) *flight {
	s.marks++
	b.Queue(sqlMarkGroup, s.node, s.marks, s.r.Clock().UnixMilli())
	return &flight{mark: s.marks, n: n}
}

// boarded records the connection that carries f.
func (f *flight) boarded(conn *pgxpool.Conn) {
	pc := conn.Conn().PgConn()
	f.pid = pc.PID()
	f.start, _ = pc.CustomData()[backendStartKey].(time.Time)
}

// settle classifies the error of a group's batch. A statement error means
// the transaction was rolled back and an error before anything was sent
// means it never began: the error as it is. Otherwise the outcome is
// learnt: on commit it returns the group's base position and no error.
func (s *Postgres) settle(commitCtx context.Context, f *flight, err error) (int64, error) {
	var pgErr *pgconn.PgError
	isPg := errors.As(err, &pgErr)
	if isPg && (pgErr.Severity == "ERROR" || !f.replied) || pgconn.SafeToRetry(err) {
		return 0, s.fail(commitCtx, "append", err)
	}
	window := outcomeWindow
	if s.outcomeWindow > 0 {
		window = s.outcomeWindow
	}
	ctx, cancel := context.WithTimeout(s.stopCtx, window)
	defer cancel()
	s.log.Warn("connection lost during a commit; finding out whether it committed", "err", err, "messages", f.n)
	for {
		head, committed, lerr := s.learn(ctx, f)
		switch {
		case lerr == nil && committed:
			s.outcomes.committed.Add(1)
			s.log.Info("the commit in doubt had committed", "messages", f.n)
			return head - int64(f.n), nil
		case lerr == nil:
			s.outcomes.notCommitted.Add(1)
			s.log.Info("the commit in doubt had not committed", "messages", f.n)
			return 0, fmt.Errorf("persist: postgres append: not committed: %w: %w", stream.ErrUnavailable, err)
		}
		if !errors.Is(lerr, errBackendAlive) { // the database does not answer
			if !s.settling.Swap(true) {
				defer s.settling.Store(false)
			}
			s.refuseQueued()
		}
		select {
		case <-ctx.Done():
			s.outcomes.unknown.Add(1)
			s.log.Error("could not learn whether a commit went through", "err", lerr, "messages", f.n)
			return 0, fmt.Errorf("persist: postgres append: %w: %w (learning it: %w)", stream.ErrOutcomeUnknown, err, lerr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// refuseQueued fails the appends queued behind the writer while it learns
// an outcome: nothing of theirs was sent.
func (s *Postgres) refuseQueued() {
	for {
		select {
		case r := <-s.reqs:
			r.done <- appendRes{err: errInDoubt}
		default:
			return
		}
	}
}

// errBackendAlive means the backend that carried the group is still there.
var errBackendAlive = errors.New("the backend of the commit is still running")

// learn asks on a new connection whether f committed. It fails while that
// cannot be known yet.
func (s *Postgres) learn(ctx context.Context, f *flight) (head int64, committed bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.cfg.ConnConfig.Copy())
	if err != nil {
		return 0, false, err
	}
	defer conn.Close(context.Background())
	readMark := func() (int64, bool, error) {
		var mark, head int64
		err := conn.QueryRow(ctx, `SELECT mark, head FROM push.append_marks WHERE writer = $1`, s.node).Scan(&mark, &head)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, false, nil
		}
		return head, err == nil && mark == f.mark, err
	}
	if head, committed, err := readMark(); err != nil || committed {
		return head, committed, err // committed, whatever became of the backend
	}
	if f.start.IsZero() {
		return 0, false, errors.New("the backend of the commit is unknown")
	}
	rows, err := conn.Query(ctx, `
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2`, int32(f.pid), f.start)
	if err != nil {
		return 0, false, err
	}
	ended, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	if err != nil {
		return 0, false, err
	}
	if len(ended) > 0 {
		return 0, false, errBackendAlive // ended now; ask again once it is gone
	}
	// The backend is gone, so its transaction is over: the mark read now
	// is the outcome.
	return readMark()
}

// acquireLive takes a pool connection that was not closed while it sat
// idle. A batch sent on such a connection fails after it was written, which
// would leave its outcome in doubt although the server never got it; a
// connection the pool has not used for a second is checked by the pool
// itself, a younger one is checked here without a round trip.
func (s *Postgres) acquireLive(ctx context.Context) (*pgxpool.Conn, error) {
	for range 3 {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		if !closedWhileIdle(conn.Conn().PgConn()) {
			return conn, nil
		}
		_ = conn.Conn().Close(ctx) // the pool destroys it on release
		conn.Release()
	}
	return s.pool.Acquire(ctx)
}

// closedWhileIdle reports whether the server (or something between) ended
// an idle connection: its socket is at EOF or in error, or holds a message
// after which a ping fails (a FATAL). It peeks without blocking; nothing
// pending means alive.
func closedWhileIdle(pc *pgconn.PgConn) bool {
	nc := pc.Conn()
	if tc, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = tc.NetConn() // TLS: what is pending is a record, but EOF is EOF
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var perr error
	var buf [1]byte
	// Control, not Read: pgx's background reader may sit in a read of this
	// socket (it outlives a slow write), holding the read lock until data
	// comes. A peek consumes nothing, so it may run beside that read.
	if err := rc.Control(func(fd uintptr) {
		n, _, perr = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); err != nil {
		return true
	}
	switch {
	case errors.Is(perr, unix.EAGAIN):
		return false
	case perr != nil || n == 0:
		return true
	default: // a message while idle: a notice, or the server's goodbye
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return pc.Ping(ctx) != nil
	}
}

// purgeMarks deletes the marks of writers that stopped committing.
func (s *Postgres) purgeMarks(ctx context.Context, conn *pgxpool.Conn) error {
	_, err := conn.Exec(ctx, `DELETE FROM push.append_marks WHERE at < $1`, s.r.Clock().Add(-marksKeptFor).UnixMilli())
	return err
}
