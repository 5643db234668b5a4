-- Reference data loaded by `upsell import`: MSPs, their users and the
-- catalog. Customers are not here: they are event streams.
CREATE TABLE msps (
    id   text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE msp_users (
    msp_id       text  NOT NULL REFERENCES msps (id),
    id           text  NOT NULL,
    name         text  NOT NULL,
    -- SHA-256 of the API key; the key itself is never stored.
    api_key_hash bytea NOT NULL CHECK (octet_length(api_key_hash) = 32),
    PRIMARY KEY (msp_id, id),
    -- Checked at commit, so that one import can swap two users' keys.
    CONSTRAINT msp_users_api_key_hash_key UNIQUE (api_key_hash) DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE products (
    code       text    PRIMARY KEY,
    name       text    NOT NULL,
    per_user   boolean NOT NULL,
    currency   text    NOT NULL,
    term_types text[]  NOT NULL,
    -- [{"term_type": "12 Month", "min_seats": 500, "unit_price": "3.25"}, ...]
    tiers      jsonb   NOT NULL
);
