-- The node registry and the requests nodes answer for each other
-- (persist/postgres_nodes.go, persist/postgres_cluster.go). All three tables
-- are transient: UNLOGGED (no WAL for a refresh every few seconds); after a
-- crash of the server they come back empty and live nodes announce themselves
-- again within one refresh.

-- One row per node, refreshed every few seconds. A node is live while its
-- last_seen (the database's clock, so node clocks do not matter) is recent;
-- a stopped node deletes its row, a killed one ages out.
CREATE UNLOGGED TABLE push.nodes (
    id          text        PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    connections integer     NOT NULL DEFAULT 0,
    users       integer     NOT NULL DEFAULT 0,
    sse         integer     NOT NULL DEFAULT 0,
    ws          integer     NOT NULL DEFAULT 0
);

-- A cluster-wide request (stats, connections, disconnect): the asking node
-- inserts it and NOTIFYs its id; every other node answers with a reply row.
CREATE UNLOGGED TABLE push.node_requests (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin     text        NOT NULL,
    kind       text        NOT NULL,
    user_id    text,
    reason     text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX node_requests_created ON push.node_requests (created_at);

CREATE UNLOGGED TABLE push.node_replies (
    request bigint NOT NULL REFERENCES push.node_requests (id) ON DELETE CASCADE,
    node    text   NOT NULL,
    body    jsonb  NOT NULL,
    PRIMARY KEY (request, node)
);
