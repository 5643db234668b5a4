-- The customer streams' events in log order. A rebuild of customer_views
-- reads only those (eventstore.ReadLogOfTx), which are a small part of the
-- log (onboardings and amendments): through the log's own index it would
-- visit every event of the log to find them. Partial, so that appends to
-- the quote streams, the most frequent, do not maintain it.
CREATE INDEX events_customer_log ON events (transaction_id, position) WHERE stream_type = 'customer';
