// Package pgtest finds a PostgreSQL server for tests and gives each test a
// fresh database (CONTRACT §8):
//
//  1. PUSH_TEST_DATABASE_URL, when set (what .ci/run does);
//  2. else a postgres:15 container via dockertest, when a Docker daemon
//     answers;
//  3. else a throwaway cluster from local binaries (initdb, pg_ctl on PATH or
//     in /usr/lib/postgresql/*/bin), on a free port in a temporary directory,
//     run as the postgres user when we are root;
//  4. else the test is skipped with one line saying how to run it — or fails
//     when CI is set, so CI never loses these tests silently.
//
// A server started here is stopped by Main at the end of the test binary (and
// by a watchdog process if the binary dies first). Only test code imports
// this package, which keeps dockertest out of the pushd binary.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
)

var (
	once     sync.Once
	adminURL string // a database to run CREATE DATABASE from
	why      string // why no server was found
	mu       sync.Mutex
	stops    []func()
)

// Main runs the tests and then stops any server started for them. Use it
// from TestMain: func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	stops = nil
	return code
}

// AdminURL returns the URL of the server's maintenance database, skipping
// (or, under CI, failing) t when there is no server.
func AdminURL(t testing.TB) string {
	t.Helper()
	once.Do(find)
	if adminURL == "" {
		msg := "no PostgreSQL for tests (" + why + "): set PUSH_TEST_DATABASE_URL=postgres://user@host:port/db, or install PostgreSQL (initdb, pg_ctl)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return adminURL
}

// NewDB creates an empty database for t and returns its URL. It is dropped
// (with its connections) when t ends.
func NewDB(t testing.TB) string {
	t.Helper()
	admin := AdminURL(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "pushd_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := adminExec(ctx, admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return WithDatabase(admin, name)
}

// WithDatabase returns url pointing at database name instead.
func WithDatabase(rawURL, name string) string {
	if strings.HasPrefix(rawURL, "postgres://") || strings.HasPrefix(rawURL, "postgresql://") {
		if u, err := url.Parse(rawURL); err == nil {
			u.Path = "/" + name
			u.RawPath = ""
			return u.String()
		}
	}
	return rawURL + " dbname=" + name // keyword/value form: the last one wins
}

func adminExec(ctx context.Context, admin, sql string) error {
	for attempt := 0; ; attempt++ {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, sql)
		conn.Close(context.Background())
		// 55006: the template is busy (another CREATE DATABASE from it).
		var pgErr *pgconn.PgError
		if err != nil && errors.As(err, &pgErr) && pgErr.Code == "55006" && attempt < 20 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		return err
	}
}

func onStop(f func()) {
	mu.Lock()
	stops = append(stops, f)
	mu.Unlock()
}

func find() {
	if u := os.Getenv("PUSH_TEST_DATABASE_URL"); u != "" {
		adminURL = u
		return
	}
	var reasons []string
	u, err := startDocker()
	if err == nil {
		adminURL = u
		return
	}
	reasons = append(reasons, err.Error())
	u, err = startLocal()
	if err == nil {
		adminURL = u
		return
	}
	reasons = append(reasons, err.Error())
	why = strings.Join(reasons, "; ")
}

func startDocker() (string, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return "", fmt.Errorf("docker: %w", err)
	}
	// NewPool succeeds without a daemon; only Ping asks it.
	if err := pool.Client.Ping(); err != nil {
		return "", fmt.Errorf("docker: %w", err)
	}
	pool.MaxWait = time.Minute
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository: "postgres",
		Tag:        "15",
		Env:        []string{"POSTGRES_HOST_AUTH_METHOD=trust"},
		Cmd:        []string{"postgres", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300"},
	}, func(hc *docker.HostConfig) {
		hc.AutoRemove = true
		hc.RestartPolicy = docker.RestartPolicy{Name: "no"}
	})
	if err != nil {
		return "", fmt.Errorf("docker: %w", err)
	}
	_ = res.Expire(1800) // a crashed test binary does not leave it running for ever
	u := "postgres://postgres@" + res.GetHostPort("5432/tcp") + "/postgres?sslmode=disable"
	err = pool.Retry(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
	if err != nil {
		_ = pool.Purge(res)
		return "", fmt.Errorf("docker: postgres did not come up: %w", err)
	}
	onStop(func() { _ = pool.Purge(res) })
	return u, nil
}

// binDir finds a directory holding initdb and pg_ctl.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin")
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func startLocal() (string, error) {
	c, err := initCluster(false)
	if err != nil {
		return "", err
	}
	if err := c.start(); err != nil {
		c.remove()
		return "", err
	}
	pid, err := c.pid()
	if err != nil {
		c.remove()
		return "", err
	}
	// The watchdog stops the server if this binary dies without Main.
	watch := exec.Command("sh", "-c", fmt.Sprintf(
		"while kill -0 %d 2>/dev/null; do sleep 1; done; kill -INT %d 2>/dev/null; sleep 3; rm -rf %s",
		os.Getpid(), pid, c.dir))
	watch.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := watch.Start(); err != nil {
		_ = syscall.Kill(pid, syscall.SIGINT)
		c.remove()
		return "", fmt.Errorf("local cluster: %w", err)
	}
	onStop(func() {
		_ = watch.Process.Kill()
		_ = watch.Wait()
		c.stopPID(pid)
		c.remove()
	})
	return c.url(), nil
}
