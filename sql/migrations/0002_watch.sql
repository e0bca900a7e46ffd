-- Database-driven pushes (CONTRACT §6): push.watch_table() makes a table's
-- committed INSERTs, UPDATEs and DELETEs become data_change messages.
--
-- Statement-level AFTER triggers with transition tables (one per event:
-- PostgreSQL refuses transition tables on multi-event triggers) copy a
-- statement's rows into push.outbox with one INSERT ... SELECT, in the
-- application's transaction, so a rollback leaves nothing. pushd's relay
-- (persist/postgres_relay.go) moves what is visible in the outbox into
-- push.messages and deletes it in the same transaction, under the log's
-- append lock: each committed change enters the log exactly once.

-- Changes not yet in the log. Insert-only for the triggers, delete-only for
-- the relay. One row holds up to 1000 changes of one statement, in row
-- order, as a JSON array of [action, rowId, audience, data] (action c/u/d,
-- audience NULL for a broadcast): a large statement costs one outbox insert
-- per thousand rows, not one per row. seq comes from a sequence with
-- CACHE 1, so within one session it follows statement order; across
-- sessions seq is taken while the writer still holds its row locks, so a
-- later change of the same row always gets a higher seq (the relay's
-- ordering argument).
CREATE TABLE push.outbox (
    seq      bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_id text    NOT NULL,         -- the payload's tableId
    n        integer NOT NULL,         -- how many changes
    changes  json    NOT NULL
) WITH (
    -- Every row is deleted soon after it is written: vacuum it often.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000
);

-- The watched tables. Columns are kept by attribute number, so a renamed
-- column (or table) is followed when the trigger functions are generated
-- again (push._on_ddl, or another watch_table call).
CREATE TABLE push.watched (
    relid      oid      PRIMARY KEY,   -- the table (a regclass)
    audience   smallint,               -- attnum of the audience column; NULL: broadcast
    columns    smallint[],             -- attnums of the pushed columns; NULL: the whole row
    notify     boolean  NOT NULL,
    watched_at timestamptz NOT NULL DEFAULT now()
);

CREATE VIEW push.watched_tables AS
SELECT w.relid::regclass AS "table",
       a.attname::text   AS audience_column,
       (SELECT array_agg(c.attname::text ORDER BY u.ord)
        FROM unnest(w.columns) WITH ORDINALITY AS u(attnum, ord)
        JOIN pg_attribute c ON c.attrelid = w.relid AND c.attnum = u.attnum) AS columns,
       w.notify,
       w.watched_at
FROM push.watched w
JOIN pg_class t ON t.oid = w.relid
LEFT JOIN pg_attribute a ON a.attrelid = w.relid AND a.attnum = w.audience;

-- push._column(tbl, name, what) is the attnum of a live column, or an error
-- naming the table and the column.
CREATE FUNCTION push._column(tbl regclass, name text, what text) RETURNS smallint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    n smallint;
BEGIN
    SELECT attnum INTO n FROM pg_attribute
    WHERE attrelid = tbl AND attname = name AND attnum > 0 AND NOT attisdropped;
    IF n IS NULL THEN
        RAISE EXCEPTION 'push.watch_table: % column "%" does not exist in table %', what, name, tbl
            USING ERRCODE = 'undefined_column';
    END IF;
    RETURN n;
END
$fn$;

-- push._expr is one generated expression over the row reference ref (a
-- transition-table alias or a composite value): a change's rowId (the
-- primary key as text; composite: a JSON array of text), its audience as
-- text (NULL for a broadcast table), or its data (the row, or the columns).
CREATE FUNCTION push._expr(what text, ref text, pk text[], aud text, cols text[]) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
SELECT CASE what
    WHEN 'row_id' THEN
        CASE WHEN cardinality(pk) = 1 THEN format('(%s.%s)::text', ref, pk[1])
             ELSE format('array_to_json(ARRAY[%s])::text',
                         (SELECT string_agg(format('(%s.%s)::text', ref, c), ', ' ORDER BY o)
                          FROM unnest(pk) WITH ORDINALITY AS u(c, o))) END
    WHEN 'audience' THEN
        CASE WHEN aud IS NULL THEN 'NULL::text' ELSE format('(%s.%s)::text', ref, aud) END
    WHEN 'data' THEN
        CASE WHEN cols IS NULL THEN format('row_to_json(%s)', ref)
             ELSE format('(SELECT row_to_json(c) FROM (SELECT %s) c)',
                         (SELECT string_agg(format('%s.%s', ref, c), ', ' ORDER BY o)
                          FROM unnest(cols) WITH ORDINALITY AS u(c, o))) END
