//! PostgreSQL statements: one statement per table and batch, each column
//! bound as an array and turned back into rows by `UNNEST`, so a batch of
//! thousands of events costs a handful of round trips.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use tern_core::{AccountId, MessageId};

use super::rows::RawMessage;
use crate::ReportingError;
use crate::fold::{delivered_to_text, key_to_text};
use crate::model::BATCH_STATUSES;
use crate::plan::Changes;
use crate::summary::{GroupBy, SummaryRow};

/// `messages` as [`RawMessage`] reads it: ids as text, so both dialects decode one row type.
const PG_MESSAGE_COLUMNS: &str = "message_id::text AS message_id, account_id::text AS account_id, \
    reseller_id::text AS reseller_id, batch_id::text AS batch_id, destination, country, sender, client_ref, \
    segments, encoding, connector, routed_attempt, status, error_code, price, currency, charged, refunded, \
    wholesale, accepted_at, submitted_at, ended_at, last_event_at, fold_key, fold_delivered";

fn ids(ids: &[MessageId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

fn opt_ids<T: ToString>(values: impl Iterator<Item = Option<T>>) -> Vec<Option<String>> {
    values.map(|v| v.map(|v| v.to_string())).collect()
}

pub(super) async fn load_messages(
    tx: &mut PgConnection,
    ids_: &[MessageId],
) -> Result<Vec<RawMessage>, ReportingError> {
    let sql = format!("SELECT {PG_MESSAGE_COLUMNS} FROM messages WHERE message_id = ANY($1::uuid[])");
    Ok(sqlx::query_as(&sql).bind(ids(ids_)).fetch_all(tx).await?)
}

pub(super) async fn load_events(tx: &mut PgConnection, ids_: &[MessageId]) -> Result<Vec<String>, ReportingError> {
    let sql = "SELECT event::text FROM message_events WHERE message_id = ANY($1::uuid[]) ORDER BY position";
    Ok(sqlx::query_scalar(sql).bind(ids(ids_)).fetch_all(tx).await?)
}

#[tracing::instrument(skip_all, fields(events = changes.events.len(), messages = changes.messages.len()))]
pub(super) async fn write(tx: &mut PgConnection, changes: &Changes) -> Result<(), ReportingError> {
    write_events(tx, changes).await?;
    write_messages(tx, changes).await?;
    write_inbound(tx, changes).await?;
    write_stats(tx, changes).await?;
    write_batches(tx, changes).await?;
    sqlx::query("UPDATE projector_checkpoint SET position = $1, updated_at = now() WHERE id = 1")
        .bind(i64::try_from(changes.checkpoint.0).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn write_events(tx: &mut PgConnection, changes: &Changes) -> Result<(), ReportingError> {
    if changes.events.is_empty() {
        return Ok(());
    }
    let e = &changes.events;
    sqlx::query(
        "INSERT INTO message_events (position, event_id, message_id, account_id, type, at, event) \
         SELECT * FROM UNNEST($1::int8[], $2::text[]::uuid[], $3::text[]::uuid[], $4::text[]::uuid[], $5::text[], \
         $6::timestamptz[], $7::text[]::json[]) ON CONFLICT DO NOTHING",
    )
    .bind(e.iter().map(|r| r.position).collect::<Vec<i64>>())
    .bind(e.iter().map(|r| r.event.id.to_string()).collect::<Vec<_>>())
    .bind(e.iter().map(|r| r.event.message_id.to_string()).collect::<Vec<_>>())
    .bind(opt_ids(e.iter().map(|r| r.event.account_id)))
    .bind(e.iter().map(|r| r.event.kind.type_name()).collect::<Vec<_>>())
    .bind(e.iter().map(|r| r.event.at).collect::<Vec<DateTime<Utc>>>())
    .bind(e.iter().map(|r| r.json.as_str()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_messages(tx: &mut PgConnection, changes: &Changes) -> Result<(), ReportingError> {
    let m = &changes.messages;
    if m.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&crate::model::MessageRow) -> Option<String>| m.iter().map(f).collect::<Vec<_>>();
    let time = |f: fn(&crate::model::MessageRow) -> Option<DateTime<Utc>>| m.iter().map(f).collect::<Vec<_>>();
    let int = |f: fn(&crate::model::MessageRow) -> Option<i64>| m.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO messages (message_id, account_id, reseller_id, batch_id, destination, country, sender, \
         client_ref, segments, encoding, connector, routed_attempt, status, error_code, price, currency, charged, \
         refunded, wholesale, accepted_at, submitted_at, delivered_at, ended_at, last_event_at, fold_key, \
         fold_delivered) \
         SELECT * FROM UNNEST($1::text[]::uuid[], $2::text[]::uuid[], $3::text[]::uuid[], $4::text[]::uuid[], \
         $5::text[], $6::text[], $7::text[], $8::text[], $9::int4[], $10::text[], $11::text[], $12::int8[], \
         $13::text[], $14::text[], $15::int8[], $16::text[], $17::int8[], $18::int8[], $19::int8[], \
         $20::timestamptz[], $21::timestamptz[], $22::timestamptz[], $23::timestamptz[], $24::timestamptz[], \
         $25::text[], $26::text[]) \
         ON CONFLICT (message_id) DO UPDATE SET account_id = EXCLUDED.account_id, \
         reseller_id = EXCLUDED.reseller_id, batch_id = EXCLUDED.batch_id, destination = EXCLUDED.destination, \
         country = EXCLUDED.country, sender = EXCLUDED.sender, client_ref = EXCLUDED.client_ref, \
         segments = EXCLUDED.segments, encoding = EXCLUDED.encoding, connector = EXCLUDED.connector, \
         routed_attempt = EXCLUDED.routed_attempt, status = EXCLUDED.status, error_code = EXCLUDED.error_code, \
         price = EXCLUDED.price, currency = EXCLUDED.currency, charged = EXCLUDED.charged, \
         refunded = EXCLUDED.refunded, wholesale = EXCLUDED.wholesale, accepted_at = EXCLUDED.accepted_at, \
         submitted_at = EXCLUDED.submitted_at, delivered_at = EXCLUDED.delivered_at, ended_at = EXCLUDED.ended_at, \
         last_event_at = EXCLUDED.last_event_at, fold_key = EXCLUDED.fold_key, \
         fold_delivered = EXCLUDED.fold_delivered",
    )
    .bind(m.iter().map(|r| r.message_id.to_string()).collect::<Vec<_>>())
    .bind(opt_ids(m.iter().map(|r| r.account_id)))
    .bind(opt_ids(m.iter().map(|r| r.reseller_id)))
    .bind(opt_ids(m.iter().map(|r| r.batch_id)))
    .bind(text(|r| r.destination.clone()))
    .bind(text(|r| r.country.clone()))
    .bind(text(|r| r.sender.clone()))
    .bind(text(|r| r.client_ref.clone()))
    .bind(m.iter().map(|r| r.segments.map(i32::from)).collect::<Vec<_>>())
    .bind(text(|r| r.encoding.clone()))
    .bind(text(|r| r.connector.clone()))
    .bind(int(|r| r.routed_attempt.map(i64::from)))
    .bind(text(|r| r.status().map(|s| s.as_str().to_owned())))
    .bind(text(|r| r.fold.error_code.clone()))
    .bind(int(|r| r.price))
    .bind(text(|r| r.currency.clone()))
    .bind(m.iter().map(|r| r.charged).collect::<Vec<_>>())
    .bind(m.iter().map(|r| r.refunded).collect::<Vec<_>>())
    .bind(m.iter().map(|r| r.wholesale).collect::<Vec<_>>())
    .bind(time(|r| r.accepted_at))
    .bind(time(|r| r.submitted_at))
    .bind(time(|r| r.delivered_at()))
    .bind(time(|r| r.fold.ended_at))
    .bind(time(|r| r.last_event_at))
    .bind(text(|r| r.fold.last.as_ref().map(key_to_text)))
    .bind(m.iter().map(|r| delivered_to_text(r.fold.machine.delivered())).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_inbound(tx: &mut PgConnection, changes: &Changes) -> Result<(), ReportingError> {
    let i = &changes.inbound;
    if i.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&crate::model::InboundRow) -> Option<String>| i.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO inbound_messages AS t (message_id, account_id, from_number, to_number, body, connector, \
         received_at, reply_to, opt, keyword) \
         SELECT * FROM UNNEST($1::text[]::uuid[], $2::text[]::uuid[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::timestamptz[], $8::text[]::uuid[], $9::text[], $10::text[]) \
         ON CONFLICT (message_id) DO UPDATE SET account_id = COALESCE(EXCLUDED.account_id, t.account_id), \
         from_number = COALESCE(EXCLUDED.from_number, t.from_number), \
         to_number = COALESCE(EXCLUDED.to_number, t.to_number), body = COALESCE(EXCLUDED.body, t.body), \
         connector = COALESCE(EXCLUDED.connector, t.connector), \
         received_at = COALESCE(EXCLUDED.received_at, t.received_at), \
         reply_to = COALESCE(EXCLUDED.reply_to, t.reply_to), opt = COALESCE(EXCLUDED.opt, t.opt), \
         keyword = COALESCE(EXCLUDED.keyword, t.keyword)",
    )
    .bind(opt_ids(i.iter().map(|r| r.message_id)))
    .bind(opt_ids(i.iter().map(|r| r.account_id)))
    .bind(text(|r| r.from_number.clone()))
    .bind(text(|r| r.to_number.clone()))
    .bind(text(|r| r.body.clone()))
    .bind(text(|r| r.connector.clone()))
    .bind(i.iter().map(|r| r.received_at).collect::<Vec<_>>())
    .bind(opt_ids(i.iter().map(|r| r.reply_to)))
    .bind(text(|r| r.opt.clone()))
    .bind(text(|r| r.keyword.clone()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_stats(tx: &mut PgConnection, changes: &Changes) -> Result<(), ReportingError> {
    let s = &changes.stats;
    if !s.is_empty() {
        sqlx::query(
            "INSERT INTO daily_stats AS t (day, account_id, country, connector, status, messages, segments, revenue) \
             SELECT * FROM UNNEST($1::date[], $2::text[]::uuid[], $3::text[], $4::text[], $5::text[], $6::int8[], \
             $7::int8[], $8::int8[]) \
             ON CONFLICT (account_id, day, country, connector, status) DO UPDATE SET \
             messages = t.messages + EXCLUDED.messages, segments = t.segments + EXCLUDED.segments, \
             revenue = t.revenue + EXCLUDED.revenue",
        )
        .bind(s.iter().map(|(k, _)| k.day).collect::<Vec<NaiveDate>>())
        .bind(s.iter().map(|(k, _)| k.account_id.to_string()).collect::<Vec<_>>())
        .bind(s.iter().map(|(k, _)| k.country.as_str()).collect::<Vec<_>>())
        .bind(s.iter().map(|(k, _)| k.connector.as_str()).collect::<Vec<_>>())
        .bind(s.iter().map(|(k, _)| k.status.as_str()).collect::<Vec<_>>())
        .bind(s.iter().map(|(_, c)| c.messages).collect::<Vec<_>>())
        .bind(s.iter().map(|(_, c)| c.segments).collect::<Vec<_>>())
        .bind(s.iter().map(|(_, c)| c.revenue).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    let k = &changes.shrunk;
    if !k.is_empty() {
        sqlx::query(
            "DELETE FROM daily_stats d USING UNNEST($1::date[], $2::text[]::uuid[], $3::text[], $4::text[], \
             $5::text[]) AS k(day, account_id, country, connector, status) \
             WHERE d.messages = 0 AND d.account_id = k.account_id AND d.day = k.day AND d.country = k.country \
             AND d.connector = k.connector AND d.status = k.status",
        )
        .bind(k.iter().map(|k| k.day).collect::<Vec<NaiveDate>>())
        .bind(k.iter().map(|k| k.account_id.to_string()).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.country.as_str()).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.connector.as_str()).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.status.as_str()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn write_batches(tx: &mut PgConnection, changes: &Changes) -> Result<(), ReportingError> {
    let b = &changes.batches;
    if b.is_empty() {
        return Ok(());
    }
    let column = |i: usize| b.iter().map(|d| d.by_status[i]).collect::<Vec<i64>>();
    let mut query = sqlx::query(
        "INSERT INTO batches AS t (batch_id, account_id, messages, accepted, scheduled, routed, submitted, \
         delivered, undeliverable, expired, rejected, failed, cancelled, first_accepted_at, last_accepted_at) \
         SELECT * FROM UNNEST($1::text[]::uuid[], $2::text[]::uuid[], $3::int8[], $4::int8[], $5::int8[], \
         $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], \
         $14::timestamptz[], $15::timestamptz[]) \
         ON CONFLICT (batch_id) DO UPDATE SET messages = t.messages + EXCLUDED.messages, \
         accepted = t.accepted + EXCLUDED.accepted, scheduled = t.scheduled + EXCLUDED.scheduled, \
         routed = t.routed + EXCLUDED.routed, submitted = t.submitted + EXCLUDED.submitted, \
         delivered = t.delivered + EXCLUDED.delivered, undeliverable = t.undeliverable + EXCLUDED.undeliverable, \
         expired = t.expired + EXCLUDED.expired, rejected = t.rejected + EXCLUDED.rejected, \
         failed = t.failed + EXCLUDED.failed, cancelled = t.cancelled + EXCLUDED.cancelled, \
         first_accepted_at = LEAST(t.first_accepted_at, EXCLUDED.first_accepted_at), \
         last_accepted_at = GREATEST(t.last_accepted_at, EXCLUDED.last_accepted_at)",
    )
    .bind(b.iter().map(|d| d.batch_id.to_string()).collect::<Vec<_>>())
    .bind(b.iter().map(|d| d.account_id.to_string()).collect::<Vec<_>>())
    .bind(b.iter().map(|d| d.messages).collect::<Vec<_>>());
    for i in 0..BATCH_STATUSES.len() {
        query = query.bind(column(i));
    }
    query
        .bind(b.iter().map(|d| d.first_accepted_at).collect::<Vec<_>>())
        .bind(b.iter().map(|d| d.last_accepted_at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub(super) async fn summary(
    pool: &PgPool,
    account: AccountId,
    from: NaiveDate,
    to: NaiveDate,
    group_by: GroupBy,
) -> Result<Vec<SummaryRow>, ReportingError> {
    let key = match group_by {
        GroupBy::Day => "to_char(day, 'YYYY-MM-DD')",
        other => other.column(),
    };
    let sql = format!(
        "SELECT {key} AS key, SUM(messages)::int8 AS messages, SUM(segments)::int8 AS segments, \
         SUM(revenue)::int8 AS revenue FROM daily_stats WHERE account_id = $1::uuid AND day >= $2 AND day <= $3 \
         GROUP BY 1 ORDER BY 1"
    );
    Ok(sqlx::query_as(&sql).bind(account.to_string()).bind(from).bind(to).fetch_all(pool).await?)
}
