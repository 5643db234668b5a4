-- A tamper-evident hash chain per stream: every event carries the SHA-256 of
-- a canonical encoding of itself and of the previous event's hash in its
-- stream. Editing, deleting or reordering a recorded event breaks the chain
-- from that event on; `upsell audit verify` finds it. docs/audit.md states
-- the encoding for auditors who re-verify with their own code, and package
-- eventstore (hash.go) has an independent Go implementation that the
-- verification uses: it never trusts this function.
--
-- The encoding, "upsell.event.v1", is UTF-8 text: eleven netstrings, each
-- the field's length in bytes (decimal), a colon, the field and a comma:
--    1. the format tag: upsell.event.v1
--    2. the previous event's hash in lowercase hex; for version 1, 64 zeros
--    3. event_id, lowercase with hyphens (36 characters)
--    4. stream_id
--    5. stream_type
--    6. version, decimal
--    7. event_type
--    8. schema_version, decimal
--    9. recorded_at as microseconds since 1970-01-01T00:00:00Z, decimal
--   10. data::text (jsonb prints deterministically)
--   11. metadata::text
-- e.g. 15:upsell.event.v1,64:00…00,36:0190…,7:quote-1,5:quote,1:1,…
-- hash = sha256(that text).
--
-- Text, not binary fields: one format() call builds it, which costs an
-- append far less than a chain of bytea concatenations (the expression is
-- rebuilt by every statement that runs it), and anyone can print it.

DO $$
BEGIN
    -- The lengths are octet_length of text, which counts UTF-8 bytes only
    -- in a UTF-8 database.
    IF pg_encoding_to_char((SELECT encoding FROM pg_database WHERE datname = current_database())) <> 'UTF8' THEN
        RAISE EXCEPTION 'the event hash chain needs a UTF8 database, not %',
            pg_encoding_to_char((SELECT encoding FROM pg_database WHERE datname = current_database()));
    END IF;
END $$;

-- The hash of one event chained to prev, the previous event's hash (null for
-- the first event of a stream). It is one expression, so the planner inlines
-- it into the append. STABLE, not IMMUTABLE, only because format, convert_to
-- and extract(epoch FROM timestamptz) are marked so; with the arguments
-- given here they give the same text in every session.
CREATE FUNCTION upsell_event_hash(
    prev bytea, event_id uuid, stream_id text, stream_type text, version bigint,
    event_type text, schema_version integer, recorded_at timestamptz, data jsonb, metadata jsonb
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN sha256(convert_to(format(
    '15:upsell.event.v1,%s:%s,36:%s,%s:%s,%s:%s,%s:%s,%s:%s,%s:%s,%s:%s,%s:%s,%s:%s,',
    length(encode(coalesce(prev, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea), 'hex')),
    encode(coalesce(prev, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea), 'hex'),
    event_id,
    octet_length(stream_id), stream_id,
    octet_length(stream_type), stream_type,
    length(version::text), version,
    octet_length(event_type), event_type,
    length(schema_version::text), schema_version,
    length(((extract(epoch FROM recorded_at) * 1000000)::bigint)::text), (extract(epoch FROM recorded_at) * 1000000)::bigint,
    octet_length(data::text), data::text,
    octet_length(metadata::text), metadata::text), 'UTF8'));

ALTER TABLE events ADD COLUMN hash bytea;

-- Backfill the events recorded so far, stream by stream in version order.
-- All streams advance together, one event per step: the first event of
-- each stream, then the next of each (the next version present, so a
-- stream with a gap is still chained and `upsell audit verify` reports the
-- gap rather than this migration failing).
WITH RECURSIVE chain AS (
    SELECT e.position, e.stream_id, e.version,
           upsell_event_hash(NULL, e.event_id, e.stream_id, e.stream_type, e.version,
                             e.event_type, e.schema_version, e.recorded_at, e.data, e.metadata) AS hash
    FROM (SELECT DISTINCT ON (stream_id) * FROM events ORDER BY stream_id, version) AS e
  UNION ALL
    SELECT n.position, n.stream_id, n.version,
           upsell_event_hash(c.hash, n.event_id, n.stream_id, n.stream_type, n.version,
                             n.event_type, n.schema_version, n.recorded_at, n.data, n.metadata)
    FROM chain AS c
    CROSS JOIN LATERAL (SELECT * FROM events AS e
                        WHERE e.stream_id = c.stream_id AND e.version > c.version
                        ORDER BY e.version LIMIT 1) AS n
)
UPDATE events SET hash = chain.hash FROM chain WHERE events.position = chain.position;

ALTER TABLE events ALTER COLUMN hash SET NOT NULL,
    ADD CONSTRAINT events_hash_check CHECK (octet_length(hash) = 32);

COMMENT ON COLUMN events.hash IS
    'SHA-256 chaining the event to the previous one of its stream: upsell_event_hash(), encoding upsell.event.v1 (docs/audit.md)';
