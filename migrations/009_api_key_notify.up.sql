-- Every change to msp_users is announced on the channel upsell_api_keys,
-- so that the service can keep the users of API keys in memory
-- (handlers.KeyCache) and forget them all as soon as any user changes. A
-- trigger announces it, so every writer of msp_users (upsell import, or an
-- operator's SQL) is covered. NOTIFY is transactional: the listener hears
-- of a change only once it has committed, and of a rolled-back one never.
--
-- Per statement, and with an empty payload: the cache is cleared whole,
-- so which rows changed does not matter, and a statement that changes
-- many users (or none: an import's upserts that skip equal rows) is one
-- notification, which PostgreSQL folds further into one per transaction.
--
-- msps needs no trigger: users reference their MSP without ON DELETE
-- CASCADE, so deleting an MSP or changing its id is refused while it has
-- users, and TRUNCATE msps CASCADE truncates msp_users, which fires the
-- TRUNCATE trigger below.
CREATE FUNCTION upsell_notify_api_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('upsell_api_keys', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER msp_users_notify_api_keys
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON msp_users
    FOR EACH STATEMENT EXECUTE FUNCTION upsell_notify_api_keys();

-- Fired even with session_replication_role = replica (a logical
-- replication subscriber, a restore that sets it): a change that nobody
-- announces would leave a revoked key working for as long as the cache
-- lives.
ALTER TABLE msp_users ENABLE ALWAYS TRIGGER msp_users_notify_api_keys;
