-- Idempotency keys are kept for a while (24 hours by default, like the
-- payment APIs that made the header common), then purged by upsell serve;
-- this index makes the purge cheap.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
