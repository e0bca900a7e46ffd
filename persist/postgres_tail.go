package persist

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"

	pushsql "github.com/pushd/pushd/sql"
	"github.com/pushd/pushd/stream"
)

// The tail is the single goroutine that calls the feed. It keeps last, the
// highest position fed, and reads "seq > last" from the table whenever it is
// woken: by a NOTIFY from another node (via the dedicated LISTEN connection),
// by a reconnect of that connection, by SetFeed, or by the poll. Batches
// committed by this process are fed directly when they follow last, which
// saves reading back what we just wrote.
//
// Positions are dense (push.meta.head is bumped in the appending
// transaction) and become visible in order (AppendLock), so a hole between
// last and the next row read can only be a gone row already deleted by the
// retention pass: the tail logs it and moves on.

const tailPage = 1000

func (s *Postgres) tail(last uint64) {
	defer s.wg.Done()
	poll := time.NewTicker(s.pollEvery)
	defer poll.Stop()
	var failing bool
	catchUp := func() {
		feed := s.feed.Load()
		if feed == nil {
			return // nothing to feed yet: keep last, read it all once set
		}
		for {
			ctx, cancel := context.WithTimeout(s.stopCtx, 30*time.Second)
			rows, err := s.pool.Query(ctx, `
SELECT seq, user_id, exclude, type, key, payload, ts FROM push.messages
WHERE seq > $1 ORDER BY seq LIMIT $2`, int64(last), tailPage)
			var msgs []*stream.Message
			if err == nil {
				msgs, err = s.scanMessages(rows)
			}
			cancel()
			if err != nil {
				if !failing {
					s.log.Warn("reading the log failed; retrying", "err", err)
					failing = true
				}
				return
			}
			if failing {
				s.log.Info("reading the log again")
				failing = false
			}
			if len(msgs) == 0 {
				return
			}
			if gap := msgs[0].Seq - last - 1; gap > 0 {
				s.log.Warn("feed fell behind the retention pass: deleted messages skipped", "from", last+1, "count", gap)
			}
			last = msgs[len(msgs)-1].Seq
			(*feed)(msgs)
			if len(msgs) < tailPage {
				return
			}
		}
	}
	feedLocal := func(msgs []*stream.Message) {
		feed := s.feed.Load()
		switch {
		case feed == nil || msgs[len(msgs)-1].Seq <= last:
		case msgs[0].Seq == last+1:
			last = msgs[len(msgs)-1].Seq
			(*feed)(msgs)
		default:
			catchUp() // another node committed in between: read in order
		}
	}
	for {
		select {
		case <-s.stop:
			return
		case msgs := <-s.local:
			// Batches committed while the previous dispatch ran go out as
			// one: per connection one queue append and one write.
		coalesce:
			for len(msgs) < tailPage {
				select {
				case more := <-s.local:
					if more[0].Seq != msgs[len(msgs)-1].Seq+1 {
						feedLocal(msgs)
						msgs = more
						continue
					}
					msgs = append(msgs[:len(msgs):len(msgs)], more...)
				default:
					break coalesce
				}
			}
			feedLocal(msgs)
			continue
		case <-s.wake:
		case <-poll.C:
		}
		catchUp()
	}
}

// listen keeps a dedicated LISTEN connection (not from the pool) and turns
// notifications from other nodes into wake-ups of the tail, and those of
// the outbox triggers into wake-ups of the relay. After every
// (re)connect it wakes the tail too, since notifications sent while it was
// away are lost.
func (s *Postgres) listen() {
	defer s.wg.Done()
	var down atomic.Bool
	l := s.listener(&down, "LISTEN connection lost; reconnecting")
	l.Handle(pushsql.NotifyChannel, listenHandler{s: s, down: &down})
	l.Handle(pushsql.OutboxChannel, outboxHandler{s: s})
	_ = l.Listen(s.stopCtx)
}

// outboxHandler wakes the relay when a watched table's trigger wrote
// changes, and after every (re)connect of the LISTEN connection.
type outboxHandler struct{ s *Postgres }

func (h outboxHandler) HandleNotification(ctx context.Context, n *pgconn.Notification, conn *pgx.Conn) error {
	h.s.kickRelay()
	return nil
}

func (h outboxHandler) HandleBacklog(ctx context.Context, channel string, conn *pgx.Conn) error {
	h.s.kickRelay()
	return nil
}

type listenHandler struct {
	s    *Postgres
	down *atomic.Bool
}

func (h listenHandler) HandleNotification(ctx context.Context, n *pgconn.Notification, conn *pgx.Conn) error {
	if n.Payload != h.s.node {
		h.s.kick()
	}
	return nil
}

func (h listenHandler) HandleBacklog(ctx context.Context, channel string, conn *pgx.Conn) error {
	if h.down.Swap(false) {
		h.s.log.Info("LISTEN connection back")
	}
	h.s.kick()
	return nil
}

// listener is a LISTEN loop on a connection of its own (not from the pool),
// reconnecting after reconnectDelay; lost says so once per outage, and down
// is set until a handler's backlog hook clears it.
func (s *Postgres) listener(down *atomic.Bool, lost string) *pgxlisten.Listener {
	return &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, s.cfg.ConnConfig.Copy())
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil && !down.Swap(true) {
				s.log.Warn(lost, "err", err)
			}
		},
		ReconnectDelay: reconnectDelay,
	}
}
