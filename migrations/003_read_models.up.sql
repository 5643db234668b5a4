-- Read models projected from the events (package projections), the
-- checkpoints of the asynchronous projectors, and the idempotency records of
-- the HTTP commands. All of it can be rebuilt from the events except the
-- idempotency records, which are the API's memory of its own responses.

-- One row per change quote, written in the transaction that appends the
-- quote's events, so a read right after a command shows its effect.
CREATE TABLE quote_views (
    quote_id          uuid        PRIMARY KEY,
    msp_id            text        NOT NULL,
    customer_id       text        NOT NULL,
    status            text        NOT NULL,
    version           bigint      NOT NULL,
    -- recorded_at of the quote's latest event: a rebuild gives the same value
    updated_at        timestamptz NOT NULL,
    new_monthly_total text        NOT NULL,
    preview           jsonb       NOT NULL,
    -- the Change Order Summary; null while the quote is not reviewed
    summary           jsonb
);
CREATE INDEX quote_views_customer ON quote_views (msp_id, customer_id, updated_at DESC);

-- One row per customer, written by the asynchronous "customers" projector.
CREATE TABLE customer_views (
    customer_id   text   PRIMARY KEY,
    msp_id        text   NOT NULL,
    name          text   NOT NULL,
    -- lower(name), compared byte by byte so that keyset pages are stable
    sort_name     text   COLLATE "C" NOT NULL,
    -- 'A' to 'Z', or '#' for a name that does not start with a letter
    initial       text   NOT NULL,
    currency      text   NOT NULL,
    total_users   int    NOT NULL,
    monthly_total text   NOT NULL,
    version       bigint NOT NULL,
    lines         jsonb  NOT NULL
);
CREATE INDEX customer_views_by_name ON customer_views (msp_id, sort_name, customer_id);
CREATE INDEX customer_views_by_initial ON customer_views (msp_id, initial, sort_name, customer_id);

-- Where each asynchronous projector is in the log; updated in the same
-- transaction as the rows it wrote, so every event is applied exactly once.
CREATE TABLE projection_checkpoints (
    name           text        PRIMARY KEY,
    transaction_id xid8        NOT NULL DEFAULT '0',
    position       bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The first response to each Idempotency-Key of a user, stored in the
-- transaction that appended the command's events.
CREATE TABLE idempotency_keys (
    msp_id       text        NOT NULL,
    user_id      text        NOT NULL,
    key          text        NOT NULL,
    -- SHA-256 of method, path and body: the same key with another request
    -- is refused
    request_hash bytea       NOT NULL,
    status       int         NOT NULL,
    headers      jsonb       NOT NULL,
    body         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (msp_id, user_id, key)
);
