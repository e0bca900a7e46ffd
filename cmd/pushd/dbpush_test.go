package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pushd/pushd/internal/pgtest"
)

// End-to-end tests of database-driven pushes (CONTRACT §6): real pushd
// nodes on a real PostgreSQL database, the application's SQL on its own
// connections, real SSE and WebSocket subscribers.

// envelope is one event as a subscriber sees it.
type envelope struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
	raw     string
}

// change is the payload of a data_change.
type change struct {
	TableID     string          `json:"tableId"`
	RowID       string          `json:"rowId"`
	Action      string          `json:"action"`
	Data        json.RawMessage `json:"data"`
	DataOmitted bool            `json:"dataOmitted"`
	Timestamp   int64           `json:"timestamp"`
}

func (e envelope) change(t *testing.T) change {
	t.Helper()
	var c change
	if e.Type != "data_change" {
		t.Fatalf("got %s, want data_change: %s", e.Type, e.raw)
	}
	if err := json.Unmarshal(e.Payload, &c); err != nil {
		t.Fatalf("payload %s: %v", e.Payload, err)
	}
	return c
}

// subscriber is a live SSE or WebSocket stream of one user that resumes
// with its last id whenever the stream ends (as the browser client does),
// and hands on stored events only (control events are checked and dropped).
type subscriber struct {
	t      *testing.T
	events chan envelope
	resets chan string
	stop   chan struct{}
}

func (n *node) resumingSubscriber(t *testing.T, transport, user string) *subscriber {
	t.Helper()
	s := &subscriber{t: t, events: make(chan envelope, 100000), resets: make(chan string, 16), stop: make(chan struct{})}
	connected := make(chan struct{})
	go func() {
		last := ""
		first := true
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			err := s.stream(n, transport, user, &last, func() {
				if first {
					first = false
					close(connected)
				}
			})
			if err != nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(func() { close(s.stop) })
	select {
	case <-connected:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s subscriber of %s did not connect", transport, user)
	}
	return s
}

func (s *subscriber) stream(n *node, transport, user string, last *string, onConnected func()) error {
	tok, err := mintToken(n, user)
	if err != nil {
		return err
	}
	handle := func(e envelope) bool {
		switch e.Type {
		case "connected":
			onConnected()
		case "heartbeat":
		case "reset":
			s.resets <- e.raw
		case "disconnect":
			return false
		default:
			*last = e.ID
			s.events <- e
		}
		return true
	}
	host := strings.TrimPrefix(n.base, "http://")
	switch transport {
	case "ws":
		u := url.URL{Scheme: "ws", Host: host, Path: "/ws", RawQuery: url.Values{"access_token": {tok}, "lastEventId": {*last}}.Encode()}
		c, _, err := websocket.DefaultDialer.Dial(u.String(), nil)
		if err != nil {
			return err
		}
		go func() { <-s.stop; c.Close() }()
		defer c.Close()
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return err
			}
			var e envelope
			if err := json.Unmarshal(b, &e); err != nil {
				return err
			}
			e.raw = string(b)
			if !handle(e) {
				return nil
			}
		}
	default:
		conn, err := net.Dial("tcp", host)
		if err != nil {
			return err
		}
		go func() { <-s.stop; conn.Close() }()
		defer conn.Close()
		fmt.Fprintf(conn, "GET /sse?access_token=%s HTTP/1.1\r\nHost: x\r\nLast-Event-ID: %s\r\n\r\n", tok, *last)
		br := bufio.NewReader(conn)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if data, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: "); ok {
				var e envelope
				if err := json.Unmarshal([]byte(data), &e); err != nil {
					return err
				}
				e.raw = data
				if !handle(e) {
					return nil
				}
			}
		}
	}
}

func mintToken(n *node, user string) (string, error) {
	req, _ := http.NewRequest("POST", n.base+"/api/ws/connect", strings.NewReader(fmt.Sprintf(`{"userId":%q}`, user)))
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		return "", fmt.Errorf("connect %s: %d %v", user, resp.StatusCode, err)
	}
	return out.Token, nil
}

