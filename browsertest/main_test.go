package browsertest

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var (
	// pushdBin is the pushd binary built once for this test binary.
	pushdBin string
	// chromePath is the Chromium executable, empty when none is installed.
	chromePath string
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "pushd-browsertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "browsertest:", err)
		os.Exit(1)
	}
	code := run(m, dir)
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(m *testing.M, dir string) int {
	chromePath = findChromium()
	if chromePath == "" {
		fmt.Fprintln(os.Stderr, "browsertest: "+noChromium)
	}
	if chromePath != "" && os.Getenv("PUSH_TEST_PUSHD_BIN") != "" {
		pushdBin = os.Getenv("PUSH_TEST_PUSHD_BIN") // a prebuilt pushd, for iterating on the tests
	} else if chromePath != "" {
		pushdBin = filepath.Join(dir, "pushd")
		cmd := exec.Command("go", "build", "-o", pushdBin, "github.com/pushd/pushd/cmd/pushd")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "browsertest: building pushd: %v\n%s", err, out)
			return 1
		}
	}
	defer closeBrowser()
	return m.Run()
}

// findChromium returns $PUSH_CHROMIUM, or the first Chromium found on PATH.
func findChromium() string {
	if p := os.Getenv("PUSH_CHROMIUM"); p != "" {
		if p, err := exec.LookPath(p); err == nil {
			return p
		}
		return ""
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

const noChromium = "chromium not found: apt-get install chromium (or set PUSH_CHROMIUM) to run the browser tests"

// needBrowser skips the test when Chromium is missing, and fails it in CI.
func needBrowser(t *testing.T) {
	t.Helper()
	if chromePath != "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal(noChromium + " (CI is set: not skipping)")
	}
	t.Skip(noChromium)
}
