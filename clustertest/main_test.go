package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pushd/pushd/internal/pgtest"
)

// pushdBin is the pushd binary built once for this test binary (or
// $PUSH_TEST_PUSHD_BIN, a prebuilt one, for iterating on the tests).
var pushdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pushd-clustertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "clustertest:", err)
		os.Exit(1)
	}
	code := run(m, dir)
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(m *testing.M, dir string) int {
	if pushdBin = os.Getenv("PUSH_TEST_PUSHD_BIN"); pushdBin == "" {
		pushdBin = filepath.Join(dir, "pushd")
		cmd := exec.Command("go", "build", "-o", pushdBin, "github.com/pushd/pushd/cmd/pushd")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "clustertest: building pushd: %v\n%s", err, out)
			return 1
		}
	}
	return pgtest.Main(m)
}
