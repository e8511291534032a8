//! Accounts, keys, idempotency records and the message index on SQLite.
//! Writes go through the group-commit writer like every other write.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use tern_core::{AccountId, BatchId, MessageId, MessageStatus};

use super::SqliteStore;
use super::ops::{CHUNK, Outcome};
use crate::accounts::{Account, AccountUpdate, AccountsBackend, ApiKeyRecord, Begin, IdempotencyRecord, TopUp};
use crate::billing::{Charge, ChargeOutcome, Debit};
use crate::messages::{BatchRecord, MessageIndexBackend, MessagePage, MessageQuery, MessageRow, StatusUpdate};
use crate::{QueueError, Result};

/// The writes of this module; run by the writer inside its transaction.
#[derive(Debug)]
pub(super) enum RecordOp {
    CreateAccount { id: String, parent_id: Option<String>, doc: String },
    SetSuspended { id: String, suspended: bool },
    TopUp { id: String, amount: i64, reference: String, at: i64 },
    CreateKey(ApiKeyRecord),
    RevokeKey { account: String, key_id: String, at: i64 },
    BeginRequest { account: String, key: String, record: IdempotencyRecord, expire_before: i64 },
    FinishRequest { account: String, key: String, status: u16, body: String },
    PurgeRequests { before: i64 },
    UpdateStatuses(Vec<StatusUpdate>),
    PutBatch(BatchRecord),
}

impl RecordOp {
    pub(super) fn needs_savepoint(&self) -> bool {
        // A status update of one chunk is a single statement, atomic on its own.
        matches!(self, Self::TopUp { .. } | Self::BeginRequest { .. })
            || matches!(self, Self::UpdateStatuses(updates) if updates.len() > CHUNK / 2)
    }

    pub(super) async fn execute(&self, conn: &mut SqliteConnection) -> Result<Outcome> {
        match self {
            Self::CreateAccount { id, parent_id, doc } => {
                let done = sqlx::query(
                    "INSERT INTO accounts (id, parent_id, doc) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(parent_id)
                .bind(doc)
                .execute(&mut *conn)
                .await?;
                Ok(Outcome::Count(done.rows_affected()))
            }
            Self::SetSuspended { id, suspended } => {
                let done = sqlx::query("UPDATE accounts SET suspended = ? WHERE id = ?")
                    .bind(*suspended)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                Ok(Outcome::Count(done.rows_affected()))
            }
            Self::TopUp { id, amount, reference, at } => top_up(conn, id, *amount, reference, *at).await,
            Self::CreateKey(key) => {
                sqlx::query(
                    "INSERT INTO api_keys (id, account_id, secret_hash, name, created_at) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(&key.id)
                .bind(key.account_id.to_string())
                .bind(&key.secret_hash)
                .bind(&key.name)
                .bind(key.created_at.timestamp_millis())
                .execute(&mut *conn)
                .await?;
                Ok(Outcome::Done)
            }
            Self::RevokeKey { account, key_id, at } => {
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND account_id = ?",
                )
                .bind(at)
                .bind(key_id)
                .bind(account)
                .execute(&mut *conn)
                .await?;
                Ok(Outcome::Count(done.rows_affected()))
            }
            Self::BeginRequest { account, key, record, expire_before } => {
                begin_request(conn, account, key, record, *expire_before).await
            }
            Self::FinishRequest { account, key, status, body } => {
                sqlx::query("UPDATE idempotency SET status = ?, body = ? WHERE account_id = ? AND key = ?")
                    .bind(i64::from(*status))
                    .bind(body)
                    .bind(account)
                    .bind(key)
                    .execute(&mut *conn)
                    .await?;
                Ok(Outcome::Done)
            }
            Self::PurgeRequests { before } => {
                let done = sqlx::query("DELETE FROM idempotency WHERE created_at < ?")
                    .bind(before)
                    .execute(&mut *conn)
                    .await?;
                Ok(Outcome::Count(done.rows_affected()))
            }
            Self::UpdateStatuses(updates) => update_statuses(conn, updates).await.map(|()| Outcome::Done),
            Self::PutBatch(batch) => {
                sqlx::query(
                    "INSERT INTO batches (batch_id, account_id, recipients, accepted, invalid, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (batch_id) DO NOTHING",
                )
                .bind(batch.batch_id.to_string())
                .bind(batch.account_id.to_string())
                .bind(i64::try_from(batch.recipients).unwrap_or(i64::MAX))
                .bind(i64::try_from(batch.accepted).unwrap_or(i64::MAX))
                .bind(i64::try_from(batch.invalid).unwrap_or(i64::MAX))
                .bind(batch.created_at.timestamp_millis())
                .execute(&mut *conn)
                .await?;
                Ok(Outcome::Done)
            }
        }
    }
}

async fn top_up(conn: &mut SqliteConnection, id: &str, amount: i64, reference: &str, at: i64) -> Result<Outcome> {
    let current = sqlx::query_scalar::<_, i64>("SELECT balance FROM accounts WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(current) = current else {
        return Ok(Outcome::TopUp(None));
    };
    let inserted = sqlx::query(
        "INSERT INTO ledger (reference, account_id, kind, amount, at) VALUES (?, ?, 'top_up', ?, ?) \
         ON CONFLICT (reference) DO NOTHING",
    )
    .bind(reference)
    .bind(id)
    .bind(amount)
    .bind(at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Outcome::TopUp(Some(TopUp { balance: current, duplicate: true })));
    }
    let balance = current
        .checked_add(amount)
        .ok_or_else(|| QueueError::Invalid(format!("a top-up of {amount} would overflow the balance")))?;
    sqlx::query("UPDATE accounts SET balance = ? WHERE id = ?").bind(balance).bind(id).execute(&mut *conn).await?;
    Ok(Outcome::TopUp(Some(TopUp { balance, duplicate: false })))
}

