//! SQLite statements: multi-row `VALUES` lists of a fixed size (one
//! prepared statement per table, reused), ids given as JSON arrays to
//! `json_each` for reads.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::sqlite::Sqlite;
use sqlx::{QueryBuilder, SqliteConnection, SqlitePool};
use tern_core::{AccountId, MessageId};

use super::rows::{MESSAGE_COLUMNS, RawMessage};
use crate::ReportingError;
use crate::fold::{delivered_to_text, key_to_text};
use crate::plan::Changes;
use crate::summary::{GroupBy, SummaryRow};

/// Rows per statement: SQLite allows 32,766 parameters.
const CHUNK: usize = 500;

/// Times as stored: UTC ISO 8601 with microseconds, which sorts as text and
/// which SQLite's date functions read.
fn ts(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn opt_ts(at: Option<DateTime<Utc>>) -> Option<String> {
    at.map(ts)
}

fn opt_id(id: Option<impl ToString>) -> Option<String> {
    id.map(|i| i.to_string())
}

fn ids_json(ids: &[MessageId]) -> String {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    serde_json::Value::from(ids).to_string()
}

pub(super) async fn load_messages(
    tx: &mut SqliteConnection,
    ids: &[MessageId],
) -> Result<Vec<RawMessage>, ReportingError> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id IN (SELECT value FROM json_each(?))");
    Ok(sqlx::query_as(&sql).bind(ids_json(ids)).fetch_all(tx).await?)
}

pub(super) async fn load_events(tx: &mut SqliteConnection, ids: &[MessageId]) -> Result<Vec<String>, ReportingError> {
    let sql = "SELECT event FROM message_events WHERE message_id IN (SELECT value FROM json_each(?)) ORDER BY position";
    Ok(sqlx::query_scalar(sql).bind(ids_json(ids)).fetch_all(tx).await?)
}

/// Runs `head VALUES (...), (...) tail` over `items`, `CHUNK` rows at a
/// time; values are bound by reference, not copied.
async fn insert_all<'a, T>(
    tx: &mut SqliteConnection,
    head: &str,
    tail: &str,
    items: &'a [T],
    mut bind: impl FnMut(sqlx::query_builder::Separated<'_, 'a, Sqlite, &'static str>, &'a T),
) -> Result<(), ReportingError> {
    for chunk in items.chunks(CHUNK) {
        let mut query: QueryBuilder<'a, Sqlite> = QueryBuilder::new(head);
        query.push_values(chunk, &mut bind);
        query.push(tail);
        query.build().execute(&mut *tx).await?;
    }
    Ok(())
}

