package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestOrdersPageFollowsTheDatabase runs the README's database-driven page
// (testdata/orders.html) in Chromium: a table watched with push.watch_table,
// the application's own SQL, and the page's table kept equal to the rows of
// alice, through inserts, updates, deletes, an owner change and a pushd
// restart during which the application keeps writing.
func TestOrdersPageFollowsTheDatabase(t *testing.T) {
	needBrowser(t)
	dbURL, ok := testDatabase(t)
	if !ok {
		t.Skip("PUSH_TEST_DATABASE_URL not set: skipping the database-driven page (.ci/run sets it)")
	}
	p := startPushd(t, "--database-url", dbURL)
	ctx := context.Background()
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE TABLE orders (id bigserial PRIMARY KEY, owner_id text NOT NULL, status text, total numeric)`)
	exec(`SELECT push.watch_table('public.orders', 'owner_id')`)
	exec(`INSERT INTO orders (owner_id, status, total) VALUES ('alice', 'new', 42), ('alice', 'new', 7), ('bob', 'new', 1)`)

	// The application: its page, its two endpoints, and pushd behind it.
	upstream, _ := url.Parse(p.URL())
	mux := http.NewServeMux()
	mux.Handle("/orders.html", http.FileServer(http.Dir("testdata")))
	mux.HandleFunc("/my-app/orders", func(w http.ResponseWriter, r *http.Request) {
		var js []byte
		err := db.QueryRow(r.Context(), `SELECT coalesce(json_agg(o ORDER BY id), '[]') FROM orders o WHERE owner_id = 'alice'`).Scan(&js)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(js)
	})
	mux.HandleFunc("/my-app/push-token", func(w http.ResponseWriter, r *http.Request) {
		// Not p.call: this runs on the server's goroutine, also while
		// pushd is down (the page asks before every reconnection).
		req, _ := http.NewRequest("POST", p.URL()+"/api/ws/connect", strings.NewReader(`{"userId":"alice"}`))
		req.Header.Set("Authorization", "Bearer "+p.apiKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		var out struct{ Token string }
		if res.StatusCode != 200 || json.NewDecoder(res.Body).Decode(&out) != nil {
			http.Error(w, "no token", http.StatusBadGateway)
			return
		}
		fmt.Fprint(w, out.Token)
	})
	mux.Handle("/", httputil.NewSingleHostReverseProxy(upstream))
	app := httptest.NewServer(mux)
	t.Cleanup(func() { app.CloseClientConnections(); app.Close() }) // after the tab's cleanup

	b := newBrowser(t)
	tb := openTab(t, b, "orders", app.URL+"/orders.html")
	page := `[...document.querySelectorAll('#orders tr')].map(tr => [...tr.cells].map(c => c.textContent).join('|')).join(';')`
	// want is alice's rows in the database, as the page shows them.
	want := func() string {
		t.Helper()
		rows, err := db.Query(ctx, `SELECT id, status, total FROM orders WHERE owner_id = 'alice' ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			ID     int64
			Status string
			Total  float64
		}
		rs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, fmt.Sprintf("%d|%s|%v", r.ID, r.Status, r.Total))
		}
		return strings.Join(out, ";")
	}
	settled := func(what string) {
		t.Helper()
		w := want()
		tb.waitFor(what, fmt.Sprintf("window.ready && window.pushStatus() === 'open' && (%s) === %s", page, jsString(w)), page, wait)
	}
	settled("the initial orders")

	exec(`INSERT INTO orders (owner_id, status, total) VALUES ('alice', 'new', 99)`)
	exec(`UPDATE orders SET status = 'paid' WHERE id = 1`)
	exec(`DELETE FROM orders WHERE id = 2`)
	exec(`UPDATE orders SET owner_id = 'alice' WHERE id = 3`) // bob's order moves to alice
	exec(`UPDATE orders SET owner_id = 'carol' WHERE id = 1`) // and alice's first to carol
	settled("the page to follow inserts, updates, deletes and owner changes")

	// pushd goes away while the application keeps writing; the page
	// catches up when it is back, without a reload (no reset).
	p.stop()
	exec(`INSERT INTO orders (owner_id, status, total) SELECT 'alice', 'bulk', g FROM generate_series(1, 50) g`)
	exec(`UPDATE orders SET status = 'shipped' WHERE owner_id = 'alice' AND total < 10`)
	p.start()
	settled("the changes committed while pushd was down")
	var resets int
	tb.mustEval("window.resets", &resets)
	if resets != 0 {
		t.Errorf("the page saw %d resets; nothing was lost", resets)
	}
	code, stats := p.call("GET", "/api/ws/stats", nil)
	if code != 200 || stats["outboxPending"] != float64(0) {
		b, _ := json.Marshal(stats)
		t.Errorf("stats %d %s: want outboxPending 0", code, b)
	}
}
