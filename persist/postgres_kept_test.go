package persist

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/pgtest"
	"github.com/pushd/pushd/stream"
	"github.com/pushd/pushd/stream/storetest"
)

// keptScenario appends the same drafts to the memory store and to one of
// several PostgreSQL stores on one database (several nodes), and requires
// identical answers after each step: the append-time trim may skip a user
// only when nothing of theirs can be outside the window.
type keptScenario struct {
	t     *testing.T
	clock *storetest.Clock
	mem   *Memory
	nodes []*Postgres
	head  uint64
	step  int
}

func newKeptScenario(t *testing.T, maxCount, nodes int) *keptScenario {
	t.Helper()
	clock := storetest.NewClock(time.Now().Add(-48 * time.Hour))
	r := stream.Retention{MaxCount: maxCount, TTL: time.Hour, Now: clock.Now}
	sc := &keptScenario{t: t, clock: clock, mem: NewMemory(r)}
	sc.mem.SetFeed(func([]*stream.Message) {})
	url := pgtest.NewDB(t)
	for range nodes {
		pg := openPG(t, url, r)
		pg.SetFeed(func([]*stream.Message) {})
		sc.nodes = append(sc.nodes, pg)
	}
	return sc
}

func (sc *keptScenario) append(node int, ds ...stream.Draft) {
	sc.t.Helper()
	sc.step++
	mm, err1 := sc.mem.Append(bg, ds)
	pm, err2 := sc.nodes[node].Append(bg, ds)
	if err1 != nil || err2 != nil {
		sc.t.Fatalf("step %d: append: %v / %v", sc.step, err1, err2)
	}
	if mm[len(mm)-1].Seq != pm[len(pm)-1].Seq {
		sc.t.Fatalf("step %d: positions differ", sc.step)
	}
	sc.head = mm[len(mm)-1].Seq
	compareStores(sc.t, fmt.Sprintf("step %d (node %d)", sc.step, node), sc.mem, sc.nodes[node],
		[]string{"a", "b", "c", "x"}, sc.head)
}

func stamped(d stream.Draft, at time.Time) stream.Draft {
	d.Timestamp = at.UnixMilli()
	return d
}

func TestPostgresTrimSkip(t *testing.T) {
	t.Parallel()
	t.Run("count", func(t *testing.T) {
		t.Parallel()
		sc := newKeptScenario(t, 3, 1)
		for i := range 6 {
			sc.append(0, note("a", i))
		}
		sc.append(0, note("a", 6), note("b", 6), note("a", 7), note("a", 8))
		if b, ok := sc.nodes[0].kept.users["b"]; !ok || b.n != 1 {
			t.Fatalf("b's bounds after its first append: %+v %v, want n=1", b, ok)
		}
		// b is known and far below the cap: skipped, and still exact.
		sc.append(0, note("b", 9), bcast(10), note("b", 11))
		sc.append(0, bcast(12), bcast(13), note("b", 14))
	})
	t.Run("loaded at start", func(t *testing.T) {
		t.Parallel()
		sc := newKeptScenario(t, 3, 1)
		sc.append(0, note("a", 1), note("a", 2), note("b", 3), bcast(4))
		// A second node starts on this log: it loads the bounds and is
		// complete, so c's first message is not looked at.
		restarted := openPG(t, sc.nodes[0].pool.Config().ConnConfig.ConnString(), sc.mem.r)
		restarted.SetFeed(func([]*stream.Message) {})
		if !restarted.kept.complete || restarted.kept.users["a"] != (keptBounds{n: 2, first: 1, oldest: sc.clock.Now().UnixMilli()}) {
			t.Fatalf("loaded: complete %v users %+v", restarted.kept.complete, restarted.kept.users)
		}
		sc.nodes = append(sc.nodes, restarted)
		sc.append(1, note("c", 5), note("a", 6), note("a", 7))
		sc.append(1, note("b", 8), note("c", 9))
		if b := restarted.kept.users["c"]; b.n != 2 {
			t.Fatalf("c after two skipped appends: %+v, want n=2", b)
		}
	})
	t.Run("own message past the TTL", func(t *testing.T) {
		t.Parallel()
		sc := newKeptScenario(t, 100, 1)
		sc.append(0, note("a", 1))
		sc.append(0, note("a", 2))
		sc.clock.Add(90 * time.Minute)
		sc.append(0, note("a", 3)) // a1 and a2 are past the TTL
		sc.append(0, note("a", 4))
	})
	t.Run("own message below a broadcast past the TTL", func(t *testing.T) {
		t.Parallel()
		sc := newKeptScenario(t, 100, 1)
		sc.append(0, note("a", 1))
		sc.append(0, note("a", 2))
		// A broadcast stamped long ago (another node's clock): the window
		// ends there, so a1 and a2, below it, are out though they are new.
		sc.append(0, stamped(bcast(3), sc.clock.Now().Add(-2*time.Hour)))
		sc.append(0, note("a", 4))
	})
	t.Run("another node appended in between", func(t *testing.T) {
		t.Parallel()
		sc := newKeptScenario(t, 3, 2)
		sc.append(0, note("c", 1), note("c", 2)) // node 0 knows c: 2
		sc.append(1, note("c", 3), note("c", 4)) // node 1 trims c to 3
		sc.append(0, note("x", 5))               // node 0 sees it was not alone
		sc.append(0, note("c", 6))               // so c is looked at again
		sc.append(1, note("a", 7))
		sc.append(0, note("c", 8), note("a", 9))
		// Now in the group that finds the other node's appends.
		sc.append(0, note("x", 10)) // node 0 gathers bounds again
		sc.append(0, note("b", 10)) // node 0 knows b: 1
		if b := sc.nodes[0].kept.users["b"]; b.n != 1 {
			t.Fatalf("node 0's bounds of b: %+v, want n=1", b)
		}
		sc.append(1, note("b", 11), note("b", 12), note("b", 13))
		sc.append(0, note("b", 14))
	})
	t.Run("cache full", func(t *testing.T) {
		t.Parallel()
		sc := newKeptScenario(t, 4, 1)
		sc.nodes[0].kept.limit = 1
		for i := range 6 {
			sc.append(0, note("a", i), note("b", i), note("c", i))
		}
		if n := len(sc.nodes[0].kept.users); n > 1 {
			t.Fatalf("cache holds %d users, limit 1", n)
		}
	})
}

