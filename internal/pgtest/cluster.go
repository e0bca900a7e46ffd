package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cluster is a PostgreSQL server of its own, from local binaries, that a
// test may crash, stop and start again (store fault tests). Unlike the
// shared server it commits synchronously: a commit acknowledged before a
// crash must be there after it. fsync stays off, which only matters when
// the machine itself crashes.
type Cluster struct {
	dir, data string
	port      int
	bin       string
	prefix    []string // runuser when we are root: initdb refuses root
	durable   bool
}

// NewCluster starts a throwaway cluster for t, removed when t ends. It skips
// t (fails it under CI) when there are no PostgreSQL binaries.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := initCluster(true)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("pgtest: a cluster of its own: %v", err)
		}
		t.Skipf("pgtest: a cluster of its own needs PostgreSQL's initdb and pg_ctl: %v", err)
	}
	if err := c.start(); err != nil {
		c.remove()
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if pid, err := c.pid(); err == nil {
			c.stopPID(pid)
		}
		c.remove()
	})
	return c
}

// URL is the cluster's maintenance database.
func (c *Cluster) URL() string { return c.url() }

// NewDB creates an empty database on the cluster and returns its URL.
func (c *Cluster) NewDB(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := adminExec(ctx, c.url(), "CREATE DATABASE pushd"); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return WithDatabase(c.url(), "pushd")
}

// Crash stops the server the way a crash does (pg_ctl stop -m immediate):
// no shutdown checkpoint, connections cut, recovery at the next start.
func (c *Cluster) Crash(t testing.TB) {
	t.Helper()
	if err := c.ctl("stop", "-m", "immediate", "-w", "-t", "30"); err != nil {
		t.Fatalf("pgtest: crash: %v", err)
	}
}

// Stop shuts the server down cleanly (pg_ctl stop -m fast).
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.ctl("stop", "-m", "fast", "-w", "-t", "30"); err != nil {
		t.Fatalf("pgtest: stop: %v", err)
	}
}

// Start starts the server again on the same port and waits until it
// accepts connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.ctl(c.startArgs()...); err != nil {
		t.Fatalf("pgtest: start: %v", err)
	}
}

func initCluster(durable bool) (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pushd-pgtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, data: filepath.Join(dir, "data"), bin: bin, durable: durable}
	if os.Geteuid() == 0 {
		pu, err := user.Lookup("postgres")
		if err != nil {
			c.remove()
			return nil, fmt.Errorf("local cluster: running as root and no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(pu.Uid)
		gid, _ := strconv.Atoi(pu.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			c.remove()
			return nil, fmt.Errorf("local cluster: %w", err)
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			c.remove()
			return nil, fmt.Errorf("local cluster: %w", err)
		}
		c.prefix = []string{runuser, "-u", "postgres", "--"}
	}
	if err := c.run("initdb", "-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		c.remove()
		return nil, fmt.Errorf("local cluster: %w", err)
	}
	return c, nil
}

// start picks a free port and starts the server on it.
func (c *Cluster) start() error {
	var err error
	for attempt := 0; attempt < 3; attempt++ { // the port may be taken meanwhile
		if c.port, err = freePort(); err != nil {
			return fmt.Errorf("local cluster: %w", err)
		}
		if err = c.ctl(c.startArgs()...); err == nil {
			return nil
		}
	}
	return fmt.Errorf("local cluster: %w", err)
}

func (c *Cluster) startArgs() []string {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=300", c.port, c.dir)
	if !c.durable {
		opts += " -c synchronous_commit=off"
	}
	return []string{"-l", filepath.Join(c.dir, "server.log"), "-w", "-t", "30", "-o", opts, "start"}
}

func (c *Cluster) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

func (c *Cluster) ctl(args ...string) error {
	return c.run("pg_ctl", append([]string{"-D", c.data}, args...)...)
}

// run runs one of the PostgreSQL binaries, its output in a file: the server
// must not hold our output open.
func (c *Cluster) run(name string, args ...string) error {
	argv := append(append(append([]string{}, c.prefix...), filepath.Join(c.bin, name)), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	out, err := os.CreateTemp("", filepath.Base(c.dir)+"-"+name+"-*.log")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(b)))
	}
	return nil
}

func (c *Cluster) pid() (int, error) {
	line, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(line), "\n", 2)[0]))
	if err != nil {
		return 0, errors.New("local cluster: unreadable postmaster.pid")
	}
	return pid, nil
}

// stopPID asks the server for a fast shutdown and waits up to 10 s.
func (c *Cluster) stopPID(pid int) {
	_ = syscall.Kill(pid, syscall.SIGINT)
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) remove() { _ = os.RemoveAll(c.dir) }
