-- Work queues: one row per entry; `seq` gives FIFO order within a visibility instant.
-- state: 0 pending (ready, leased or delayed, told apart by visible_at and lease_token),
--        1 acked (kept until purged, so a re-publish of the same id stays a no-op),
--        2 dead-lettered.
CREATE TABLE IF NOT EXISTS queue_entries (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic       TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0,
    visible_at  INTEGER NOT NULL,
    lease_token TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    settled_at  INTEGER,
    UNIQUE (topic, id)
);
CREATE INDEX IF NOT EXISTS queue_entries_ready ON queue_entries (topic, visible_at, seq) WHERE state = 0;
-- No index on acked entries: only the periodic purge looks for them, and it
-- finds the old ones first in `seq` order; an index would cost every ack.
CREATE INDEX IF NOT EXISTS queue_entries_dead ON queue_entries (topic, seq) WHERE state = 2;

-- The journal: append-only. `position` is assigned inside the single write
-- transaction that commits it, so positions increase in commit order.
CREATE TABLE IF NOT EXISTS journal (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    event      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_by_message ON journal (message_id, position);