async fn begin_request(
    conn: &mut SqliteConnection,
    account: &str,
    key: &str,
    record: &IdempotencyRecord,
    expire_before: i64,
) -> Result<Outcome> {
    let existing = sqlx::query(
        "SELECT request_hash, plan, status, body, created_at FROM idempotency WHERE account_id = ? AND key = ?",
    )
    .bind(account)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = existing {
        let created_at: i64 = row.try_get("created_at")?;
        if created_at >= expire_before {
            return Ok(Outcome::Begin(Begin::Existing(idempotency_from(&row)?)));
        }
    }
    sqlx::query(
        "INSERT INTO idempotency (account_id, key, request_hash, plan, created_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (account_id, key) DO UPDATE SET request_hash = excluded.request_hash, plan = excluded.plan, \
         status = NULL, body = NULL, created_at = excluded.created_at",
    )
    .bind(account)
    .bind(key)
    .bind(&record.request_hash)
    .bind(&record.plan)
    .bind(record.created_at.timestamp_millis())
    .execute(&mut *conn)
    .await?;
    Ok(Outcome::Begin(Begin::Started))
}

/// Sets indexed statuses, one statement per chunk: each statement is a round
/// trip to the connection's thread, and a worker updates hundreds at once.
/// A row keeps a status stamped later than the update's. Unlike MongoDB,
/// ties in `at` need no event count here: the one writer applies records
/// one after another, each folding the journal its transaction sees.
pub(super) async fn update_statuses(conn: &mut SqliteConnection, updates: &[StatusUpdate]) -> Result<()> {
    for chunk in updates.chunks(CHUNK / 2) {
        let mut update = QueryBuilder::<Sqlite>::new("WITH v(account_id, message_id, status, at) AS (");
        update.push_values(chunk, |mut row, u| {
            row.push_bind(u.account_id.to_string())
                .push_bind(u.message_id.to_string())
                .push_bind(u.status.as_str())
                .push_bind(u.at.timestamp_millis());
        });
        update.push(
            ") UPDATE messages SET status = v.status, updated_at = v.at FROM v \
             WHERE messages.account_id = v.account_id AND messages.message_id = v.message_id \
             AND messages.updated_at <= v.at",
        );
        update.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes the index rows of accepted messages (part of the accept's transaction).
pub(super) async fn insert_message_rows<M: std::borrow::Borrow<MessageRow>>(
    conn: &mut SqliteConnection,
    rows: &[M],
) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (message_id, account_id, batch_id, to_number, client_ref, status, created_at, \
             updated_at, expires_at) ",
        );
        insert.push_values(chunk, |mut row, m| {
            let m = m.borrow();
            row.push_bind(m.message_id.to_string())
                .push_bind(m.account_id.to_string())
                .push_bind(m.batch_id.map(|b| b.to_string()))
                .push_bind(&m.to)
                .push_bind(&m.client_ref)
                .push_bind(m.status.as_str())
                .push_bind(m.created_at.timestamp_millis())
                .push_bind(m.updated_at.timestamp_millis())
                .push_bind(m.expires_at.map(|t| t.timestamp_millis()));
        });
        insert.push(" ON CONFLICT (account_id, message_id) DO NOTHING");
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

pub(super) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(super) fn parse<T: std::str::FromStr>(value: &str, what: &str) -> Result<T> {
    value.parse().map_err(|_| QueueError::Corrupt(format!("stored {what} {value:?} does not parse")))
}

pub(super) fn status_from(value: &str) -> Result<MessageStatus> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| QueueError::Corrupt(format!("stored status {value:?} is unknown")))
}

