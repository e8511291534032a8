//! The pipeline's writes and reads on SQLite: charges and refunds, account
//! updates, opt-outs, conversations, inbound rows, leases and settings.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use tern_core::{AccountId, MessageId, MessageStatus};

use super::ops::{CHUNK, Outcome};
use super::records::{from_millis, limit, parse, status_from};
use super::{SqliteStore, unexpected};
use crate::accounts::{Account, AccountUpdate};
use crate::billing::{Charge, ChargeOutcome, Debit};
use crate::contacts::{ContactsBackend, Conversation, InboundRow};
use crate::coordination::{CoordinationBackend, Setting};
use crate::messages::MessageRow;
use crate::{QueueError, Result};

/// Pipeline writes, run by the group-commit writer.
pub(super) enum PipelineOp {
    UpdateAccount { id: String, update: AccountUpdate },
    Charge(Vec<Charge>),
    Refund { message: MessageId, at: i64 },
    SetOptOut { account: String, number: String, opted_out: bool, at: i64 },
    Remember(Vec<Conversation>),
    PutInbound(Vec<InboundRow>),
    TryLease { name: String, holder: String, until: i64 },
    ReleaseLease { name: String, holder: String },
    PutSetting { key: String, value: String },
}

impl PipelineOp {
    pub(super) fn needs_savepoint(&self) -> bool {
        matches!(self, Self::UpdateAccount { .. } | Self::Charge(_) | Self::Refund { .. } | Self::PutInbound(_))
            || matches!(self, Self::Remember(c) if c.len() > CHUNK)
    }

