-- Durable events: each event is written here in the transaction of the change it reports, and
-- delivered only after that commits. Every replica reads this table for what Redis did not
-- bring it (an outage, a crash between commit and publish). Old rows are pruned.
-- AUTOINCREMENT: ids are never reused, even after the newest rows are pruned.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    entity     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    payload    TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX events_created_at_idx ON events (created_at);

-- Each entity's latest version (stock:7, order:3, cart:12, product:7): an upsert takes the
-- next one, so versions of one entity follow commit order.
CREATE TABLE entity_versions (
    entity  TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
