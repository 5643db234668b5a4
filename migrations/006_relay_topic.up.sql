-- The default message transport of the relay: the Watermill SQL topic
-- upsell_events in this database (watermill-sql v3's PostgreSQL schema,
-- DefaultPostgreSQLSchema and DefaultPostgreSQLOffsetsAdapter). The tables
-- are made here, not by Watermill at run time, so that the service never
-- needs the right to create tables. Keep the column set exactly as
-- watermill-sql expects it.

-- One row per published message; "uuid" is the event id. Subscribers read
-- it in (transaction_id, "offset") order below the oldest open transaction,
-- as the relay reads the events table.
CREATE TABLE watermill_upsell_events (
    "offset"         bigserial,
    "uuid"           varchar(36) NOT NULL,
    "created_at"     timestamp   NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "payload"        json        DEFAULT NULL,
    "metadata"       json        DEFAULT NULL,
    "transaction_id" xid8        NOT NULL,
    PRIMARY KEY ("transaction_id", "offset")
);

-- Where each consumer group (billing-tail, downstream billing) has got to.
CREATE TABLE watermill_offsets_upsell_events (
    consumer_group                varchar(255) NOT NULL,
    offset_acked                  bigint,
    last_processed_transaction_id xid8         NOT NULL,
    PRIMARY KEY (consumer_group)
);
