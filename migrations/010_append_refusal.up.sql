-- An append that finds its stream at another version than it expected, or
-- whose transaction got its id before the stream's last event was appended
-- (see eventstore's appendSQL), is refused with an error rather than by
-- inserting no row. A refusal that is an error makes PostgreSQL itself skip
-- whatever was sent after the insert in the same pipeline: the command's
-- read-model rows, its idempotent response and its COMMIT travel with the
-- insert in one round trip (eventstore.Store.AppendCommit), and none of them
-- may commit without the events.
--
-- SQLSTATE UP409 (no standard class uses "UP"); the stream's version when
-- the append ran is the DETAIL, so the caller learns it without another
-- query. VOLATILE, so that the planner never evaluates it ahead of the CASE
-- that calls it only for a refused append.
CREATE FUNCTION upsell_refuse_append(stream text, expected bigint, actual bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'stream % is at version %, the append expected %', stream, actual, expected
        USING ERRCODE = 'UP409', DETAIL = actual::text;
END
$$;
