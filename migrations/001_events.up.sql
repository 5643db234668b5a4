-- The event log: every stream of every aggregate in one table.
--
-- position orders events by insertion, but concurrent transactions commit out
-- of position order, so readers of the global log follow
-- (transaction_id, position) and read only below
-- pg_snapshot_xmin(pg_current_snapshot()): every transaction below that
-- horizon has finished, so no event can appear behind a reader's cursor.
CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       uuid        NOT NULL,
    stream_id      text        NOT NULL,
    stream_type    text        NOT NULL,
    version        bigint      NOT NULL CHECK (version > 0),
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL DEFAULT 1 CHECK (schema_version > 0),
    data           jsonb       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- The optimistic concurrency guard: two writers of one stream at the same
    -- expected version collide here (SQLSTATE 23505).
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

CREATE INDEX events_log_order ON events (transaction_id, position);