// next is the subscriber's next stored event.
func (s *subscriber) next(t *testing.T) envelope {
	t.Helper()
	select {
	case e := <-s.events:
		return e
	case r := <-s.resets:
		t.Fatalf("unexpected reset: %s", r)
	case <-time.After(20 * time.Second):
		t.Fatal("no event within 20s")
	}
	return envelope{}
}

// expectChange takes the next event and checks it is this change.
func (s *subscriber) expectChange(t *testing.T, table, action, rowID, data string) change {
	t.Helper()
	e := s.next(t)
	c := e.change(t)
	if c.TableID != table || c.Action != action || c.RowID != rowID {
		t.Fatalf("got %s %s %s, want %s %s %s: %s", c.TableID, c.Action, c.RowID, table, action, rowID, e.raw)
	}
	if data != "" && !jsonEqual(t, c.Data, data) {
		t.Fatalf("%s %s %s: data %s, want %s", table, action, rowID, c.Data, data)
	}
	return c
}

func jsonEqual(t *testing.T, a json.RawMessage, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		return false
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("bad expectation %s", b)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

// pgExec runs the application's statements, each in its own transaction.
func pgExec(t *testing.T, db string, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func pgErr(t *testing.T, db, stmt string) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(context.Background(), stmt)
	if err == nil {
		t.Fatalf("%s: no error", stmt)
	}
	return err.Error()
}

func pgInt(t *testing.T, db, q string) int64 {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// waitOutboxEmpty waits until the relay has taken every change.
func waitOutboxEmpty(t *testing.T, db string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for pgInt(t, db, `SELECT count(*) FROM push.outbox`) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("push.outbox not empty after 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDBPushRules walks every message rule of CONTRACT §6 over SSE and
// WebSocket: audience, NULL audience, owner change, no-op update, rollback,
// broadcast tables, schema-qualified names, composite keys, listed columns,
// data over the message limit, partitions, TRUNCATE, and that the messages
// are stored like published ones (resume, offline delivery).
func TestDBPushRules(t *testing.T) {
	db := pgtest.NewDB(t)
	n := startNode(t, db, "--max-message-bytes", "1024")
	pgExec(t, db,
		`CREATE TABLE orders (id bigserial PRIMARY KEY, owner_id text, status text, total numeric, doc jsonb)`,
		`SELECT push.watch_table('public.orders', 'owner_id')`,
		`CREATE SCHEMA billing`,
		`CREATE TABLE billing.invoices (id int, region text, customer_id int, status text, total int, secret text, PRIMARY KEY (id, region))`,
		`SELECT push.watch_table('billing.invoices', 'customer_id', ARRAY['status', 'total'])`,
		`CREATE TABLE announcements (id int PRIMARY KEY, text text)`,
		`SELECT push.watch_table('public.announcements', NULL)`,
		`CREATE TABLE events (id int, region text, user_id text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region)`,
		`CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu')`,
		`SELECT push.watch_table('public.events', 'user_id', notify => false)`,
		`CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us')`, // after watch_table: gets the triggers too
	)
	alice := n.resumingSubscriber(t, "sse", "alice")
	aliceWS := n.resumingSubscriber(t, "ws", "alice")
	bob := n.resumingSubscriber(t, "ws", "bob")
	seven := n.resumingSubscriber(t, "sse", "7")

	// Audience from the row, insert/update/delete, old row on delete.
	pgExec(t, db,
		`INSERT INTO orders (owner_id, status, total) VALUES ('alice', 'new', 42)`,
		`INSERT INTO orders (owner_id, status, total) VALUES (NULL, 'orphan', 1)`, // not pushed
		`UPDATE orders SET status = 'paid' WHERE id = 1`,
		`UPDATE orders SET status = status`, // no-op: not pushed
		`BEGIN; INSERT INTO orders (owner_id, status) VALUES ('alice', 'rolled back'); ROLLBACK`,
		`UPDATE orders SET owner_id = 'bob' WHERE id = 1`, // delete for alice, create for bob
		`DELETE FROM orders WHERE id = 1`,
	)
	for _, s := range []*subscriber{alice, aliceWS} {
		s.expectChange(t, "orders", "create", "1", `{"id":1,"owner_id":"alice","status":"new","total":42,"doc":null}`)
		s.expectChange(t, "orders", "update", "1", `{"id":1,"owner_id":"alice","status":"paid","total":42,"doc":null}`)
		s.expectChange(t, "orders", "delete", "1", `{"id":1,"owner_id":"alice","status":"paid","total":42,"doc":null}`)
	}
	bob.expectChange(t, "orders", "create", "1", `{"id":1,"owner_id":"bob","status":"paid","total":42,"doc":null}`)
	bob.expectChange(t, "orders", "delete", "1", `{"id":1,"owner_id":"bob","status":"paid","total":42,"doc":null}`)

	// Schema-qualified table, composite key, listed columns only, an update
	// of an unlisted column not pushed, the audience of any type as text.
	pgExec(t, db,
		`INSERT INTO billing.invoices VALUES (7, 'EU', 7, 'open', 10, 'hidden')`,
		`UPDATE billing.invoices SET secret = 'still hidden'`,
		`UPDATE billing.invoices SET total = 11`,
	)
	seven.expectChange(t, "billing.invoices", "create", `["7","EU"]`, `{"status":"open","total":10}`)
	seven.expectChange(t, "billing.invoices", "update", `["7","EU"]`, `{"status":"open","total":11}`)

	// A broadcast table reaches everyone, with one id, identical on SSE and WS.
	pgExec(t, db, `INSERT INTO announcements VALUES (1, 'maintenance at noon')`)
	var ids, raws []string
	for _, s := range []*subscriber{alice, aliceWS, bob, seven} {
		e := s.next(t)
		c := e.change(t)
		if c.TableID != "announcements" || c.Action != "create" || c.RowID != "1" {
			t.Fatalf("broadcast: %s", e.raw)
		}
		ids = append(ids, e.ID)
		raws = append(raws, e.raw)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] || ids[2] != ids[3] || raws[0] != raws[1] {
		t.Fatalf("broadcast differs between recipients or transports:\n%s", strings.Join(raws, "\n"))
	}

	// Data over --max-message-bytes is left out.
	big := strings.Repeat("x", 2000)
	pgExec(t, db, `INSERT INTO orders (id, owner_id, status) VALUES (100, 'alice', '`+big+`')`)
	for _, s := range []*subscriber{alice, aliceWS} {
		c := s.expectChange(t, "orders", "create", "100", "")
		if !c.DataOmitted || c.Data != nil {
			t.Fatalf("over the limit: dataOmitted %v data %.40s", c.DataOmitted, c.Data)
		}
	}

	// Partitioned table: through the parent, into a partition directly, a
	// partition made after watch_table, a row moving between partitions
	// (its key changes: delete and create). notify => false: the poll.
	pgExec(t, db,
		`INSERT INTO events VALUES (1, 'eu', 'bob', 1)`,
		`INSERT INTO events_us VALUES (2, 'us', 'bob', 1)`,
		`UPDATE events_eu SET v = 2`,
		`UPDATE events SET region = 'us' WHERE id = 1`,
		`DELETE FROM events WHERE id = 2`,
	)
	bob.expectChange(t, "events", "create", `["1","eu"]`, `{"id":1,"region":"eu","user_id":"bob","v":1}`)
	bob.expectChange(t, "events", "create", `["2","us"]`, `{"id":2,"region":"us","user_id":"bob","v":1}`)
	bob.expectChange(t, "events", "update", `["1","eu"]`, `{"id":1,"region":"eu","user_id":"bob","v":2}`)
	bob.expectChange(t, "events", "delete", `["1","eu"]`, "")
	bob.expectChange(t, "events", "create", `["1","us"]`, "")
	bob.expectChange(t, "events", "delete", `["2","us"]`, "")

	// TRUNCATE is not pushed (documented); the next change is.
	pgExec(t, db, `TRUNCATE orders`, `INSERT INTO orders (id, owner_id, status) VALUES (200, 'alice', 'after truncate')`)
	alice.expectChange(t, "orders", "create", "200", "")
	aliceWS.expectChange(t, "orders", "create", "200", "")

	// Stored like a published data_change: same payload fields as one
	// published through REST, offline delivery and resume.
	pgExec(t, db, `INSERT INTO orders (id, owner_id, status) VALUES (300, 'olga', 'while offline')`,
		`INSERT INTO orders (id, owner_id, status) VALUES (301, 'olga', 'while offline too')`)
	// The relay runs after the commits; the published one is made after it.
	waitOutboxEmpty(t, db)
	n.post(t, "/api/ws/push/data-change", `{"userId":"olga","tableId":"orders","rowId":"302","action":"create","data":{"id":302}}`)
	olga := n.resumingSubscriber(t, "sse", "olga")
	var keys []string
	for i, row := range []string{"300", "301", "302"} {
		e := olga.next(t)
		c := e.change(t)
		if c.TableID == "announcements" {
			// Never delivered anything: her backlog starts at the oldest
			// kept message of her stream, the broadcast (CONTRACT §4.6).
			e = olga.next(t)
			c = e.change(t)
		}
		if c.RowID != row {
			t.Fatalf("offline delivery %d: %s", i, e.raw)
		}
		var m map[string]any
		_ = json.Unmarshal(e.Payload, &m)
		keys = append(keys, fmt.Sprint(slices.Sorted(maps.Keys(m))))
	}
	if keys[0] != keys[2] || keys[1] != keys[2] {
		t.Fatalf("payload fields differ from a published data_change: %v", keys)
	}
	if got := pgInt(t, db, `SELECT count(*) FROM push.outbox`); got != 0 {
		t.Fatalf("outbox holds %d rows after delivery", got)
	}
}

// TestDBPushWatchErrors: every bad argument raises an error that names the
// table and the problem; watching again replaces the settings; unwatching
// stops new pushes but changes already committed are delivered.
func TestDBPushWatchErrors(t *testing.T) {
	db := pgtest.NewDB(t)
	n := startNode(t, db)
	pgExec(t, db,
		`CREATE TABLE nopk (a int, owner text)`,
		`CREATE TABLE t (id int PRIMARY KEY, owner text, other text)`,
		`CREATE TABLE d (id int PRIMARY KEY, owner text)`,
		`CREATE VIEW v AS SELECT * FROM t`,
		`CREATE TABLE p (id int, k int, owner text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)`,
		`CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10)`,
	)
	for stmt, want := range map[string][]string{
		`SELECT push.watch_table('nopk', 'owner')`:                               {"nopk", "no primary key"},
		`SELECT push.watch_table('t', 'nobody')`:                                 {"t", `"nobody"`, "does not exist"},
		`SELECT push.watch_table('t', 'owner', ARRAY['id', 'nope'])`:             {"t", `"nope"`, "does not exist"},
		`SELECT push.watch_table('t', 'owner', ARRAY['id', 'id'])`:               {"t", `"id"`, "twice"},
		`SELECT push.watch_table('t', 'owner', ARRAY[]::text[])`:                 {"t", "empty"},
		`SELECT push.watch_table('v', 'owner')`:                                  {"v", "view"},
		`SELECT push.watch_table('p1', 'owner')`:                                 {"p1", "partition", "p"},
		`SELECT push.watch_table('missing', 'owner')`:                            {"missing", "does not exist"},
		`SELECT push.unwatch_table('t')`:                                         {"t", "not watched"},
		`SELECT push.watch_table('push.outbox', 'user_id')`:                      {"push.outbox", "pushd"},
		`SELECT push.watch_table(NULL, 'owner')`:                                 {"NULL"},
		`SELECT push.watch_table('t', 'owner', ARRAY['id', NULL])`:               {"t", "NULL"},
		`SELECT push.watch_table('d', 'owner'); ALTER TABLE d DROP COLUMN owner`: {"d", "audience", "gone"},
	} {
		got := pgErr(t, db, stmt)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: error %q does not say %q", stmt, got, w)
			}
		}
	}

	pgExec(t, db,
		`SELECT push.watch_table('t', 'owner')`,
		`SELECT push.watch_table('t', 'owner', ARRAY['other'])`, // replaces
		`ALTER TABLE t RENAME COLUMN owner TO owner_id`,         // followed
		`ALTER TABLE t RENAME TO things`,
	)
	var table, audience, columns string
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), `SELECT "table"::text, audience_column, columns::text FROM push.watched_tables`).Scan(&table, &audience, &columns); err != nil {
		t.Fatal(err)
	}
	if table != "things" || audience != "owner_id" || columns != "{other}" {
		t.Fatalf("watched_tables: %s %s %s", table, audience, columns)
	}
	u := n.resumingSubscriber(t, "sse", "una")
	pgExec(t, db, `INSERT INTO things VALUES (1, 'una', 'x')`)
	u.expectChange(t, "things", "create", "1", `{"other":"x"}`)

	// Unwatch: committed changes are still delivered, new ones are not.
	n.stop(t)
	pgExec(t, db, `INSERT INTO things VALUES (2, 'una', 'before unwatch')`, `SELECT push.unwatch_table('things')`,
		`INSERT INTO things VALUES (3, 'una', 'after unwatch')`)
	if got := pgInt(t, db, `SELECT count(*) FROM push.watched_tables`); got != 0 {
		t.Fatalf("watched_tables after unwatch: %d rows", got)
	}
	n2 := startNode(t, db)
	u2 := n2.resumingSubscriber(t, "ws", "una")
	u2.expectChange(t, "things", "create", "2", `{"other":"before unwatch"}`)
	n2.post(t, "/api/ws/push/notification", `{"userId":"una","title":"marker","body":"-"}`)
	if e := u2.next(t); e.Type != "notification" {
		t.Fatalf("after unwatch: %s", e.raw)
	}
}

