package persist

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	pushsql "github.com/pushd/pushd/sql"
)

// SchemaStatus is what CheckSchema found in a database.
type SchemaStatus struct {
	// ServerVersion is PostgreSQL's version string.
	ServerVersion string
	// Applied are the versions recorded in push.schema_migrations.
	Applied []int
	// Pending are this build's migrations the database lacks.
	Pending []pushsql.Migration
	// Unknown are applied versions this build does not have (a newer
	// pushd migrated the database).
	Unknown []int
}

// CheckSchema connects to the database at url and compares its schema with
// this build's migrations, changing nothing.
func CheckSchema(ctx context.Context, url string) (SchemaStatus, error) {
	var st SchemaStatus
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return st, fmt.Errorf("database url: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return st, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, `SHOW server_version`).Scan(&st.ServerVersion); err != nil {
		return st, fmt.Errorf("server version: %w", err)
	}
	migrations, err := pushsql.Migrations()
	if err != nil {
		return st, err
	}
	rows, err := conn.Query(ctx, `SELECT version FROM push.schema_migrations ORDER BY version`)
	if err == nil {
		st.Applied, err = pgx.CollectRows(rows, pgx.RowTo[int])
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
		err = nil // undefined table or schema: nothing applied yet
	}
	if err != nil {
		return st, fmt.Errorf("read applied migrations: %w", err)
	}
	known := map[int]bool{}
	applied := map[int]bool{}
	for _, v := range st.Applied {
		applied[v] = true
	}
	for _, m := range migrations {
		known[m.Version] = true
		if !applied[m.Version] {
			st.Pending = append(st.Pending, m)
		}
	}
	for _, v := range st.Applied {
		if !known[v] {
			st.Unknown = append(st.Unknown, v)
		}
	}
	return st, nil
}