// guardArgs spreads a trim guard into its statement arguments.
func guardArgs(g trimGuard) (n, first, oldest []int64, base int64, gather bool) {
	return g.n, g.first, g.oldest, g.base, g.gather
}

// TestKeptCache: the bounds a group hands to the trim statement, and what a
// commit keeps.
func TestKeptCache(t *testing.T) {
	c := newKeptCache()
	g := c.group()
	n, _, _, base, gather := guardArgs(g.guard([]string{"a"}, []ownDrafts{{count: 2, firstOrd: 1, minTS: 100}}))
	if n[0] != -1 || base != -1 || !gather {
		t.Fatalf("unknown cache: n=%v base=%d gather=%v, want -1, -1, true", n, base, gather)
	}
	g.commit(10, 13, []map[string][]int64{{"a": {2, 11, 100}}})
	if c.head != 13 || c.users["a"] != (keptBounds{n: 2, first: 11, oldest: 100}) || c.foreign {
		t.Fatalf("after the first group: head %d users %v foreign %v", c.head, c.users, c.foreign)
	}

	// Known: a is skipped (nothing returned) and its bounds grow; b is
	// looked at and had something dropped: forgotten.
	g = c.group()
	n, first, oldest, base, _ := guardArgs(g.guard([]string{"a", "b"}, []ownDrafts{{count: 1, firstOrd: 2, minTS: 90}, {count: 1, firstOrd: 1, minTS: 95}}))
	if n[0] != 3 || first[0] != 11 || oldest[0] != 90 || n[1] != -1 || base != 13 {
		t.Fatalf("guard: n=%v first=%v oldest=%v base=%d", n, first, oldest, base)
	}
	// A second segment of the same group sees the first one's drafts.
	g.advance(2)
	n, _, _, base, _ = guardArgs(g.guard([]string{"a"}, []ownDrafts{{count: 1, firstOrd: 1, minTS: 95}}))
	if n[0] != 4 || base != 15 {
		t.Fatalf("second segment: n=%v base=%d, want 4, 15", n, base)
	}
	g.commit(13, 16, []map[string][]int64{{"b": nil}, {}})
	if c.users["a"] != (keptBounds{n: 4, first: 11, oldest: 90}) {
		t.Fatalf("a after skips: %+v", c.users["a"])
	}
	if _, known := c.lookup("b"); known {
		t.Fatal("b had messages dropped and is still known")
	}

	// A user with none kept starts at the segment's first own position.
	c.users["z"] = keptBounds{}
	g = c.group()
	n, first, _, _, _ = guardArgs(g.guard([]string{"z"}, []ownDrafts{{count: 1, firstOrd: 3, minTS: 50}}))
	if n[0] != 1 || first[0] != 16+3 {
		t.Fatalf("z: n=%v first=%v, want 1, 19", n, first)
	}

	// Another writer appended: everything is forgotten, bounds are not
	// gathered on the next group, then gathered again.
	g.commit(20, 23, []map[string][]int64{{"z": nil}})
	if _, known := c.lookup("a"); known || !c.foreign || c.head != 23 {
		t.Fatalf("after another writer: users %v foreign %v head %d", c.users, c.foreign, c.head)
	}
	g = c.group()
	if _, _, _, _, gather := guardArgs(g.guard([]string{"a"}, []ownDrafts{{count: 1, firstOrd: 1, minTS: 1}})); gather {
		t.Fatal("gathering bounds right after another writer's appends")
	}
	g.commit(23, 24, []map[string][]int64{{"a": nil}})
	if c.foreign {
		t.Fatal("still foreign after a group that followed its own")
	}

	c.reset()
	if c.head != -1 || len(c.users) != 0 {
		t.Fatalf("reset: head %d users %v", c.head, c.users)
	}

	// Complete: a user it does not hold has none kept, until a user cannot
	// be recorded.
	c = newKeptCache()
	c.complete, c.head, c.limit = true, 0, 1
	if b, known := c.lookup("new"); !known || b.n != 0 {
		t.Fatalf("complete cache: new user %+v %v, want none kept", b, known)
	}
	c.set("a", keptBounds{n: 1})
	c.set("b", keptBounds{n: 1}) // over the limit
	if c.complete {
		t.Fatal("still complete after a user could not be recorded")
	}
	if _, known := c.lookup("b"); known {
		t.Fatal("b known though it could not be recorded")
	}
}
