-- Durable events: each event is written here in the transaction of the change it reports, and
-- delivered only after that commits. Every replica reads this table for what Redis did not
-- bring it (an outage, a crash between commit and publish). Old rows are pruned.
CREATE TABLE events (
    id         BIGSERIAL PRIMARY KEY,
    entity     TEXT NOT NULL,
    version    BIGINT NOT NULL,
    payload    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX events_created_at_idx ON events (created_at);

-- Each entity's latest version (stock:7, order:3, cart:12, product:7): an upsert takes the
-- next one and holds the row until commit, so versions of one entity follow commit order.
CREATE TABLE entity_versions (
    entity  TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
