// Package sql holds pushd's PostgreSQL schema as ordered migrations, embedded
// in the binary, and the constants every writer of the log shares.
//
// Everything lives in the schema "push"; nothing is created in "public".
// Migrations are applied in version order by persist.Migrate (pushd migrate,
// and at start), each in its own transaction, and recorded in
// push.schema_migrations. A migration is never edited once released: change
// the schema with a new file.
package sql

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var files embed.FS

// Advisory lock keys (pg_advisory_lock takes one bigint). Every transaction
// that assigns positions in push.messages must hold AppendLock, so positions
// become visible in order across all nodes.
const (
	// AppendLock serialises writers of the log (transaction-level).
	AppendLock int64 = 0x7075736801 // "push" 01
	// MigrateLock serialises schema migrations (session-level).
	MigrateLock int64 = 0x7075736802
	// ExpireLock lets one node at a time run the retention pass (session-level).
	ExpireLock int64 = 0x7075736803
)

// NotifyChannel is the LISTEN/NOTIFY channel that wakes every node after a
// commit to the log. The payload names the sending node, never data.
const NotifyChannel = "push_log"

// OutboxChannel is the channel the triggers of push.watch_table notify (once
// per statement, constant payload) when they wrote changes to push.outbox;
// it wakes the relay of every node.
const OutboxChannel = "push_outbox"

// Migration is one schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(files, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sql: migration %q is not named NNNN_name.sql", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("sql: migrations %q and %q share version %d", prev, name, v)
		}
		seen[v] = name
		b, err := files.ReadFile(path.Join("migrations", name))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: strings.TrimSuffix(name, ".sql"), SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}