    pub(super) async fn execute(&self, conn: &mut SqliteConnection, now: i64) -> Result<Outcome> {
        match self {
            Self::UpdateAccount { id, update } => update_account(conn, id, update).await.map(Outcome::Account),
            Self::Charge(charges) => charge(conn, charges).await.map(Outcome::Charged),
            Self::Refund { message, at } => refund(conn, *message, *at).await.map(Outcome::Refunded),
            Self::SetOptOut { account, number, opted_out, at } => {
                let done = if *opted_out {
                    sqlx::query("INSERT INTO opt_outs (account_id, number, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
                        .bind(account)
                        .bind(number)
                        .bind(at)
                        .execute(&mut *conn)
                        .await?
                } else {
                    sqlx::query("DELETE FROM opt_outs WHERE account_id = ? AND number = ?")
                        .bind(account)
                        .bind(number)
                        .execute(&mut *conn)
                        .await?
                };
                Ok(Outcome::Count(done.rows_affected()))
            }
            Self::Remember(conversations) => remember(conn, conversations).await.map(|()| Outcome::Done),
            Self::PutInbound(rows) => put_inbound(conn, rows).await.map(|()| Outcome::Done),
            Self::TryLease { name, holder, until } => {
                let done = sqlx::query(
                    "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE leases.holder = excluded.holder OR leases.expires_at <= ?4",
                )
                .bind(name)
                .bind(holder)
                .bind(until)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(Outcome::Count(done.rows_affected()))
            }
            Self::ReleaseLease { name, holder } => {
                let done = sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
                    .bind(name)
                    .bind(holder)
                    .execute(&mut *conn)
                    .await?;
                Ok(Outcome::Count(done.rows_affected()))
            }
            Self::PutSetting { key, value } => {
                let version: i64 = sqlx::query_scalar(
                    "INSERT INTO settings (key, value, version, updated_at) VALUES (?1, ?2, 1, ?3) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = settings.version + 1, \
                     updated_at = excluded.updated_at RETURNING version",
                )
                .bind(key)
                .bind(value)
                .bind(now)
                .fetch_one(&mut *conn)
                .await?;
                Ok(Outcome::Count(u64::try_from(version).unwrap_or(0)))
            }
        }
    }
}

async fn update_account(conn: &mut SqliteConnection, id: &str, update: &AccountUpdate) -> Result<Option<Account>> {
    let Some(row) = sqlx::query("SELECT doc, balance, suspended FROM accounts WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let mut account = super::records::account_from(&row)?;
    update.apply(&mut account);
    sqlx::query("UPDATE accounts SET doc = ? WHERE id = ?")
        .bind(serde_json::to_string(&account)?)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(account))
}

/// The ledger references `<kind>:<message>:*` as a range: ';' sorts right after ':'.
fn ledger_range(kind: &str, message: MessageId) -> (String, String) {
    (format!("{kind}:{message}:"), format!("{kind}:{message};"))
}

async fn recorded_debits(conn: &mut SqliteConnection, kind: &str, message: MessageId) -> Result<Vec<Debit>> {
    let (from, to) = ledger_range(kind, message);
    let rows = sqlx::query(
        "SELECT account_id, amount, currency FROM ledger WHERE reference >= ? AND reference < ? ORDER BY at, reference",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(debit_from).collect()
}

fn debit_from(row: &SqliteRow) -> Result<Debit> {
    let account: String = row.try_get("account_id")?;
    Ok(Debit {
        account_id: account.parse().map_err(|_| QueueError::Corrupt(format!("ledger account {account:?}")))?,
        // Refunds are stored as positive credits and charges as negative debits.
        amount: row.try_get::<i64, _>("amount")?.abs(),
        currency: row.try_get::<Option<String>, _>("currency")?.unwrap_or_default(),
    })
}

/// Balances are read once per account and written once at the end, so a
/// batch of charges to one account costs one row update, not one per message.
async fn charge(conn: &mut SqliteConnection, charges: &[Charge]) -> Result<Vec<ChargeOutcome>> {
    let mut funds: HashMap<AccountId, Option<(i64, i64)>> = HashMap::new();
    let mut ledger: Vec<(String, &Debit, i64)> = Vec::new();
    let mut outcomes = Vec::with_capacity(charges.len());
    let mut charged_now: HashMap<MessageId, &[Debit]> = HashMap::new();
    for charge in charges {
        let mut payers: Vec<AccountId> = charge.debits.iter().map(|d| d.account_id).collect();
        payers.sort_unstable();
        if payers.windows(2).any(|w| w[0] == w[1]) {
            return Err(QueueError::Invalid(format!("the charge of {} names a payer twice", charge.message_id)));
        }
    }
    // A charge's debits are written together, so its first debit's ledger
    // row tells whether it was made; one query looks them all up.
    let mut seen = std::collections::HashSet::new();
    for chunk in charges.chunks(CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT reference FROM ledger WHERE reference IN (");
        let mut list = query.separated(", ");
        for charge in chunk {
            if let Some(first) = charge.debits.first() {
                list.push_bind(format!("charge:{}:{}", charge.message_id, first.account_id));
            }
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *conn).await? {
            seen.insert(row.try_get::<String, _>("reference")?);
        }
    }
    'charges: for charge in charges {
        if let Some(earlier) = charged_now.get(&charge.message_id) {
            outcomes.push(ChargeOutcome::AlreadyCharged(earlier.to_vec()));
            continue;
        }
        let made = charge
            .debits
            .first()
            .is_some_and(|d| seen.contains(&format!("charge:{}:{}", charge.message_id, d.account_id)));
        // The payers may differ from an earlier attempt's (a plan changed): the prefix finds those too.
        let recorded = if made || charge.debits.is_empty() {
            recorded_debits(conn, "charge", charge.message_id).await?
        } else {
            Vec::new()
        };
        if !recorded.is_empty() {
            outcomes.push(ChargeOutcome::AlreadyCharged(recorded));
            continue;
        }
        for debit in &charge.debits {
            if let std::collections::hash_map::Entry::Vacant(slot) = funds.entry(debit.account_id) {
                let row = sqlx::query(
                    "SELECT balance, COALESCE(json_extract(doc, '$.credit_limit'), 0) AS credit_limit \
                     FROM accounts WHERE id = ?",
                )
                .bind(debit.account_id.to_string())
                .fetch_optional(&mut *conn)
                .await?;
                let entry = row.map(|r| Ok::<_, QueueError>((r.try_get("balance")?, r.try_get("credit_limit")?)));
                slot.insert(entry.transpose()?);
            }
        }
        // Check every payer before touching any balance: all or nothing.
        let mut planned: HashMap<AccountId, i64> = HashMap::new();
        for debit in &charge.debits {
            let Some(Some((balance, credit_limit))) = funds.get(&debit.account_id).copied() else {
                outcomes.push(ChargeOutcome::UnknownAccount { account_id: debit.account_id });
                continue 'charges;
            };
            let after = planned.get(&debit.account_id).copied().unwrap_or(balance).checked_sub(debit.amount);
            match after {
                Some(after) if debit.amount >= 0 && after >= -credit_limit.max(0) => {
                    planned.insert(debit.account_id, after);
                }
                _ => {
                    outcomes.push(ChargeOutcome::Insufficient { account_id: debit.account_id });
                    continue 'charges;
                }
            }
        }
        for (account, balance) in planned {
            if let Some(Some((current, _))) = funds.get_mut(&account) {
                *current = balance;
            }
        }
        let at = charge.at.timestamp_millis();
        for debit in &charge.debits {
            ledger.push((format!("charge:{}:{}", charge.message_id, debit.account_id), debit, at));
        }
        if !charge.debits.is_empty() {
            charged_now.insert(charge.message_id, &charge.debits);
        }
        outcomes.push(ChargeOutcome::Charged);
    }
    for chunk in ledger.chunks(CHUNK) {
        let mut insert =
            QueryBuilder::<Sqlite>::new("INSERT INTO ledger (reference, account_id, kind, amount, at, currency) ");
        insert.push_values(chunk, |mut row, (reference, debit, at)| {
            row.push_bind(reference.as_str())
                .push_bind(debit.account_id.to_string())
                .push_bind("charge")
                .push_bind(-debit.amount)
                .push_bind(*at)
                .push_bind(debit.currency.as_str());
        });
        insert.build().execute(&mut *conn).await?;
    }
    for (account, entry) in funds {
        if let Some((balance, _)) = entry {
            sqlx::query("UPDATE accounts SET balance = ? WHERE id = ?")
                .bind(balance)
                .bind(account.to_string())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(outcomes)
}

async fn refund(conn: &mut SqliteConnection, message: MessageId, at: i64) -> Result<Vec<Debit>> {
    let mut credited = Vec::new();
    for debit in recorded_debits(conn, "charge", message).await? {
        let inserted = sqlx::query(
            "INSERT INTO ledger (reference, account_id, kind, amount, at, currency) VALUES (?, ?, 'refund', ?, ?, ?) \
             ON CONFLICT (reference) DO NOTHING",
        )
        .bind(format!("refund:{message}:{}", debit.account_id))
        .bind(debit.account_id.to_string())
        .bind(debit.amount)
        .bind(at)
        .bind(&debit.currency)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            sqlx::query("UPDATE accounts SET balance = balance + ? WHERE id = ?")
                .bind(debit.amount)
                .bind(debit.account_id.to_string())
                .execute(&mut *conn)
                .await?;
            credited.push(debit);
        }
    }
    Ok(credited)
}

async fn remember(conn: &mut SqliteConnection, conversations: &[Conversation]) -> Result<()> {
    for chunk in conversations.chunks(CHUNK) {
        let mut insert =
            QueryBuilder::<Sqlite>::new("INSERT INTO conversations (sender, handset, account_id, message_id, at) ");
        insert.push_values(chunk, |mut row, c| {
            row.push_bind(c.sender.as_str())
                .push_bind(c.handset.as_str())
                .push_bind(c.account_id.to_string())
                .push_bind(c.message_id.to_string())
                .push_bind(c.at.timestamp_millis());
        });
        // "WHERE true" disambiguates the upsert from a join in INSERT ... SELECT syntax.
        insert.push(
            " ON CONFLICT (sender, handset) DO UPDATE SET account_id = excluded.account_id, \
             message_id = excluded.message_id, at = excluded.at WHERE excluded.at >= conversations.at",
        );
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

async fn put_inbound(conn: &mut SqliteConnection, rows: &[InboundRow]) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO inbound (account_id, message_id, from_number, to_number, body, connector, reply_to, \
             received_at) ",
        );
        insert.push_values(chunk, |mut row, r| {
            row.push_bind(r.account_id.to_string())
                .push_bind(r.message_id.to_string())
                .push_bind(r.from.as_str())
                .push_bind(r.to.as_str())
                .push_bind(r.body.as_str())
                .push_bind(r.connector.as_str())
                .push_bind(r.reply_to.map(|m| m.to_string()))
                .push_bind(r.received_at.timestamp_millis());
        });
        insert.push(" ON CONFLICT (account_id, message_id) DO NOTHING");
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

fn inbound_from(row: &SqliteRow) -> Result<InboundRow> {
    Ok(InboundRow {
        message_id: parse(row.try_get("message_id")?, "message id")?,
        account_id: parse(row.try_get("account_id")?, "account id")?,
        from: row.try_get("from_number")?,
        to: row.try_get("to_number")?,
        body: row.try_get("body")?,
        connector: row.try_get("connector")?,
        reply_to: row.try_get::<Option<String>, _>("reply_to")?.map(|m| parse(&m, "message id")).transpose()?,
        received_at: from_millis(row.try_get("received_at")?),
    })
}

impl SqliteStore {
    async fn pipeline_op(&self, op: PipelineOp) -> Result<Outcome> {
        self.call(super::ops::Op::Pipeline(op)).await
    }

    pub(super) async fn update_account_op(&self, id: AccountId, update: &AccountUpdate) -> Result<Option<Account>> {
        match self.pipeline_op(PipelineOp::UpdateAccount { id: id.to_string(), update: update.clone() }).await? {
            Outcome::Account(account) => Ok(account),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn charge_op(&self, charges: &[Charge]) -> Result<Vec<ChargeOutcome>> {
        if charges.is_empty() {
            return Ok(Vec::new());
        }
        match self.pipeline_op(PipelineOp::Charge(charges.to_vec())).await? {
            Outcome::Charged(outcomes) => Ok(outcomes),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn refund_op(&self, message: MessageId, at: DateTime<Utc>) -> Result<Vec<Debit>> {
        match self.pipeline_op(PipelineOp::Refund { message, at: at.timestamp_millis() }).await? {
            Outcome::Refunded(credits) => Ok(credits),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn statuses_read(
        &self,
        messages: &[(AccountId, MessageId)],
    ) -> Result<Vec<(MessageId, MessageStatus)>> {
        let mut found = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(CHUNK / 2) {
            let mut query = QueryBuilder::<Sqlite>::new("SELECT message_id, status FROM messages WHERE ");
            let mut separated = query.separated(" OR ");
            for (account, message) in chunk {
                separated.push("(account_id = ");
                separated.push_bind_unseparated(account.to_string());
                separated.push_unseparated(" AND message_id = ");
                separated.push_bind_unseparated(message.to_string());
                separated.push_unseparated(")");
            }
            for row in query.build().fetch_all(&self.readers).await? {
                found.push((parse(row.try_get("message_id")?, "message id")?, status_from(row.try_get("status")?)?));
            }
        }
        Ok(found)
    }

    pub(super) async fn expirable_read(
        &self,
        due: DateTime<Utc>,
        submitted_due: DateTime<Utc>,
        limit_to: usize,
    ) -> Result<Vec<MessageRow>> {
        let rows = sqlx::query(
            "SELECT * FROM messages INDEXED BY messages_in_flight_by_expiry \
             WHERE status IN ('accepted', 'scheduled', 'routed', 'submitted') AND expires_at <= ?1 \
             AND (status <> 'submitted' OR expires_at <= ?2) ORDER BY expires_at LIMIT ?3",
        )
        .bind(due.timestamp_millis())
        .bind(submitted_due.timestamp_millis())
        .bind(limit(limit_to))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(super::records::message_from).collect()
    }
}

#[async_trait]
impl ContactsBackend for SqliteStore {
    async fn set_opt_out(&self, account: AccountId, number: &str, opted_out: bool, at: DateTime<Utc>) -> Result<bool> {
        let op = PipelineOp::SetOptOut {
            account: account.to_string(),
            number: number.to_owned(),
            opted_out,
            at: at.timestamp_millis(),
        };
        Ok(super::count(self.pipeline_op(op).await?)? > 0)
    }

    async fn opted_out(&self, account: AccountId, numbers: &[String]) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for chunk in numbers.chunks(CHUNK) {
            let mut query = QueryBuilder::<Sqlite>::new("SELECT number FROM opt_outs WHERE account_id = ");
            query.push_bind(account.to_string()).push(" AND number IN (");
            let mut list = query.separated(", ");
            for number in chunk {
                list.push_bind(number.as_str());
            }
            query.push(")");
            for row in query.build().fetch_all(&self.readers).await? {
                found.push(row.try_get("number")?);
            }
        }
        Ok(found)
    }

    async fn remember_conversations(&self, conversations: &[Conversation]) -> Result<()> {
        if conversations.is_empty() {
            return Ok(());
        }
        self.pipeline_op(PipelineOp::Remember(conversations.to_vec())).await.map(drop)
    }

    async fn latest_conversation(
        &self,
        sender: &str,
        handset: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<Conversation>> {
        let row = sqlx::query("SELECT * FROM conversations WHERE sender = ? AND handset = ? AND at >= ?")
            .bind(sender)
            .bind(handset)
            .bind(since.timestamp_millis())
            .fetch_optional(&self.readers)
            .await?;
        row.map(|row| {
            Ok(Conversation {
                sender: row.try_get("sender")?,
                handset: row.try_get("handset")?,
                account_id: parse(row.try_get("account_id")?, "account id")?,
                message_id: parse(row.try_get("message_id")?, "message id")?,
                at: from_millis(row.try_get("at")?),
            })
        })
        .transpose()
    }

    async fn put_inbound(&self, rows: &[InboundRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.pipeline_op(PipelineOp::PutInbound(rows.to_vec())).await.map(drop)
    }

    async fn list_inbound(
        &self,
        account: AccountId,
        before: Option<MessageId>,
        limit_to: usize,
    ) -> Result<Vec<InboundRow>> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM inbound WHERE account_id = ");
        query.push_bind(account.to_string());
        if let Some(before) = before {
            query.push(" AND message_id < ").push_bind(before.to_string());
        }
        query.push(" ORDER BY message_id DESC LIMIT ").push_bind(limit(limit_to));
        query.build().fetch_all(&self.readers).await?.iter().map(inbound_from).collect()
    }
}

#[async_trait]
impl CoordinationBackend for SqliteStore {
    async fn try_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool> {
        let until = Utc::now().timestamp_millis().saturating_add(crate::queue::millis(ttl));
        let op = PipelineOp::TryLease { name: name.to_owned(), holder: holder.to_owned(), until };
        Ok(super::count(self.pipeline_op(op).await?)? > 0)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let op = PipelineOp::ReleaseLease { name: name.to_owned(), holder: holder.to_owned() };
        self.pipeline_op(op).await.map(drop)
    }

    async fn lease_holder(&self, name: &str) -> Result<Option<(String, DateTime<Utc>)>> {
        let row = sqlx::query("SELECT holder, expires_at FROM leases WHERE name = ? AND expires_at > ?")
            .bind(name)
            .bind(Utc::now().timestamp_millis())
            .fetch_optional(&self.readers)
            .await?;
        row.map(|row| Ok((row.try_get("holder")?, from_millis(row.try_get("expires_at")?)))).transpose()
    }

    async fn setting(&self, key: &str) -> Result<Option<Setting>> {
        let row = sqlx::query("SELECT value, version, updated_at FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.readers)
            .await?;
        row.map(|row| {
            Ok(Setting {
                value: row.try_get("value")?,
                version: row.try_get("version")?,
                updated_at: from_millis(row.try_get("updated_at")?),
            })
        })
        .transpose()
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<i64> {
        let op = PipelineOp::PutSetting { key: key.to_owned(), value: value.to_owned() };
        Ok(i64::try_from(super::count(self.pipeline_op(op).await?)?).unwrap_or(i64::MAX))
    }
}