#[tracing::instrument(skip_all, fields(events = changes.events.len(), messages = changes.messages.len()))]
pub(super) async fn write(tx: &mut SqliteConnection, changes: &Changes) -> Result<(), ReportingError> {
    insert_all(
        tx,
        "INSERT INTO message_events (position, event_id, message_id, account_id, type, at, event) ",
        " ON CONFLICT DO NOTHING",
        &changes.events,
        |mut row, e| {
            row.push_bind(e.position)
                .push_bind(e.event.id.to_string())
                .push_bind(e.event.message_id.to_string())
                .push_bind(opt_id(e.event.account_id))
                .push_bind(e.event.kind.type_name())
                .push_bind(ts(e.event.at))
                .push_bind(e.json.as_str());
        },
    )
    .await?;
    insert_all(
        tx,
        "INSERT INTO messages (message_id, account_id, reseller_id, batch_id, destination, country, sender, \
         client_ref, segments, encoding, connector, routed_attempt, status, error_code, price, currency, charged, \
         refunded, wholesale, accepted_at, submitted_at, delivered_at, ended_at, last_event_at, fold_key, \
         fold_delivered) ",
        " ON CONFLICT (message_id) DO UPDATE SET account_id = excluded.account_id, \
         reseller_id = excluded.reseller_id, batch_id = excluded.batch_id, destination = excluded.destination, \
         country = excluded.country, sender = excluded.sender, client_ref = excluded.client_ref, \
         segments = excluded.segments, encoding = excluded.encoding, connector = excluded.connector, \
         routed_attempt = excluded.routed_attempt, status = excluded.status, error_code = excluded.error_code, \
         price = excluded.price, currency = excluded.currency, charged = excluded.charged, \
         refunded = excluded.refunded, wholesale = excluded.wholesale, accepted_at = excluded.accepted_at, \
         submitted_at = excluded.submitted_at, delivered_at = excluded.delivered_at, ended_at = excluded.ended_at, \
         last_event_at = excluded.last_event_at, fold_key = excluded.fold_key, \
         fold_delivered = excluded.fold_delivered",
        &changes.messages,
        |mut row, m| {
            row.push_bind(m.message_id.to_string())
                .push_bind(opt_id(m.account_id))
                .push_bind(opt_id(m.reseller_id))
                .push_bind(opt_id(m.batch_id))
                .push_bind(m.destination.as_deref())
                .push_bind(m.country.as_deref())
                .push_bind(m.sender.as_deref())
                .push_bind(m.client_ref.as_deref())
                .push_bind(m.segments.map(i64::from))
                .push_bind(m.encoding.as_deref())
                .push_bind(m.connector.as_deref())
                .push_bind(m.routed_attempt.map(i64::from))
                .push_bind(m.status().map(|s| s.as_str()))
                .push_bind(m.fold.error_code.as_deref())
                .push_bind(m.price)
                .push_bind(m.currency.as_deref())
                .push_bind(m.charged)
                .push_bind(m.refunded)
                .push_bind(m.wholesale)
                .push_bind(opt_ts(m.accepted_at))
                .push_bind(opt_ts(m.submitted_at))
                .push_bind(opt_ts(m.delivered_at()))
                .push_bind(opt_ts(m.fold.ended_at))
                .push_bind(opt_ts(m.last_event_at))
                .push_bind(m.fold.last.as_ref().map(key_to_text))
                .push_bind(delivered_to_text(m.fold.machine.delivered()));
        },
    )
    .await?;
    insert_all(
        tx,
        "INSERT INTO inbound_messages (message_id, account_id, from_number, to_number, body, connector, \
         received_at, reply_to, opt, keyword) ",
        " ON CONFLICT (message_id) DO UPDATE SET \
         account_id = COALESCE(excluded.account_id, account_id), \
         from_number = COALESCE(excluded.from_number, from_number), \
         to_number = COALESCE(excluded.to_number, to_number), body = COALESCE(excluded.body, body), \
         connector = COALESCE(excluded.connector, connector), \
         received_at = COALESCE(excluded.received_at, received_at), \
         reply_to = COALESCE(excluded.reply_to, reply_to), opt = COALESCE(excluded.opt, opt), \
         keyword = COALESCE(excluded.keyword, keyword)",
        &changes.inbound,
        |mut row, i| {
            row.push_bind(opt_id(i.message_id))
                .push_bind(opt_id(i.account_id))
                .push_bind(i.from_number.as_deref())
                .push_bind(i.to_number.as_deref())
                .push_bind(i.body.as_deref())
                .push_bind(i.connector.as_deref())
                .push_bind(opt_ts(i.received_at))
                .push_bind(opt_id(i.reply_to))
                .push_bind(i.opt.as_deref())
                .push_bind(i.keyword.as_deref());
        },
    )
    .await?;
    insert_all(
        tx,
        "INSERT INTO daily_stats (day, account_id, country, connector, status, messages, segments, revenue) ",
        " ON CONFLICT (account_id, day, country, connector, status) DO UPDATE SET \
         messages = messages + excluded.messages, segments = segments + excluded.segments, \
         revenue = revenue + excluded.revenue",
        &changes.stats,
        |mut row, (key, counts)| {
            row.push_bind(key.day)
                .push_bind(key.account_id.to_string())
                .push_bind(key.country.as_str())
                .push_bind(key.connector.as_str())
                .push_bind(key.status.as_str())
                .push_bind(counts.messages)
                .push_bind(counts.segments)
                .push_bind(counts.revenue);
        },
    )
    .await?;
    for chunk in changes.shrunk.chunks(CHUNK) {
        let mut query: QueryBuilder<'_, Sqlite> = QueryBuilder::new(
            "DELETE FROM daily_stats WHERE messages = 0 AND (account_id, day, country, connector, status) IN (",
        );
        query.push_values(chunk, |mut row, key| {
            row.push_bind(key.account_id.to_string())
                .push_bind(key.day)
                .push_bind(key.country.as_str())
                .push_bind(key.connector.as_str())
                .push_bind(key.status.as_str());
        });
        query.push(")");
        query.build().execute(&mut *tx).await?;
    }
    insert_all(
        tx,
        "INSERT INTO batches (batch_id, account_id, messages, accepted, scheduled, routed, submitted, delivered, \
         undeliverable, expired, rejected, failed, cancelled, first_accepted_at, last_accepted_at) ",
        " ON CONFLICT (batch_id) DO UPDATE SET messages = messages + excluded.messages, \
         accepted = accepted + excluded.accepted, scheduled = scheduled + excluded.scheduled, \
         routed = routed + excluded.routed, submitted = submitted + excluded.submitted, \
         delivered = delivered + excluded.delivered, undeliverable = undeliverable + excluded.undeliverable, \
         expired = expired + excluded.expired, rejected = rejected + excluded.rejected, \
         failed = failed + excluded.failed, cancelled = cancelled + excluded.cancelled, \
         first_accepted_at = MIN(first_accepted_at, excluded.first_accepted_at), \
         last_accepted_at = MAX(last_accepted_at, excluded.last_accepted_at)",
        &changes.batches,
        |mut row, b| {
            row.push_bind(b.batch_id.to_string()).push_bind(b.account_id.to_string()).push_bind(b.messages);
            for n in b.by_status {
                row.push_bind(n);
            }
            row.push_bind(ts(b.first_accepted_at)).push_bind(ts(b.last_accepted_at));
        },
    )
    .await?;
    sqlx::query("UPDATE projector_checkpoint SET position = ?, updated_at = ? WHERE id = 1")
        .bind(i64::try_from(changes.checkpoint.0).unwrap_or(i64::MAX))
        .bind(ts(Utc::now()))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub(super) async fn summary(
    pool: &SqlitePool,
    account: AccountId,
    from: NaiveDate,
    to: NaiveDate,
    group_by: GroupBy,
) -> Result<Vec<SummaryRow>, ReportingError> {
    let sql = format!(
        "SELECT {column} AS key, SUM(messages) AS messages, SUM(segments) AS segments, SUM(revenue) AS revenue \
         FROM daily_stats WHERE account_id = ? AND day >= ? AND day <= ? GROUP BY key ORDER BY key",
        column = group_by.column()
    );
    Ok(sqlx::query_as(&sql).bind(account.to_string()).bind(from).bind(to).fetch_all(pool).await?)
}
