// Package client is pushd's browser client as an npm package directory
// (package.json, README.md) and, for the server, as embedded files: pushd
// serves them at /client.js, /client.d.ts, /react.js and /react.d.ts, the
// same bytes an npm install gets.
package client

import "embed"

// Files are the module files of the package, named as in package.json.
//
//go:embed client.js client.d.ts react.js react.d.ts
var Files embed.FS
