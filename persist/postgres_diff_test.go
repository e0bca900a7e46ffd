package persist

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/pgtest"
	"github.com/pushd/pushd/stream"
	"github.com/pushd/pushd/stream/storetest"
)

// TestPostgresMatchesMemory drives the memory store and the PostgreSQL store
// through the same random history (multi-draft appends mixing users,
// conflated widgets, broadcasts with exclusions; time passing; expiry runs;
// deliveries) and requires identical answers after every step: every user's
// stream and "trimmed" from several resume points, cursors and queue stats.
func TestPostgresMatchesMemory(t *testing.T) {
	seed := uint64(7)
	if v, err := strconv.ParseUint(os.Getenv("PUSHD_DIFF_SEED"), 10, 64); err == nil {
		seed = v // explore other histories: PUSHD_DIFF_SEED=n go test -run MatchesMemory
	}
	for _, maxCount := range []int{0, 1, 3, 6} {
		t.Run(fmt.Sprint("MaxCount", maxCount), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(maxCount), seed))
			clock := storetest.NewClock(time.Now().Add(-48 * time.Hour))
			r := stream.Retention{MaxCount: maxCount, TTL: time.Hour, Now: clock.Now}
			mem := NewMemory(r)
			pg := openPG(t, pgtest.NewDB(t), r)
			pg.purgeAfter = 0 // deleting rows must not change any answer
			for _, s := range []stream.Store{mem, pg} {
				s.SetFeed(func([]*stream.Message) {})
			}
			users := []string{"a", "b", "c", "d"}
			var head uint64
			var history []string
			for step := range 120 {
				var op string
				switch x := rng.IntN(10); {
				case x < 6:
					var ds []stream.Draft
					for range 1 + rng.IntN(4) {
						u := users[rng.IntN(len(users))]
						switch y := rng.IntN(10); {
						case y < 4:
							ds = append(ds, note(u, step))
						case y < 7:
							ds = append(ds, stream.Draft{Type: stream.TypeDashboardUpdate, UserID: u, Key: fmt.Sprint("w", rng.IntN(2)), Payload: []byte(`{}`)})
						default:
							var ex []string
							for _, v := range users {
								if rng.IntN(4) == 0 {
									ex = append(ex, v)
								}
							}
							ds = append(ds, bcast(step, ex...))
						}
					}
					op = "append"
					for _, d := range ds {
						if d.UserID == "" {
							op += fmt.Sprintf(" bcast-%v", d.Exclude)
						} else {
							op += " " + d.UserID + "/" + d.Key
						}
					}
					mm, err1 := mem.Append(bg, ds)
					pm, err2 := pg.Append(bg, ds)
					if err1 != nil || err2 != nil {
						t.Fatalf("append: %v / %v", err1, err2)
					}
					for i := range mm {
						if mm[i].Seq != pm[i].Seq || mm[i].Timestamp != pm[i].Timestamp {
							t.Fatalf("step %d: append positions differ: %d/%d", step, mm[i].Seq, pm[i].Seq)
						}
					}
					head = mm[len(mm)-1].Seq
				case x < 8:
					d := time.Duration(rng.IntN(25)) * time.Minute
					op = fmt.Sprint("clock +", d)
					clock.Add(d)
				case x < 9:
					op = "expire"
					n1, err1 := mem.Expire(bg)
					n2, err2 := pg.Expire(bg)
					if err1 != nil || err2 != nil || n1 != n2 {
						t.Fatalf("step %d: expire dropped %d (memory) vs %d (postgres); %v %v", step, n1, n2, err1, err2)
					}
				default:
					if head == 0 {
						continue
					}
					d := stream.Delivery{UserID: users[rng.IntN(len(users))], Seq: 1 + rng.Uint64N(head), Count: rng.IntN(3)}
					op = fmt.Sprintf("deliver %+v", d)
					if err := mem.MarkDelivered(bg, []stream.Delivery{d}); err != nil {
						t.Fatal(err)
					}
					if err := pg.MarkDelivered(bg, []stream.Delivery{d}); err != nil {
						t.Fatal(err)
					}
				}
				history = append(history, fmt.Sprintf("step %d: %s", step, op))
				compareStores(t, strings.Join(history[max(0, len(history)-6):], "\n"), mem, pg, append(users, "newcomer"), head)
			}
		})
	}
}

func compareStores(t *testing.T, at string, mem *Memory, pg *Postgres, users []string, head uint64) {
	t.Helper()
	afters := []uint64{0, head / 3, head / 2, head - min(head, 2), head}
	for _, u := range users {
		for _, after := range slices.Compact(afters) {
			m1, tr1, err1 := mem.ReadStream(bg, u, after, 1000)
			m2, tr2, err2 := pg.ReadStream(bg, u, after, 1000)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: read: %v / %v", at, err1, err2)
			}
			if fmt.Sprint(msgSeqs(m1)) != fmt.Sprint(msgSeqs(m2)) || tr1 != tr2 {
				t.Fatalf("%s: %s after %d: memory %v trimmed=%v, postgres %v trimmed=%v",
					at, u, after, msgSeqs(m1), tr1, msgSeqs(m2), tr2)
			}
			for i := range m1 {
				a, b := m1[i], m2[i]
				if a.Type != b.Type || a.UserID != b.UserID || a.Key != b.Key ||
					string(a.Payload) != string(b.Payload) || a.Timestamp != b.Timestamp || fmt.Sprint(a.Exclude) != fmt.Sprint(b.Exclude) {
					t.Fatalf("%s: message differs:\n memory   %+v\n postgres %+v", at, a, b)
				}
			}
		}
		c1, k1, _ := mem.DeliveredCursor(bg, u)
		c2, k2, err := pg.DeliveredCursor(bg, u)
		if err != nil || c1 != c2 || k1 != k2 {
			t.Fatalf("%s: cursor of %s: memory %d %v, postgres %d %v (%v)", at, u, c1, k1, c2, k2, err)
		}
	}
	s1, _ := mem.QueueStats(bg)
	s2, err := pg.QueueStats(bg)
	if err != nil || s1 != s2 {
		t.Fatalf("%s: stats: memory %+v, postgres %+v (%v)", at, s1, s2, err)
	}
	h2, err := pg.Head(bg)
	if err != nil || h2 != head {
		t.Fatalf("%s: head %d, want %d (%v)", at, h2, head, err)
	}
}

func msgSeqs(ms []*stream.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}