// TestDBPushBigStatement: a 10 000-row INSERT ... SELECT is 10 000
// messages, all delivered, in row order.
func TestDBPushBigStatement(t *testing.T) {
	db := pgtest.NewDB(t)
	n := startNode(t, db, "--offline-max-count", "20000")
	pgExec(t, db, `CREATE TABLE items (id int PRIMARY KEY, owner text, v int)`, `SELECT push.watch_table('items', 'owner')`)
	s := n.resumingSubscriber(t, "sse", "bulk")
	pgExec(t, db, `INSERT INTO items SELECT g, 'bulk', g * 2 FROM generate_series(1, 10000) g`)
	for i := 1; i <= 10000; i++ {
		c := s.next(t).change(t)
		if c.RowID != strconv.Itoa(i) || c.Action != "create" {
			t.Fatalf("message %d: %+v", i, c)
		}
	}
	waitOutboxEmpty(t, db)
}

// TestDBPushConcurrentWritersTwoNodes: 4 application writers commit 2 000
// changes in transactions that stay open a little, while two nodes relay;
// a subscriber on each node gets every change exactly once, and each row's
// changes in commit order. (Fails if the relay walks the outbox with a
// cursor — a late-committing lower seq is skipped — or deletes outside the
// append transaction — two nodes relay the same rows.)
func TestDBPushConcurrentWritersTwoNodes(t *testing.T) {
	db := pgtest.NewDB(t)
	a := startNode(t, db, "--offline-max-count", "5000")
	b := startNode(t, db, "--offline-max-count", "5000")
	pgExec(t, db, `CREATE TABLE counters (id int PRIMARY KEY, owner text, v int)`, `SELECT push.watch_table('counters', 'owner')`)
	subs := []*subscriber{a.resumingSubscriber(t, "sse", "w"), b.resumingSubscriber(t, "ws", "w")}

	const writers, perWriter, rowsPerWriter = 4, 500, 10
	pool, err := pgxpool.New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			ctx := context.Background()
			for i := range perWriter {
				row := w*rowsPerWriter + i%rowsPerWriter
				q := `UPDATE counters SET v = v + 1 WHERE id = $1`
				if i < rowsPerWriter {
					q = `INSERT INTO counters VALUES ($1, 'w', 1)`
				}
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, q, row); err != nil {
						return err
					}
					time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for si, s := range subs {
		lastV := map[string]int{}
		seen := map[string]bool{}
		for range writers * perWriter {
			e := s.next(t)
			c := e.change(t)
			var d struct{ V int }
			_ = json.Unmarshal(c.Data, &d)
			k := c.RowID + "/" + strconv.Itoa(d.V)
			if seen[k] {
				t.Fatalf("subscriber %d: change %s twice", si, k)
			}
			seen[k] = true
			if d.V != lastV[c.RowID]+1 {
				t.Fatalf("subscriber %d: row %s went from v=%d to v=%d", si, c.RowID, lastV[c.RowID], d.V)
			}
			lastV[c.RowID] = d.V
		}
		select {
		case e := <-s.events:
			t.Fatalf("subscriber %d: one change too many: %s", si, e.raw)
		case <-time.After(300 * time.Millisecond):
		}
	}
	waitOutboxEmpty(t, db)
	if got := pgInt(t, db, `SELECT count(*) FROM push.messages WHERE type = 'data_change'`); got != writers*perWriter {
		t.Fatalf("log holds %d changes, want %d", got, writers*perWriter)
	}
}

