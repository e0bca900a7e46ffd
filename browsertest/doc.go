// Package browsertest holds the end-to-end tests of pushd's browser client
// (/client.js), its React bindings (/react.js) and the demo dashboard (/),
// run in headless Chromium driven by chromedp against a real pushd process.
//
//	go test ./browsertest/
//
// Chromium comes from Debian's chromium package (apt-get install chromium);
// without it the tests are skipped, except when CI is set. The PostgreSQL
// variant of the restart test uses PUSH_TEST_DATABASE_URL. The dashboard
// screenshot is written under $PUSH_ARTIFACTS_DIR (default: the temp dir).
package browsertest
