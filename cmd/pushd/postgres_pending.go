package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/pushd/pushd/stream"
)

// Temporary until the PostgreSQL store lands (issue 3).
var errNoPostgres = errors.New("the PostgreSQL store is not part of this build yet")

func migrateDB(ctx context.Context, url string) error { return errNoPostgres }

func openPostgres(ctx context.Context, url string, r stream.Retention, logger *slog.Logger) (stream.Store, error) {
	return nil, errNoPostgres
}