// TestDBPushSameRowRace: two transactions racing to update one row; the
// second waits for the first's row lock, and the changes arrive in commit
// order, so the last value wins on the client.
func TestDBPushSameRowRace(t *testing.T) {
	db := pgtest.NewDB(t)
	n := startNode(t, db, "--offline-max-count", "1000")
	pgExec(t, db, `CREATE TABLE hot (id int PRIMARY KEY, owner text, v int, by text)`,
		`SELECT push.watch_table('hot', 'owner')`, `INSERT INTO hot VALUES (1, 'h', 0, 'init')`)
	s := n.resumingSubscriber(t, "sse", "h")
	s.expectChange(t, "hot", "create", "1", "")
	pool, err := pgxpool.New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const each = 150
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for range each {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `UPDATE hot SET v = v + 1, by = $1 WHERE id = 1`, strconv.Itoa(w)); err != nil {
						return err
					}
					time.Sleep(time.Duration(rand.IntN(800)) * time.Microsecond)
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	final := pgInt(t, db, `SELECT v FROM hot`)
	for want := 1; want <= 2*each; want++ {
		c := s.expectChange(t, "hot", "update", "1", "")
		var d struct{ V int }
		_ = json.Unmarshal(c.Data, &d)
		if d.V != want {
			t.Fatalf("update %d carries v=%d: not in commit order", want, d.V)
		}
	}
	if final != 2*each {
		t.Fatalf("table v=%d", final)
	}
}

