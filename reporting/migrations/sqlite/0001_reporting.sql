-- Tern's reporting store (SQLite). Derived from the event journal by the
-- projector; see docs/reporting.md for every table and column.
-- Times are UTC ISO 8601 text ('2026-12-01T07:04:05.123456Z'), days
-- 'YYYY-MM-DD', ids UUID text, amounts integer minor units.

CREATE TABLE projector_checkpoint (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    position   INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
INSERT INTO projector_checkpoint (id, position, updated_at) VALUES (1, 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

CREATE TABLE messages (
    message_id     TEXT PRIMARY KEY,
    account_id     TEXT,
    reseller_id    TEXT,
    batch_id       TEXT,
    destination    TEXT,
    country        TEXT,
    sender         TEXT,
    client_ref     TEXT,
    segments       INTEGER,
    encoding       TEXT,
    connector      TEXT,
    routed_attempt INTEGER,
    status         TEXT,
    error_code     TEXT,
    price          INTEGER,
    currency       TEXT,
    charged        INTEGER NOT NULL DEFAULT 0,
    refunded       INTEGER NOT NULL DEFAULT 0,
    wholesale      INTEGER NOT NULL DEFAULT 0,
    accepted_at    TEXT,
    submitted_at   TEXT,
    delivered_at   TEXT,
    ended_at       TEXT,
    last_event_at  TEXT,
    fold_key       TEXT,
    fold_delivered TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX messages_account_accepted ON messages (account_id, accepted_at);
CREATE INDEX messages_batch ON messages (batch_id) WHERE batch_id IS NOT NULL;

CREATE TABLE message_events (
    position   INTEGER PRIMARY KEY,
    event_id   TEXT NOT NULL,
    message_id TEXT NOT NULL,
    account_id TEXT,
    type       TEXT NOT NULL,
    at         TEXT NOT NULL,
    event      TEXT NOT NULL
);
CREATE INDEX message_events_message ON message_events (message_id, position);

CREATE TABLE daily_stats (
    day        TEXT NOT NULL,
    account_id TEXT NOT NULL,
    country    TEXT NOT NULL,
    connector  TEXT NOT NULL,
    status     TEXT NOT NULL,
    messages   INTEGER NOT NULL,
    segments   INTEGER NOT NULL,
    revenue    INTEGER NOT NULL,
    PRIMARY KEY (account_id, day, country, connector, status)
) WITHOUT ROWID;
CREATE INDEX daily_stats_day ON daily_stats (day);

CREATE TABLE inbound_messages (
    message_id  TEXT PRIMARY KEY,
    account_id  TEXT,
    from_number TEXT,
    to_number   TEXT,
    body        TEXT,
    connector   TEXT,
    received_at TEXT,
    reply_to    TEXT,
    opt         TEXT,
    keyword     TEXT
) WITHOUT ROWID;
CREATE INDEX inbound_messages_account ON inbound_messages (account_id, received_at);

CREATE TABLE batches (
    batch_id          TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL,
    messages          INTEGER NOT NULL,
    accepted          INTEGER NOT NULL,
    scheduled         INTEGER NOT NULL,
    routed            INTEGER NOT NULL,
    submitted         INTEGER NOT NULL,
    delivered         INTEGER NOT NULL,
    undeliverable     INTEGER NOT NULL,
    expired           INTEGER NOT NULL,
    rejected          INTEGER NOT NULL,
    failed            INTEGER NOT NULL,
    cancelled         INTEGER NOT NULL,
    first_accepted_at TEXT NOT NULL,
    last_accepted_at  TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX batches_account ON batches (account_id);
