-- Which message (and segments) each SMSC message id stands for, so that a
-- delivery receipt can be matched on whatever bind or process it arrives.
CREATE TABLE IF NOT EXISTS smsc_ids (
    connector     TEXT NOT NULL,
    smsc_id       TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    account_id    TEXT,
    first_segment INTEGER NOT NULL,
    last_segment  INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    PRIMARY KEY (connector, smsc_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS smsc_ids_by_time ON smsc_ids (at);

-- Parts of concatenated inbound messages, until the last part arrives.
CREATE TABLE IF NOT EXISTS mo_parts (
    connector   TEXT NOT NULL,
    from_addr   TEXT NOT NULL,
    to_addr     TEXT NOT NULL,
    reference   INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    data_coding INTEGER NOT NULL,
    payload     BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (connector, from_addr, to_addr, reference, total, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mo_parts_by_time ON mo_parts (received_at);
