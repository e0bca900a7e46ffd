-- Idempotent publishing and commit outcomes: what lets a publisher retry
-- without duplicating (see persist/postgres_idempotency.go and
-- persist/postgres_outcome.go).

-- Idempotency keys, written in the transaction that stores their message,
-- so a key exists exactly when its message was committed. A repeat within
-- expires_at answers seq and ts again; the retention pass deletes expired
-- keys.
CREATE TABLE push.idempotency (
    key         text   PRIMARY KEY,
    fingerprint text   NOT NULL, -- the request's hash: a different request reusing the key is a conflict
    seq         bigint NOT NULL, -- the message first stored under the key
    ts          bigint NOT NULL, -- its timestamp, milliseconds since the epoch
    expires_at  bigint NOT NULL  -- milliseconds since the epoch
);
CREATE INDEX idempotency_expires ON push.idempotency (expires_at);

-- The last group each writer (one per pushd process) committed: mark counts
-- the writer's groups, head is push.meta.head right after the group. When
-- the connection breaks during a commit, the writer reads its row on a new
-- connection to learn whether the group committed, and where. Rows of
-- writers not seen for a day are deleted by the retention pass.
CREATE TABLE push.append_marks (
    writer text   PRIMARY KEY,
    mark   bigint NOT NULL,
    head   bigint NOT NULL,
    at     bigint NOT NULL -- milliseconds since the epoch
);
