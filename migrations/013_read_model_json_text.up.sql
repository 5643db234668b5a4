-- The read models' JSON documents are kept as text, as the service wrote
-- them, instead of jsonb. Nothing queries inside them: the API reads each
-- document whole and decodes it in Go. As jsonb, every write parsed the
-- document into jsonb's binary form: on every command, the quote's preview
-- (about 1.5 KB); in a rebuild, every quote's preview and summary, which
-- was a third of PostgreSQL's work in the COPY of quote_views. Text is
-- checked only as UTF-8. An operator can still query them with a cast:
-- preview::jsonb ->> 'status'.
ALTER TABLE quote_views
    ALTER COLUMN preview TYPE text USING preview::text,
    ALTER COLUMN summary TYPE text USING summary::text;
ALTER TABLE customer_views
    ALTER COLUMN lines TYPE text USING lines::text;
