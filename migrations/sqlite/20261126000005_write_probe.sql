-- One row that /readyz rewrites to prove the database still takes writes (a full disk, a
-- read-only replica or file system fail it while reads still work).
CREATE TABLE write_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    written_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
