-- The ordered log behind pushd (see persist/postgres.go for how it is used).

-- One row: the store's identity and the log's counters. head is the highest
-- position assigned; positions are dense because it is bumped inside the
-- appending transaction (a rollback gives the numbers back).
CREATE TABLE push.meta (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    epoch      text    NOT NULL,
    head       bigint  NOT NULL DEFAULT 0,
    -- highest dropped broadcast that excluded nobody: lost for every user
    bcast_lost bigint  NOT NULL DEFAULT 0,
    -- highest broadcast appended, and its value at the last full retention
    -- pass: a newer broadcast may push users' own messages out of their window
    bcast_head bigint  NOT NULL DEFAULT 0,
    trim_mark  bigint  NOT NULL DEFAULT 0
);

-- The epoch prefixes every event id, so ids minted by a wiped database are
-- recognised as unknown.
INSERT INTO push.meta (epoch) VALUES (substr(md5(gen_random_uuid()::text), 1, 8));

-- Cumulative counters (GET /api/ws/stats), one row each so that their
-- writers do not queue behind the log's writer on push.meta.
CREATE TABLE push.counters (
    name  text   PRIMARY KEY,
    value bigint NOT NULL DEFAULT 0
);
INSERT INTO push.counters (name) VALUES ('delivered'), ('expired');

CREATE TABLE push.messages (
    seq     bigint PRIMARY KEY,
    user_id text,                         -- NULL: broadcast
    exclude text[] NOT NULL DEFAULT '{}', -- users a broadcast skips
    type    text   NOT NULL,
    key     text,                         -- conflation key (dashboard widgetId)
    payload bytea,                        -- JSON, byte for byte as published
    ts      bigint NOT NULL,              -- milliseconds since the epoch
    -- Set when the message leaves the offline store (trimmed or superseded).
    -- The row stays until every node's feed has read it (the table is also
    -- the bus between nodes); the retention pass deletes it later.
    gone_at timestamptz
);

-- A user's own kept messages, by position: replay, window and trimming.
CREATE INDEX messages_user_seq ON push.messages (user_id, seq)
    WHERE gone_at IS NULL AND user_id IS NOT NULL;
-- Kept broadcasts, by position.
CREATE INDEX messages_bcast_seq ON push.messages (seq)
    WHERE gone_at IS NULL AND user_id IS NULL;
-- The kept value of a conflated key.
CREATE INDEX messages_user_key ON push.messages (user_id, key, seq)
    WHERE gone_at IS NULL AND key IS NOT NULL;
-- Kept messages by age: a user's window (own messages past the TTL), and
-- the retention pass (broadcasts and users with messages past the TTL).
CREATE INDEX messages_user_ts ON push.messages (user_id, ts)
    WHERE gone_at IS NULL AND user_id IS NOT NULL;
CREATE INDEX messages_ts ON push.messages (ts)
    WHERE gone_at IS NULL;
-- Rows waiting to be deleted.
CREATE INDEX messages_gone ON push.messages (gone_at)
    WHERE gone_at IS NOT NULL;

-- Per-user state: delivered cursor (known: ever delivered anything) and the
-- highest own message dropped by count cap or age, so "trimmed" stays exact
-- after the rows are gone.
CREATE TABLE push.users (
    user_id   text    PRIMARY KEY,
    delivered bigint  NOT NULL DEFAULT 0,
    known     boolean NOT NULL DEFAULT false,
    lost      bigint  NOT NULL DEFAULT 0
);

-- Dropped broadcasts that excluded someone: lost for everyone but the
-- excluded. Bounded (newest 1024); older ones fold into meta.bcast_lost, so an
-- excluded user may then see a spurious reset, never a silent loss.
CREATE TABLE push.tombstones (
    seq     bigint PRIMARY KEY,
    exclude text[] NOT NULL
);
