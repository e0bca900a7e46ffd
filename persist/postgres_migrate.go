package persist

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	pushsql "github.com/pushd/pushd/sql"
)

// Migrate applies the pending schema migrations of package sql to the
// database at url. It is idempotent, and safe when several nodes start at
// once: they queue on a session advisory lock and the later ones find
// nothing left to do.
func Migrate(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("persist: database url: %w", err)
	}
	return migrate(ctx, cfg)
}

func migrate(ctx context.Context, cfg *pgx.ConnConfig) error {
	fail := func(op string, err error) error { return classify(ctx, "persist: migrate: "+op, err) }
	migrations, err := pushsql.Migrations()
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		return fail("connect", err)
	}
	// Closing the session also releases the advisory lock.
	defer conn.Close(context.Background())

	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, pushsql.MigrateLock); err != nil {
		return fail("lock", err)
	}
	if _, err := conn.Exec(ctx, `
CREATE SCHEMA IF NOT EXISTS push;
CREATE TABLE IF NOT EXISTS push.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
		return fail("bootstrap", err)
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, `SELECT version FROM push.schema_migrations`)
	if err != nil {
		return fail("read versions", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fail("read versions", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return fail("read versions", err)
	}
	for _, m := range migrations {
		if applied[m.Version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// Simple protocol: a migration is several statements.
			if _, err := tx.Exec(ctx, m.SQL, pgx.QueryExecModeSimpleProtocol); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO push.schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return fail("apply "+m.Name, err)
		}
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, pushsql.MigrateLock); err != nil {
		return fail("unlock", err)
	}
	return nil
}
