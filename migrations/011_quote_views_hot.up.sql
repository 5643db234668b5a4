-- Every command rewrites its quote's row of quote_views. With updated_at in
-- an index key, none of those updates could be HOT (heap-only: the new row
-- version on the same page, no new index entries), so each one also
-- inserted into both indexes and wrote their WAL. A customer has few quotes:
-- listing them finds them by customer and sorts them by updated_at then.
DROP INDEX quote_views_customer;
CREATE INDEX quote_views_customer ON quote_views (msp_id, customer_id);