// TestDBPushWhileStopped: changes committed while no pushd runs are
// delivered when one starts: live to a waiting subscriber's resume, and
// offline to a user who connects later.
func TestDBPushWhileStopped(t *testing.T) {
	db := pgtest.NewDB(t)
	n := startNode(t, db)
	pgExec(t, db, `CREATE TABLE notes (id int PRIMARY KEY, owner text, body text)`, `SELECT push.watch_table('notes', 'owner')`)
	n.stop(t)
	pgExec(t, db,
		`INSERT INTO notes VALUES (1, 'ida', 'one'), (2, 'ida', 'two')`,
		`UPDATE notes SET body = 'two!' WHERE id = 2`,
		`DELETE FROM notes WHERE id = 1`)
	if got := pgInt(t, db, `SELECT sum(n) FROM push.outbox`); got != 4 {
		t.Fatalf("outbox holds %d changes while pushd is down, want 4", got)
	}
	n2 := startNode(t, db)
	s := n2.resumingSubscriber(t, "ws", "ida")
	s.expectChange(t, "notes", "create", "1", `{"id":1,"owner":"ida","body":"one"}`)
	s.expectChange(t, "notes", "create", "2", "")
	s.expectChange(t, "notes", "update", "2", `{"id":2,"owner":"ida","body":"two!"}`)
	s.expectChange(t, "notes", "delete", "1", "")
	waitOutboxEmpty(t, db)
}