END
$fn$;

-- push._install(root) (re)generates the three trigger functions of a
-- watched table from push.watched and the table's current catalog, and
-- attaches them to the table and to every partition below it (a statement
-- trigger fires only for the table a statement names, so a write addressed
-- to a partition is caught by the partition's own triggers, never twice).
CREATE FUNCTION push._install(root oid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    w        push.watched;
    tbl      regclass := root::regclass;
    table_id text;
    pk       text[];
    aud      text;
    cols     text[];
    gone     int;
    notify   text := '';
    filter   text := '';
    fn       text;
    rel      regclass;
    sql      text;
BEGIN
    SELECT * INTO w FROM push.watched WHERE relid = root;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname || '.' || c.relname END
    INTO table_id
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = root;

    SELECT array_agg(quote_ident(a.attname) ORDER BY k.ord) INTO pk
    FROM pg_constraint con
    CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
    WHERE con.conrelid = root AND con.contype = 'p';
    IF pk IS NULL THEN
        RAISE EXCEPTION 'push: table % has no primary key; a pushed change names its row by it', tbl
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'Add a primary key, or call push.unwatch_table first.';
    END IF;
    IF w.audience IS NOT NULL THEN
        SELECT quote_ident(attname) INTO aud FROM pg_attribute
        WHERE attrelid = root AND attnum = w.audience AND NOT attisdropped;
        IF aud IS NULL THEN
            RAISE EXCEPTION 'push: the audience column of watched table % is gone', tbl
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Call push.unwatch_table first, or push.watch_table with another audience column.';
        END IF;
        filter := format('WHERE %s IS NOT NULL', push._expr('audience', 'r', pk, aud, NULL));
    END IF;
    IF w.columns IS NOT NULL THEN
        SELECT array_agg(quote_ident(a.attname) ORDER BY u.ord), count(*) FILTER (WHERE a.attnum IS NULL OR a.attisdropped)
        INTO cols, gone
        FROM unnest(w.columns) WITH ORDINALITY AS u(attnum, ord)
        LEFT JOIN pg_attribute a ON a.attrelid = root AND a.attnum = u.attnum;
        IF gone > 0 THEN
            RAISE EXCEPTION 'push: a pushed column of watched table % is gone', tbl
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Call push.watch_table again with the columns that exist.';
        END IF;
    END IF;
    IF w.notify THEN
        -- A constant payload: PostgreSQL folds a transaction's repeats into
        -- one notification.
        notify := 'IF FOUND THEN PERFORM pg_notify(''push_outbox'', ''''); END IF;';
    END IF;

    FOR fn, sql IN VALUES
        -- INSERT and DELETE: the rows of the transition table in its order
        -- (the statement's row order), a thousand per outbox row.
        ('ins', format($f$
INSERT INTO push.outbox (table_id, n, changes)
SELECT %1$L, count(*), json_agg(json_build_array('c', c.row_id, c.user_id, c.data) ORDER BY c.ord)
FROM (SELECT %2$s AS row_id, %3$s AS user_id, %4$s AS data, row_number() OVER () - 1 AS ord
      FROM push_new r %5$s) c
GROUP BY c.ord / 1000 ORDER BY c.ord / 1000;
%6$s$f$, table_id, push._expr('row_id', 'r', pk, aud, cols), push._expr('audience', 'r', pk, aud, cols),
            push._expr('data', 'r', pk, aud, cols), filter, notify)),
        ('del', format($f$
INSERT INTO push.outbox (table_id, n, changes)
SELECT %1$L, count(*), json_agg(json_build_array('d', c.row_id, c.user_id, c.data) ORDER BY c.ord)
FROM (SELECT %2$s AS row_id, %3$s AS user_id, %4$s AS data, row_number() OVER () - 1 AS ord
      FROM push_old r %5$s) c
GROUP BY c.ord / 1000 ORDER BY c.ord / 1000;
%6$s$f$, table_id, push._expr('row_id', 'r', pk, aud, cols), push._expr('audience', 'r', pk, aud, cols),
            push._expr('data', 'r', pk, aud, cols), filter, notify)),
        -- UPDATE: old and new rows paired by primary key. Same audience and
        -- a change in the pushed values: 'u'. Another audience (or a changed
        -- key): 'd' of the old row to the old audience, then 'c' of the new
        -- row to the new one. Nothing a client would see changed: nothing
        -- (the whole row by record image, which works for column types
        -- without an equality operator such as json or point; the listed
        -- columns by their JSON).
        ('upd', format($f$
INSERT INTO push.outbox (table_id, n, changes)
SELECT %1$L, count(*), json_agg(json_build_array(c.action, c.row_id, c.user_id, c.data) ORDER BY c.ord)
FROM (
    SELECT v.action, v.row_id, v.user_id, v.data,
           row_number() OVER (ORDER BY coalesce(n.ord, o.ord), o.ord IS NULL, v.k) - 1 AS ord
    FROM (SELECT r, row_number() OVER () AS ord FROM push_new r) n
    FULL JOIN (SELECT r, row_number() OVER () AS ord FROM push_old r) o ON %2$s
    CROSS JOIN LATERAL (SELECT %3$s AS new_user, %4$s AS old_user) a
    CROSS JOIN LATERAL (VALUES
        (1, 'd', %5$s, a.old_user, %6$s,
            o.ord IS NOT NULL AND (n.ord IS NULL OR a.old_user IS DISTINCT FROM a.new_user)),
        (2, 'c', %7$s, a.new_user, %8$s,
            n.ord IS NOT NULL AND (o.ord IS NULL OR a.old_user IS DISTINCT FROM a.new_user)),
        (3, 'u', %7$s, a.new_user, %8$s,
            n.ord IS NOT NULL AND o.ord IS NOT NULL AND a.old_user IS NOT DISTINCT FROM a.new_user
            AND NOT (%9$s))
    ) v(k, action, row_id, user_id, data, pushed)
    WHERE v.pushed %10$s
) c
GROUP BY c.ord / 1000 ORDER BY c.ord / 1000;
%11$s$f$, table_id,
            (SELECT string_agg(format('(n.r).%1$s = (o.r).%1$s', c), ' AND ') FROM unnest(pk) c),
            push._expr('audience', '(n.r)', pk, aud, cols), push._expr('audience', '(o.r)', pk, aud, cols),
            push._expr('row_id', '(o.r)', pk, aud, cols), push._expr('data', '(o.r)', pk, aud, cols),
            push._expr('row_id', '(n.r)', pk, aud, cols), push._expr('data', '(n.r)', pk, aud, cols),
            CASE WHEN cols IS NULL THEN 'n.r *= o.r'
                 ELSE format('%s::text = %s::text', push._expr('data', '(n.r)', pk, aud, cols),
                             push._expr('data', '(o.r)', pk, aud, cols)) END,
            CASE WHEN aud IS NULL THEN '' ELSE 'AND v.user_id IS NOT NULL' END, notify))
    LOOP
        EXECUTE format($f$
CREATE OR REPLACE FUNCTION push.%1$I() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
BEGIN
%2$s
RETURN NULL;
END
$body$$f$, 'watch_' || root || '_' || fn, sql);
        EXECUTE format('REVOKE ALL ON FUNCTION push.%I() FROM PUBLIC', 'watch_' || root || '_' || fn);
    END LOOP;

    FOR rel IN SELECT t.relid FROM pg_partition_tree(root) t UNION SELECT root::regclass LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER push_watch_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS push_new FOR EACH STATEMENT EXECUTE FUNCTION push.%I()',
                       rel, 'watch_' || root || '_ins');
        EXECUTE format('CREATE OR REPLACE TRIGGER push_watch_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS push_old NEW TABLE AS push_new FOR EACH STATEMENT EXECUTE FUNCTION push.%I()',
                       rel, 'watch_' || root || '_upd');
        EXECUTE format('CREATE OR REPLACE TRIGGER push_watch_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS push_old FOR EACH STATEMENT EXECUTE FUNCTION push.%I()',
                       rel, 'watch_' || root || '_del');
    END LOOP;
END
$fn$;

-- push.watch_table makes every committed change of tbl a data_change push
-- to the user named by audience_column (NULL: a broadcast), carrying the
-- whole row or only columns. Calling it again replaces the settings.
-- SECURITY INVOKER on purpose: whoever watches a table must own schema push
-- and may create triggers on the table.
CREATE FUNCTION push.watch_table(tbl regclass, audience_column text, columns text[] DEFAULT NULL,
                                 notify boolean DEFAULT true) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    kind "char";
    part boolean;
    nsp  text;
    aud  smallint;
    cols smallint[];
    c    text;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'push.watch_table: the table is NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind, c.relispartition, n.nspname INTO kind, part, nsp
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'push.watch_table: % is %, not a table; only tables can be watched', tbl,
            CASE kind WHEN 'v' THEN 'a view' WHEN 'm' THEN 'a materialized view' WHEN 'f' THEN 'a foreign table'
                      WHEN 'S' THEN 'a sequence' ELSE 'not a table' END
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF part THEN
        RAISE EXCEPTION 'push.watch_table: % is a partition; watch its partitioned table (%) instead', tbl,
            (SELECT a FROM pg_partition_ancestors(tbl) a WHERE a <> tbl ORDER BY a DESC LIMIT 1)
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF nsp = 'push' THEN
        RAISE EXCEPTION 'push.watch_table: % belongs to pushd itself', tbl USING ERRCODE = 'wrong_object_type';
    END IF;
    IF audience_column IS NOT NULL THEN
        aud := push._column(tbl, audience_column, 'audience');
    END IF;
    IF columns IS NOT NULL THEN
        IF cardinality(columns) = 0 THEN
            RAISE EXCEPTION 'push.watch_table: columns of % is empty; pass NULL for the whole row', tbl
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOREACH c IN ARRAY columns LOOP
            IF c IS NULL THEN
                RAISE EXCEPTION 'push.watch_table: columns of % holds a NULL', tbl USING ERRCODE = 'null_value_not_allowed';
            END IF;
            IF push._column(tbl, c, 'listed') = ANY (cols) THEN
                RAISE EXCEPTION 'push.watch_table: column "%" of % is listed twice', c, tbl USING ERRCODE = 'duplicate_column';
            END IF;
            cols := cols || push._column(tbl, c, 'listed');
        END LOOP;
    END IF;
    INSERT INTO push.watched (relid, audience, columns, notify)
    VALUES (tbl, aud, cols, coalesce(notify, true))
    ON CONFLICT (relid) DO UPDATE
        SET audience = excluded.audience, columns = excluded.columns, notify = excluded.notify, watched_at = now();
    PERFORM push._install(tbl);
END
$fn$;

-- push.unwatch_table stops new pushes of tbl; changes already committed are
-- still delivered (they are in the outbox).
CREATE FUNCTION push.unwatch_table(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    rel regclass;
    fn  text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM push.watched WHERE relid = tbl) THEN
        RAISE EXCEPTION 'push.unwatch_table: % is not watched', tbl USING ERRCODE = 'undefined_object';
    END IF;
    FOR rel IN SELECT t.relid FROM pg_partition_tree(tbl) t UNION SELECT tbl LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS push_watch_insert ON %s', rel);
        EXECUTE format('DROP TRIGGER IF EXISTS push_watch_update ON %s', rel);
        EXECUTE format('DROP TRIGGER IF EXISTS push_watch_delete ON %s', rel);
    END LOOP;
    FOREACH fn IN ARRAY ARRAY['ins', 'upd', 'del'] LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS push.%I()', 'watch_' || tbl::oid || '_' || fn);
    END LOOP;
    DELETE FROM push.watched WHERE relid = tbl;
END
$fn$;

-- Keeping the generated functions true to the catalog: after an ALTER TABLE
-- (a renamed column or table, a dropped watched column: refused) or a new
-- partition (it gets the triggers), and cleaning up after a dropped table.
-- Event triggers need a superuser; without one, call push.watch_table again
-- after such a change.
CREATE FUNCTION push._on_ddl() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    root oid;
BEGIN
    FOR root IN
        SELECT DISTINCT w.relid
        FROM pg_event_trigger_ddl_commands() d
        CROSS JOIN LATERAL (SELECT d.objid UNION SELECT a FROM pg_partition_ancestors(d.objid) a) x(relid)
        JOIN push.watched w ON w.relid = x.relid
        WHERE d.classid = 'pg_class'::regclass
    LOOP
        PERFORM push._install(root);
    END LOOP;
END
$fn$;

CREATE FUNCTION push._on_drop() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    gone oid;
    fn   text;
BEGIN
    FOR gone IN
        DELETE FROM push.watched w USING pg_event_trigger_dropped_objects() d
        WHERE d.classid = 'pg_class'::regclass AND d.objid = w.relid AND d.objsubid = 0
        RETURNING w.relid
    LOOP
        FOREACH fn IN ARRAY ARRAY['ins', 'upd', 'del'] LOOP
            EXECUTE format('DROP FUNCTION IF EXISTS push.%I()', 'watch_' || gone || '_' || fn);
        END LOOP;
    END LOOP;
END
$fn$;

DO $do$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        CREATE EVENT TRIGGER push_watch_ddl ON ddl_command_end
            WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE')
            EXECUTE FUNCTION push._on_ddl();
        CREATE EVENT TRIGGER push_watch_drop ON sql_drop
            WHEN TAG IN ('DROP TABLE')
            EXECUTE FUNCTION push._on_drop();
    END IF;
END
$do$;
