-- When each message expires unless delivered; the scheduler finds the due
-- ones through a partial index that holds only messages still in flight
-- (a message leaves it when its status becomes terminal).
ALTER TABLE messages ADD COLUMN expires_at INTEGER;
CREATE INDEX IF NOT EXISTS messages_in_flight_by_expiry ON messages (expires_at)
    WHERE status IN ('accepted', 'scheduled', 'routed', 'submitted');

-- Charges and refunds are ledger rows too ('charge:<message>:<account>',
-- 'refund:<message>:<account>'); they carry the payer's currency.
ALTER TABLE ledger ADD COLUMN currency TEXT;

-- Numbers that opted out of one account's traffic.
CREATE TABLE IF NOT EXISTS opt_outs (
    account_id TEXT NOT NULL,
    number     TEXT NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (account_id, number)
) WITHOUT ROWID;

-- The latest outbound message per (sender, handset), to match replies.
CREATE TABLE IF NOT EXISTS conversations (
    sender     TEXT NOT NULL,
    handset    TEXT NOT NULL,
    account_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (sender, handset)
) WITHOUT ROWID;

-- Inbound messages attributed to an account, newest first by id (UUIDv7).
CREATE TABLE IF NOT EXISTS inbound (
    account_id  TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    from_number TEXT NOT NULL,
    to_number   TEXT NOT NULL,
    body        TEXT NOT NULL,
    connector   TEXT NOT NULL,
    reply_to    TEXT,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, message_id)
) WITHOUT ROWID;

-- Leases that elect one process for a job (scheduler, callback dispatcher).
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Small versioned documents: the routing table, checkpoints.
CREATE TABLE IF NOT EXISTS settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