fn idempotency_from(row: &SqliteRow) -> Result<IdempotencyRecord> {
    let response = match (row.try_get::<Option<i64>, _>("status")?, row.try_get::<Option<String>, _>("body")?) {
        (Some(status), Some(body)) => Some((u16::try_from(status).unwrap_or(500), body)),
        _ => None,
    };
    Ok(IdempotencyRecord {
        request_hash: row.try_get("request_hash")?,
        plan: row.try_get("plan")?,
        response,
        created_at: from_millis(row.try_get("created_at")?),
    })
}

pub(super) fn account_from(row: &SqliteRow) -> Result<Account> {
    let mut account: Account = serde_json::from_str(row.try_get("doc")?)?;
    account.balance = row.try_get("balance")?;
    account.suspended = row.try_get("suspended")?;
    Ok(account)
}

fn key_from(row: &SqliteRow) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        account_id: parse(row.try_get("account_id")?, "account id")?,
        secret_hash: row.try_get("secret_hash")?,
        name: row.try_get("name")?,
        created_at: from_millis(row.try_get("created_at")?),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(from_millis),
    })
}

pub(super) fn message_from(row: &SqliteRow) -> Result<MessageRow> {
    Ok(MessageRow {
        message_id: parse(row.try_get("message_id")?, "message id")?,
        account_id: parse(row.try_get("account_id")?, "account id")?,
        batch_id: row.try_get::<Option<String>, _>("batch_id")?.map(|b| parse(&b, "batch id")).transpose()?,
        to: row.try_get("to_number")?,
        client_ref: row.try_get("client_ref")?,
        status: status_from(row.try_get("status")?)?,
        created_at: from_millis(row.try_get("created_at")?),
        updated_at: from_millis(row.try_get("updated_at")?),
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(from_millis),
    })
}

fn batch_from(row: &SqliteRow) -> Result<BatchRecord> {
    let count = |name: &str| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0)) };
    Ok(BatchRecord {
        batch_id: parse(row.try_get("batch_id")?, "batch id")?,
        account_id: parse(row.try_get("account_id")?, "account id")?,
        recipients: count("recipients")?,
        accepted: count("accepted")?,
        invalid: count("invalid")?,
        created_at: from_millis(row.try_get("created_at")?),
    })
}

/// `FROM messages WHERE` the account's id range of a query.
fn push_range(query: &mut QueryBuilder<'_, Sqlite>, q: &MessageQuery) {
    // Without statistics the planner could walk the account's whole range for a batch.
    query.push(if q.batch_id.is_some() { "FROM messages INDEXED BY messages_by_batch" } else { "FROM messages" });
    query.push(" WHERE account_id = ").push_bind(q.account_id.to_string());
    if let Some(since) = q.since {
        let from = MessageId::lower_bound(since - chrono::TimeDelta::seconds(1));
        query.push(" AND message_id >= ").push_bind(from.to_string());
    }
    if let Some(until) = q.until {
        let to = MessageId::lower_bound(until + chrono::TimeDelta::seconds(1));
        query.push(" AND message_id < ").push_bind(to.to_string());
    }
    if let Some(before) = q.before {
        query.push(" AND message_id < ").push_bind(before.to_string());
    }
    if let Some(batch) = q.batch_id {
        query.push(" AND batch_id = ").push_bind(batch.to_string());
    }
}