// TestDBPushApplicationRole: an application role with rights on its own
// table only (none on schema push) writes, and its changes are pushed; it
// can neither read the outbox nor watch tables.
func TestDBPushApplicationRole(t *testing.T) {
	db := pgtest.NewDB(t)
	n := startNode(t, db)
	role := fmt.Sprintf("pushd_app_%d", rand.Uint32())
	pgExec(t, db, `CREATE TABLE tasks (id int PRIMARY KEY, assignee text, title text)`,
		`SELECT push.watch_table('tasks', 'assignee')`,
		`CREATE ROLE `+role+` LOGIN`,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON tasks TO `+role)
	t.Cleanup(func() {
		pgExec(t, db, `REVOKE ALL ON tasks FROM `+role)
		pgExec(t, pgtest.AdminURL(t), `DROP ROLE IF EXISTS `+role)
	})
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	app := u.String()
	s := n.resumingSubscriber(t, "sse", "tom")
	pgExec(t, app, `INSERT INTO tasks VALUES (1, 'tom', 'write tests')`, `UPDATE tasks SET title = 'write more tests'`, `DELETE FROM tasks`)
	s.expectChange(t, "tasks", "create", "1", "")
	s.expectChange(t, "tasks", "update", "1", `{"id":1,"assignee":"tom","title":"write more tests"}`)
	s.expectChange(t, "tasks", "delete", "1", "")
	for _, stmt := range []string{`SELECT count(*) FROM push.outbox`, `SELECT push.watch_table('tasks', 'title')`} {
		if got := pgErr(t, app, stmt); !strings.Contains(got, "permission denied") {
			t.Errorf("%s as the application: %s", stmt, got)
		}
	}
}

// TestDBPushRelayKilled: a node relaying a large backlog is killed with
// SIGKILL in the middle; another node finishes it: every change in the log
// exactly once, in order, and delivered.
func TestDBPushRelayKilled(t *testing.T) {
	db := pgtest.NewDB(t)
	const backlog = 40000
	first := startNode(t, db)
	pgExec(t, db, `CREATE TABLE rows (id int PRIMARY KEY, owner text)`, `SELECT push.watch_table('rows', 'owner')`)
	first.stop(t)
	for i := 0; i < backlog; i += 10000 {
		pgExec(t, db, fmt.Sprintf(`INSERT INTO rows SELECT g, 'kim' FROM generate_series(%d, %d) g`, i+1, i+10000))
	}
	victim := startProc(t, "--database-url", db, "--offline-max-count", strconv.Itoa(backlog))
	deadline := time.Now().Add(30 * time.Second)
	for pgInt(t, db, `SELECT head FROM push.meta`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the relay did not start")
		}
		time.Sleep(time.Millisecond)
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.exited
	left := pgInt(t, db, `SELECT count(*) FROM push.outbox`)
	if left == 0 || left == backlog {
		t.Logf("killed with %d of %d changes left (the kill was not mid-backlog; the check below still holds)", left, backlog)
	}
	second := startNode(t, db, "--offline-max-count", strconv.Itoa(backlog))
	waitOutboxEmpty(t, db)
	if got := pgInt(t, db, `SELECT count(*) FROM (SELECT DISTINCT convert_from(payload, 'UTF8')::json->>'rowId' FROM push.messages) d`); got != backlog {
		t.Fatalf("%d distinct changes in the log, want %d", got, backlog)
	}
	if got := pgInt(t, db, `SELECT count(*) FROM push.messages`); got != backlog {
		t.Fatalf("%d messages in the log, want %d (a change doubled)", got, backlog)
	}
	s := second.resumingSubscriber(t, "sse", "kim")
	for i := 1; i <= backlog; i++ {
		if c := s.next(t).change(t); c.RowID != strconv.Itoa(i) {
			t.Fatalf("message %d is row %s", i, c.RowID)
		}
	}
}
