package persist

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pushd/pushd/internal/pgtest"
	"github.com/pushd/pushd/stream"
	"github.com/pushd/pushd/stream/storetest"
)

func keyedNote(user string, n int, key string) stream.Draft {
	d := note(user, n)
	d.IdempotencyKey, d.Fingerprint = key, "fp-"+key
	return d
}

// TestPostgresKeysSurviveRestart: a key is in the database, not in the
// process: a store opened again answers a repeat with the first answer.
func TestPostgresKeysSurviveRestart(t *testing.T) {
	url := pgtest.NewDB(t)
	s := openPG(t, url, big())
	s.SetFeed(func([]*stream.Message) {})
	first := mustAppend(t, s, keyedNote("a", 1, "k1"))
	_ = s.Close(bg)

	s2 := openPG(t, url, big())
	s2.SetFeed(func([]*stream.Message) {})
	again := mustAppend(t, s2, keyedNote("a", 1, "k1"))
	if again[0].ID != first[0].ID || again[0].Timestamp != first[0].Timestamp {
		t.Fatalf("after a restart the repeat got %s/%d, want the first answer %s/%d", again[0].ID, again[0].Timestamp, first[0].ID, first[0].Timestamp)
	}
	if h, _ := s2.Head(bg); h != first[0].Seq {
		t.Fatalf("head = %d, want %d: the repeat was stored", h, first[0].Seq)
	}
}

// TestPostgresKeysAcrossNodes: several nodes on one database retry the same
// keys at the same time; each key is stored once and every node answers
// with that message. The nodes look keys up before taking the append lock,
// so some groups lose the race and are planned again.
func TestPostgresKeysAcrossNodes(t *testing.T) {
	url := pgtest.NewDB(t)
	nodes := []*Postgres{openPG(t, url, big()), openPG(t, url, big()), openPG(t, url, big())}
	var feeds [3]feedLog
	for i, n := range nodes {
		n.SetFeed(feeds[i].feed)
	}
	const keys, tries = 40, 4 // tries per node and key
	var mu sync.Mutex
	answers := map[string]map[string]bool{} // key -> ids answered
	var wg sync.WaitGroup
	for _, n := range nodes {
		for range tries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range keys {
					key := fmt.Sprint("k", k)
					ms, err := n.Append(bg, []stream.Draft{keyedNote("u", k, key)})
					if err != nil {
						t.Errorf("append %s: %v", key, err)
						return
					}
					mu.Lock()
					if answers[key] == nil {
						answers[key] = map[string]bool{}
					}
					answers[key][ms[0].ID] = true
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	for key, ids := range answers {
		if len(ids) != 1 {
			t.Errorf("key %s answered with %d different ids: %v", key, len(ids), ids)
		}
	}
	if h, _ := nodes[0].Head(bg); h != keys {
		t.Fatalf("head = %d, want %d: a key was stored more than once", h, keys)
	}
	for i := range nodes {
		waitUntil(t, "every feed", 10*time.Second, func() bool { return feeds[i].len() >= keys })
		feeds[i].dense(t, fmt.Sprint("node ", i), keys)
	}
}

// TestPostgresKeysPurged: the retention pass deletes expired keys (and only
// those) from push.idempotency.
func TestPostgresKeysPurged(t *testing.T) {
	url := pgtest.NewDB(t)
	clock := storetest.NewClock(time.Now())
	s := openPG(t, url, stream.Retention{MaxCount: 100, TTL: 48 * time.Hour, IdempotencyTTL: time.Hour, Now: clock.Now})
	s.SetFeed(func([]*stream.Message) {})
	mustAppend(t, s, keyedNote("a", 1, "old1"), keyedNote("a", 2, "old2"))
	clock.Add(30 * time.Minute)
	mustAppend(t, s, keyedNote("a", 3, "young"))
	clock.Add(45 * time.Minute)
	if _, err := s.Expire(bg); err != nil {
		t.Fatal(err)
	}
	rows, err := s.pool.Query(bg, `SELECT key FROM push.idempotency ORDER BY key`)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(left) != "[young]" {
		t.Fatalf("keys left after the retention pass: %v, want [young]", left)
	}
}
