package client_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The tools the type check installs from npm, pinned so a new release
// cannot change the verdict.
const (
	typescriptVersion = "5.9.3"
	reactTypesVersion = "18.3.32"
)

// needNpm returns the path of npm, skipping the test without it (failing
// under CI, where .ci/run installs it).
func needNpm(t *testing.T) string {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err == nil {
		if _, err = exec.LookPath("node"); err == nil {
			return npm
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("node and npm are required under CI (.ci/run installs them): %v", err)
	}
	t.Skipf("node/npm not found (%v); install nodejs and npm to run the npm package tests", err)
	return ""
}

func runIn(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "npm_config_fund=false", "npm_config_audit=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// TestPackageInstallsAndTypeChecks packs the package as npm would publish
// it, installs the tarball into a fresh project with TypeScript and React's
// types, and compiles a program using PushClient, subscribe, the status
// events and the React hooks with tsc --strict; lines marked
// @ts-expect-error prove the types are not `any`. Node then imports both
// entry points through the exports map.
func TestPackageInstallsAndTypeChecks(t *testing.T) {
	npm := needNpm(t)
	pkgDir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	packed := runIn(t, pkgDir, npm, "pack", "--json", "--pack-destination", work)
	var info []struct {
		Filename string `json:"filename"`
		Files    []struct {
			Path string `json:"path"`
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(packed[strings.Index(packed, "["):]), &info); err != nil || len(info) != 1 {
		t.Fatalf("npm pack --json: %v\n%s", err, packed)
	}
	var files []string
	for _, f := range info[0].Files {
		files = append(files, f.Path)
	}
	slices.Sort(files)
	want := []string{"README.md", "client.d.ts", "client.js", "package.json", "react.d.ts", "react.js"}
	if !slices.Equal(files, want) {
		t.Fatalf("the package holds %v, want %v", files, want)
	}

	app := filepath.Join(work, "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(app, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package.json", `{"name":"app","private":true,"type":"module"}`)
	write("tsconfig.json", `{"compilerOptions":{"strict":true,"noEmit":true,"target":"ES2022","module":"NodeNext","moduleResolution":"NodeNext","lib":["ES2022","DOM"],"skipLibCheck":false},"files":["check.ts"]}`)
	write("check.ts", typeCheckProgram)
	start := time.Now()
	runIn(t, app, npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
		"typescript@"+typescriptVersion, "@types/react@"+reactTypesVersion, filepath.Join(work, info[0].Filename))
	t.Logf("npm install: %s", time.Since(start).Round(time.Millisecond))
	runIn(t, app, filepath.Join(app, "node_modules", ".bin", "tsc"), "--strict", "--noEmit", "-p", ".")

	out := runIn(t, app, "node", "--input-type=module", "-e",
		`import { PushClient, backoffDelay } from '@pushd/client';
		 import { createPushReact, PushClient as Again } from '@pushd/client/react';
		 console.log(typeof PushClient, typeof backoffDelay, typeof createPushReact, PushClient === Again);`)
	if strings.TrimSpace(out) != "function function function true" {
		t.Fatalf("node import of the entry points: %q", out)
	}
}

// typeCheckProgram uses the public API the way an application does.
const typeCheckProgram = `
import { PushClient, type Envelope, type StatusEvent, type Status } from '@pushd/client';
import { createPushReact } from '@pushd/client/react';
import * as React from 'react';

const client = new PushClient({
  url: 'https://push.example.com',
  token: async () => 'a-token',
  transport: 'auto',
  persistLastEventId: true,
});

const off: () => void = client.subscribe('notification', (m) => {
  const title: string = m.payload.title;
  const id: string | undefined = m.id;
  void title; void id;
});
client.subscribe('data_change', (m) => {
  const action: 'create' | 'update' | 'delete' = m.payload.action;
  void action;
});
client.subscribe('*', (m: Envelope) => { void m.type; });
client.on('status', (e: StatusEvent) => {
  const s: Status = e.status;
  const tr: 'sse' | 'ws' | null = e.transport;
  void s; void tr; void e.leader;
});
client.on('reset', (p) => { void p.reason; });
client.on('disconnect', ({ reason }) => { void reason; });
client.on('error', (e) => { const code: string = e.code; void code; });
void client.connect();
off();

// @ts-expect-error a notification's payload has no rowId
client.subscribe('notification', (m) => m.payload.rowId);
// @ts-expect-error unknown transport
new PushClient({ transport: 'carrier-pigeon' });
// @ts-expect-error status events carry a status, not a number
client.on('status', (e) => { const n: number = e.status; void n; });

const { PushProvider, usePush, useSubscription, useDashboardRealtime } = createPushReact(React);

function Widget(): React.ReactElement {
  const { status, isConnected, transport, lastMessage } = usePush();
  useSubscription('audit_log', (m) => { void m.payload.entry; });
  const { lastUpdate } = useDashboardRealtime<{ value: number }>({
    autoRefreshInterval: 5000,
    onUpdate: (p) => { const v: number = p.data.value; void v; },
    onRefresh: () => undefined,
  });
  void lastMessage; void lastUpdate;
  return React.createElement('span', null, status + ' ' + String(isConnected) + ' ' + String(transport));
}

export const app = React.createElement(PushProvider as React.FC<{ options: { transport: 'sse' }; children?: React.ReactNode }>,
  { options: { transport: 'sse' } }, React.createElement(Widget));
`
