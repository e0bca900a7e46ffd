package main

import (
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// execEnv makes the test binary run main(): a real pushd process with real
// signals, without a separate build.
const execEnv = "PUSHD_TEST_EXEC"

// proc is a pushd process started from the test binary.
type proc struct {
	base           string
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan struct{}
	code           int
}

const (
	procKey    = "proc-test-api-key-0123456789"
	procSecret = "proc-test-jwt-secret-0123456789"
)

// startProc starts pushd on a free loopback port with the test secrets and
// args, and waits until it listens.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	all := append([]string{"--addr", "127.0.0.1:0", "--api-key", procKey, "--jwt-secret", procSecret, "--demo-user", ""}, args...)
	p := &proc{cmd: exec.Command(os.Args[0], all...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), execEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	re := regexp.MustCompile(`pushd listening on (http://[^ ]+)`)
	deadline := time.Now().Add(30 * time.Second)
	for p.base == "" {
		select {
		case <-p.exited:
			t.Fatalf("pushd exited %d: %s", p.code, p.stderr.String())
		default:
		}
		if m := re.FindStringSubmatch(p.stdout.String()); m != nil {
			p.base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("pushd did not start: %s", p.stderr.String())
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return p
}

// terminate sends SIGTERM and returns the exit status and how long the
// process took to exit (failing after limit).
func (p *proc) terminate(t *testing.T, limit time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(limit):
		t.Fatalf("pushd still running %v after SIGTERM; stderr:\n%s", limit, p.stderr.String())
	}
	return p.code, time.Since(start)
}