pub(super) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl AccountsBackend for SqliteStore {
    async fn create_account(&self, account: &Account) -> Result<()> {
        let op = RecordOp::CreateAccount {
            id: account.id.to_string(),
            parent_id: account.parent_id.map(|p| p.to_string()),
            doc: serde_json::to_string(account)?,
        };
        match self.record_op(op).await? {
            Outcome::Count(1) => Ok(()),
            Outcome::Count(_) => Err(QueueError::Invalid(format!("account {} exists already", account.id))),
            other => Err(super::unexpected(other)),
        }
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT doc, balance, suspended FROM accounts WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(account_from).transpose()
    }

    async fn list_accounts(
        &self,
        parent: Option<AccountId>,
        after: Option<AccountId>,
        limit_to: usize,
    ) -> Result<Vec<Account>> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT doc, balance, suspended FROM accounts WHERE 1 = 1");
        if let Some(parent) = parent {
            query.push(" AND parent_id = ").push_bind(parent.to_string());
        }
        if let Some(after) = after {
            query.push(" AND id > ").push_bind(after.to_string());
        }
        query.push(" ORDER BY id LIMIT ").push_bind(limit(limit_to));
        query.build().fetch_all(&self.readers).await?.iter().map(account_from).collect()
    }

    async fn set_suspended(&self, id: AccountId, suspended: bool) -> Result<Option<Account>> {
        super::count(self.record_op(RecordOp::SetSuspended { id: id.to_string(), suspended }).await?)?;
        self.account(id).await
    }

    async fn top_up(&self, id: AccountId, amount: i64, reference: &str, at: DateTime<Utc>) -> Result<Option<TopUp>> {
        let op =
            RecordOp::TopUp { id: id.to_string(), amount, reference: reference.to_owned(), at: at.timestamp_millis() };
        match self.record_op(op).await? {
            Outcome::TopUp(done) => Ok(done),
            other => Err(super::unexpected(other)),
        }
    }

    async fn create_key(&self, key: &ApiKeyRecord) -> Result<()> {
        self.record_op(RecordOp::CreateKey(key.clone())).await.map(drop)
    }

    async fn key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?").bind(key_id).fetch_optional(&self.readers).await?;
        row.as_ref().map(key_from).transpose()
    }

    async fn list_keys(&self, account: AccountId) -> Result<Vec<ApiKeyRecord>> {
        sqlx::query("SELECT * FROM api_keys WHERE account_id = ? ORDER BY created_at, id")
            .bind(account.to_string())
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(key_from)
            .collect()
    }

    async fn revoke_key(&self, account: AccountId, key_id: &str, at: DateTime<Utc>) -> Result<bool> {
        let op =
            RecordOp::RevokeKey { account: account.to_string(), key_id: key_id.to_owned(), at: at.timestamp_millis() };
        Ok(super::count(self.record_op(op).await?)? > 0)
    }

    async fn begin_request(
        &self,
        account: AccountId,
        key: &str,
        record: &IdempotencyRecord,
        expire_before: DateTime<Utc>,
    ) -> Result<Begin> {
        let op = RecordOp::BeginRequest {
            account: account.to_string(),
            key: key.to_owned(),
            record: record.clone(),
            expire_before: expire_before.timestamp_millis(),
        };
        match self.record_op(op).await? {
            Outcome::Begin(begin) => Ok(begin),
            other => Err(super::unexpected(other)),
        }
    }

    async fn find_request(
        &self,
        account: AccountId,
        key: &str,
        expire_before: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>> {
        let row = sqlx::query(
            "SELECT request_hash, plan, status, body, created_at FROM idempotency \
             WHERE account_id = ? AND key = ? AND created_at >= ?",
        )
        .bind(account.to_string())
        .bind(key)
        .bind(expire_before.timestamp_millis())
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(idempotency_from).transpose()
    }

    async fn finish_request(&self, account: AccountId, key: &str, status: u16, body: &str) -> Result<()> {
        let op = RecordOp::FinishRequest {
            account: account.to_string(),
            key: key.to_owned(),
            status,
            body: body.to_owned(),
        };
        self.record_op(op).await.map(drop)
    }

    async fn purge_requests(&self, before: DateTime<Utc>) -> Result<u64> {
        super::count(self.record_op(RecordOp::PurgeRequests { before: before.timestamp_millis() }).await?)
    }

    async fn update_account(&self, id: AccountId, update: &AccountUpdate) -> Result<Option<Account>> {
        self.update_account_op(id, update).await
    }

    async fn charge(&self, charges: &[Charge]) -> Result<Vec<ChargeOutcome>> {
        self.charge_op(charges).await
    }

    async fn refund(&self, message: MessageId, at: DateTime<Utc>) -> Result<Vec<Debit>> {
        self.refund_op(message, at).await
    }
}

