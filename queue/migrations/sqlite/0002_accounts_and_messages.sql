-- Accounts: the document as JSON, with the fields that change on their own
-- (balance, suspension) as columns so updates are single-row statements.
CREATE TABLE IF NOT EXISTS accounts (
    id        TEXT PRIMARY KEY,
    parent_id TEXT,
    balance   INTEGER NOT NULL DEFAULT 0,
    suspended INTEGER NOT NULL DEFAULT 0,
    doc       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_by_parent ON accounts (parent_id, id);

-- API keys: only a SHA-256 of the key is kept.
CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    name        TEXT,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_by_account ON api_keys (account_id, created_at);

-- Balance movements; `reference` makes each one idempotent.
CREATE TABLE IF NOT EXISTS ledger (
    reference  TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    at         INTEGER NOT NULL
);

-- Requests remembered under an Idempotency-Key.
CREATE TABLE IF NOT EXISTS idempotency (
    account_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    plan         TEXT NOT NULL,
    status       INTEGER,
    body         TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency (created_at);

-- The message index, derived from the journal (see queue/src/messages.rs).
-- Clustered by account, then message id (UUIDv7, so time order): an accept
-- appends at the end of its account's range, and listing an account's
-- messages newest first is a range scan. Status and recipient filters scan
-- that range (bounded per page) instead of keeping their own indexes,
-- because a recipient index costs every accept a random B-tree insert, which
-- halved bulk-send throughput.
CREATE TABLE IF NOT EXISTS messages (
    account_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    batch_id   TEXT,
    to_number  TEXT NOT NULL,
    client_ref TEXT,
    status     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, message_id)
) WITHOUT ROWID;
-- Batch progress (counts by status) and batch listings; a batch's rows are
-- inserted together, so this index too grows in runs, not at random.
CREATE INDEX IF NOT EXISTS messages_by_batch ON messages (batch_id, status, message_id) WHERE batch_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS batches (
    batch_id   TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    recipients INTEGER NOT NULL,
    accepted   INTEGER NOT NULL,
    invalid    INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
