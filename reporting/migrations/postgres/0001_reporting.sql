-- Tern's reporting store (PostgreSQL). Derived from the event journal by the
-- projector; see docs/reporting.md for every table and column.
-- Amounts are integer minor units.

CREATE TABLE projector_checkpoint (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    position   BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
INSERT INTO projector_checkpoint (id, position, updated_at) VALUES (1, 0, now());

CREATE TABLE messages (
    message_id     UUID PRIMARY KEY,
    account_id     UUID,
    reseller_id    UUID,
    batch_id       UUID,
    destination    TEXT,
    country        TEXT,
    sender         TEXT,
    client_ref     TEXT,
    segments       INTEGER,
    encoding       TEXT,
    connector      TEXT,
    routed_attempt BIGINT,
    status         TEXT,
    error_code     TEXT,
    price          BIGINT,
    currency       TEXT,
    charged        BIGINT NOT NULL DEFAULT 0,
    refunded       BIGINT NOT NULL DEFAULT 0,
    wholesale      BIGINT NOT NULL DEFAULT 0,
    accepted_at    TIMESTAMPTZ,
    submitted_at   TIMESTAMPTZ,
    delivered_at   TIMESTAMPTZ,
    ended_at       TIMESTAMPTZ,
    last_event_at  TIMESTAMPTZ,
    fold_key       TEXT,
    fold_delivered TEXT NOT NULL DEFAULT ''
);
CREATE INDEX messages_account_accepted ON messages (account_id, accepted_at);
CREATE INDEX messages_batch ON messages (batch_id) WHERE batch_id IS NOT NULL;

CREATE TABLE message_events (
    position   BIGINT PRIMARY KEY,
    event_id   UUID NOT NULL,
    message_id UUID NOT NULL,
    account_id UUID,
    type       TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    -- json, not jsonb: stored as written, without the parse into jsonb that
    -- cost a third of the projector's time; ->, ->> and ::jsonb work on it.
    event      JSON NOT NULL
);
CREATE INDEX message_events_message ON message_events (message_id, position);

CREATE TABLE daily_stats (
    day        DATE NOT NULL,
    account_id UUID NOT NULL,
    country    TEXT NOT NULL,
    connector  TEXT NOT NULL,
    status     TEXT NOT NULL,
    messages   BIGINT NOT NULL,
    segments   BIGINT NOT NULL,
    revenue    BIGINT NOT NULL,
    PRIMARY KEY (account_id, day, country, connector, status)
);
CREATE INDEX daily_stats_day ON daily_stats (day);

CREATE TABLE inbound_messages (
    message_id  UUID PRIMARY KEY,
    account_id  UUID,
    from_number TEXT,
    to_number   TEXT,
    body        TEXT,
    connector   TEXT,
    received_at TIMESTAMPTZ,
    reply_to    UUID,
    opt         TEXT,
    keyword     TEXT
);
CREATE INDEX inbound_messages_account ON inbound_messages (account_id, received_at);

CREATE TABLE batches (
    batch_id          UUID PRIMARY KEY,
    account_id        UUID NOT NULL,
    messages          BIGINT NOT NULL,
    accepted          BIGINT NOT NULL,
    scheduled         BIGINT NOT NULL,
    routed            BIGINT NOT NULL,
    submitted         BIGINT NOT NULL,
    delivered         BIGINT NOT NULL,
    undeliverable     BIGINT NOT NULL,
    expired           BIGINT NOT NULL,
    rejected          BIGINT NOT NULL,
    failed            BIGINT NOT NULL,
    cancelled         BIGINT NOT NULL,
    first_accepted_at TIMESTAMPTZ NOT NULL,
    last_accepted_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX batches_account ON batches (account_id);