#[async_trait]
impl MessageIndexBackend for SqliteStore {
    async fn update_statuses(&self, updates: &[StatusUpdate]) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        self.record_op(RecordOp::UpdateStatuses(updates.to_vec())).await.map(drop)
    }

    async fn list(&self, q: &MessageQuery) -> Result<MessagePage> {
        // Time bounds are id ranges; status and recipient filters are not
        // indexed, so their scan of the account's range is bounded. A batch
        // (at most max_batch_recipients messages) has its own index.
        let bounded = (q.status.is_some() || q.to.is_some()) && q.batch_id.is_none();
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM (SELECT * ");
        push_range(&mut query, q);
        query.push(" ORDER BY message_id DESC");
        if bounded {
            query.push(" LIMIT ").push_bind(limit(q.scan_limit.max(1)));
        }
        query.push(") WHERE 1 = 1");
        if let Some(status) = q.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(to) = &q.to {
            query.push(" AND to_number = ").push_bind(to.clone());
        }
        if let Some(since) = q.since {
            query.push(" AND created_at >= ").push_bind(since.timestamp_millis());
        }
        if let Some(until) = q.until {
            query.push(" AND created_at < ").push_bind(until.timestamp_millis());
        }
        query.push(" ORDER BY message_id DESC LIMIT ").push_bind(limit(q.limit));
        // One read transaction: the cursor query below must see the same snapshot.
        let mut snapshot = self.readers.begin().await?;
        let rows =
            query.build().fetch_all(&mut *snapshot).await?.iter().map(message_from).collect::<Result<Vec<_>>>()?;
        if rows.len() == q.limit {
            let next = rows.last().map(|r| r.message_id);
            return Ok(MessagePage { rows, next });
        }
        if !bounded {
            return Ok(MessagePage { rows, next: None });
        }
        // A short page: the scan may have stopped at its bound. Resume after
        // the last message it examined, if it examined a full bound's worth.
        let mut last = QueryBuilder::<Sqlite>::new("SELECT message_id ");
        push_range(&mut last, q);
        last.push(" ORDER BY message_id DESC LIMIT 1 OFFSET ").push_bind(limit(q.scan_limit.max(1) - 1));
        let next = last
            .build()
            .fetch_optional(&mut *snapshot)
            .await?
            .map(|row| row.try_get::<String, _>("message_id"))
            .transpose()?
            .map(|id| parse(&id, "message id"))
            .transpose()?;
        Ok(MessagePage { rows, next })
    }

    async fn get(&self, account_id: AccountId, message_id: MessageId) -> Result<Option<MessageRow>> {
        let row = sqlx::query("SELECT * FROM messages WHERE account_id = ? AND message_id = ?")
            .bind(account_id.to_string())
            .bind(message_id.to_string())
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(message_from).transpose()
    }

    async fn put_batch(&self, batch: &BatchRecord) -> Result<()> {
        self.record_op(RecordOp::PutBatch(batch.clone())).await.map(drop)
    }

    async fn batch(&self, batch_id: BatchId) -> Result<Option<BatchRecord>> {
        let row = sqlx::query("SELECT * FROM batches WHERE batch_id = ?")
            .bind(batch_id.to_string())
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(batch_from).transpose()
    }

    async fn batch_counts(&self, batch_id: BatchId) -> Result<Vec<(MessageStatus, u64)>> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM messages WHERE batch_id = ? GROUP BY status ORDER BY status",
        )
        .bind(batch_id.to_string())
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((status_from(row.try_get("status")?)?, u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0)))
            })
            .collect()
    }

    async fn statuses(&self, messages: &[(AccountId, MessageId)]) -> Result<Vec<(MessageId, MessageStatus)>> {
        self.statuses_read(messages).await
    }

    async fn expirable(
        &self,
        due: DateTime<Utc>,
        submitted_due: DateTime<Utc>,
        limit_to: usize,
    ) -> Result<Vec<MessageRow>> {
        self.expirable_read(due, submitted_due, limit_to).await
    }
}
