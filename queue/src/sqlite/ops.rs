//! The write operations the group-commit writer runs, each inside the
//! writer's transaction.

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::pipeline::PipelineOp;
use super::record::RecordEvents;
use super::records::{RecordOp, insert_message_rows};
use super::smsc::SmscOp;
use crate::accounts::{Account, Begin, TopUp};
use crate::billing::{ChargeOutcome, Debit};
use crate::messages::MessageRow;
use crate::queue::new_lease_token;
use crate::{Claim, ClaimedEntry, LeaseRef, NackOutcome, NewEntry, PublishReceipt, QueueError, Result};

/// Rows per multi-row statement; keeps well under SQLite's bound-variable limit.
pub(super) const CHUNK: usize = 500;

/// A journal row, serialised by the caller so the writer only writes.
#[derive(Debug)]
pub(super) struct EventRow {
    pub event_id: String,
    pub message_id: String,
    pub json: String,
}

/// A write request; the writer answers it with an [`Outcome`].
pub(super) enum Op {
    Publish { topic: String, entries: Vec<NewEntry> },
    Claim { topic: String, max: usize, lease_ms: i64, max_attempts: u32 },
    Ack { leases: Vec<LeaseRef> },
    Nack { lease: LeaseRef, delay_ms: i64, max_attempts: u32 },
    Extend { leases: Vec<LeaseRef>, lease_ms: i64 },
    Purge { older_than_ms: i64, limit: i64 },
    Append { rows: Vec<EventRow> },
    Accept { rows: Vec<EventRow>, topic: String, entries: Vec<NewEntry>, index: Vec<MessageRow> },
    Record(RecordOp),
    RecordEvents(RecordEvents),
    Pipeline(PipelineOp),
    Smsc(SmscOp),
}

/// What a write did; each [`Op`] has one kind of outcome.
#[derive(Debug)]
pub(super) enum Outcome {
    Published(PublishReceipt),
    Claimed(Claim),
    Lost(Vec<LeaseRef>),
    Nacked(NackOutcome),
    Count(u64),
    TopUp(Option<TopUp>),
    Begin(Begin),
    Account(Option<Account>),
    Charged(Vec<ChargeOutcome>),
    Refunded(Vec<Debit>),
    Parts(Vec<crate::MoPart>),
    Done,
}

impl Op {
    pub(super) async fn execute(&self, conn: &mut SqliteConnection, now: i64) -> Result<Outcome> {
        match self {
            Self::Publish { topic, entries, .. } => publish(conn, topic, entries, now).await.map(Outcome::Published),
            Self::Claim { topic, max, lease_ms, max_attempts, .. } => {
                claim(conn, topic, *max, now, now.saturating_add(*lease_ms), *max_attempts).await.map(Outcome::Claimed)
            }
            Self::Ack { leases, .. } => settle(conn, leases, now, Settle::Ack).await.map(Outcome::Lost),
            Self::Extend { leases, lease_ms, .. } => {
                settle(conn, leases, now, Settle::Extend(now.saturating_add(*lease_ms))).await.map(Outcome::Lost)
            }
            Self::Nack { lease, delay_ms, max_attempts, .. } => {
                nack(conn, lease, now, *delay_ms, *max_attempts).await.map(Outcome::Nacked)
            }
            Self::Purge { older_than_ms, limit, .. } => {
                let done = sqlx::query(
                    "DELETE FROM queue_entries WHERE seq IN \
                     (SELECT seq FROM queue_entries WHERE state = 1 AND settled_at < ? LIMIT ?)",
                )
                .bind(now.saturating_sub(*older_than_ms))
                .bind(limit)
                .execute(&mut *conn)
                .await?;
                Ok(Outcome::Count(done.rows_affected()))
            }
            Self::Append { rows, .. } => append(conn, rows).await.map(|n| Outcome::Count(n as u64)),
            Self::Accept { .. } => accept_many(conn, &[self], now).await.map(|()| Outcome::Done),
            Self::Record(op) => op.execute(conn).await,
            Self::RecordEvents(op) => op.execute(conn).await,
            Self::Pipeline(op) => op.execute(conn, now).await,
            Self::Smsc(op) => op.execute(conn, now).await,
        }
    }

    pub(super) fn is_accept(&self) -> bool {
        matches!(self, Self::Accept { .. })
    }

    /// Whether the caller may be answered only once the write is on disk. A
    /// lost claim, lease extension or nack only means a lease runs out and an
    /// entry is delivered again, which the contract allows anyway, so they
    /// are answered at commit, without waiting for the flush.
    pub(super) fn needs_fsync(&self) -> bool {
        !matches!(self, Self::Claim { .. } | Self::Extend { .. } | Self::Nack { .. })
    }

    /// Whether the operation may issue several writes that must stand or
    /// fall together. Any single SQLite statement is atomic on its own, so
    /// the others skip the savepoint (two statements per operation saved).
    pub(super) fn needs_savepoint(&self) -> bool {
        match self {
            Self::Accept { .. } | Self::RecordEvents(_) => true,
            Self::Record(op) => op.needs_savepoint(),
            Self::Pipeline(op) => op.needs_savepoint(),
            Self::Smsc(op) => op.needs_savepoint(),
            Self::Publish { entries, .. } => entries.len() > CHUNK,
            Self::Append { rows, .. } => rows.len() > CHUNK,
            Self::Ack { leases, .. } | Self::Extend { leases, .. } => {
                leases.len() > CHUNK || leases.iter().any(|l| l.token != leases[0].token || l.topic != leases[0].topic)
            }
            // A claim's second write only dead-letters what its first leased;
            // if it failed, the leases would simply expire.
            Self::Claim { .. } | Self::Nack { .. } | Self::Purge { .. } => false,
        }
    }
}

/// Executes several accepts with one statement per table (and topic).
pub(super) async fn accept_many(conn: &mut SqliteConnection, ops: &[&Op], now: i64) -> Result<()> {
    let mut rows: Vec<&EventRow> = Vec::new();
    let mut index: Vec<&MessageRow> = Vec::new();
    let mut by_topic: HashMap<&str, Vec<&NewEntry>> = HashMap::new();
    for op in ops {
        if let Op::Accept { rows: r, topic, entries, index: i } = op {
            rows.extend(r);
            index.extend(i);
            by_topic.entry(topic).or_default().extend(entries);
        }
    }
    append(conn, &rows).await?;
    for (topic, entries) in by_topic {
        publish(conn, topic, &entries, now).await?;
    }
    insert_message_rows(conn, &index).await
}

async fn publish<E: std::borrow::Borrow<NewEntry>>(
    conn: &mut SqliteConnection,
    topic: &str,
    entries: &[E],
    now: i64,
) -> Result<PublishReceipt> {
    let mut inserted = 0;
    for chunk in entries.chunks(CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO queue_entries (topic, id, payload, visible_at) ");
        insert.push_values(chunk, |mut row, entry| {
            let entry = entry.borrow();
            let visible_at = entry.not_before.map_or(now, |t| t.timestamp_millis());
            row.push_bind(topic).push_bind(&entry.id).push_bind(&entry.payload).push_bind(visible_at);
        });
        insert.push(" ON CONFLICT (topic, id) DO NOTHING");
        inserted += insert.build().execute(&mut *conn).await?.rows_affected() as usize;
    }
    Ok(PublishReceipt { inserted, duplicates: entries.len() - inserted })
}

async fn claim(
    conn: &mut SqliteConnection,
    topic: &str,
    max: usize,
    now: i64,
    lease_until: i64,
    max_attempts: u32,
) -> Result<Claim> {
    let token = new_lease_token();
    let rows = sqlx::query(
        "UPDATE queue_entries SET lease_token = ?1, visible_at = ?2, attempts = attempts + 1 \
         WHERE seq IN (SELECT seq FROM queue_entries \
                       WHERE topic = ?3 AND state = 0 AND visible_at <= ?4 \
                       ORDER BY visible_at, seq LIMIT ?5) \
         RETURNING seq, id, payload, attempts",
    )
    .bind(&token)
    .bind(lease_until)
    .bind(topic)
    .bind(now)
    .bind(i64::try_from(max).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        let attempts: i64 = row.try_get("attempts")?;
        let entry = ClaimedEntry {
            lease: LeaseRef { topic: topic.to_owned(), id: row.try_get("id")?, token: token.clone(), shard: 0 },
            payload: row.try_get("payload")?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        };
        claimed.push((seq, entry));
    }
    claimed.sort_by_key(|(seq, _)| *seq);
    let (mut exhausted, live): (Vec<_>, Vec<_>) = claimed.into_iter().partition(|(_, e)| e.attempts > max_attempts);
    if !exhausted.is_empty() {
        // This claim does not deliver them: report (and keep) the deliveries made.
        for (_, entry) in &mut exhausted {
            entry.attempts -= 1;
        }
        let mut dead = QueryBuilder::<Sqlite>::new(
            "UPDATE queue_entries SET state = 2, attempts = attempts - 1, lease_token = NULL, settled_at = ",
        );
        dead.push_bind(now).push(" WHERE seq IN (");
        let mut seqs = dead.separated(", ");
        for (seq, _) in &exhausted {
            seqs.push_bind(*seq);
        }
        dead.push(")");
        dead.build().execute(&mut *conn).await?;
    }
    Ok(Claim {
        entries: live.into_iter().map(|(_, e)| e).collect(),
        dead_lettered: exhausted.into_iter().map(|(_, e)| e).collect(),
    })
}

enum Settle {
    Ack,
    Extend(i64),
}

/// Acks or extends leases; returns the leases no longer held. Leases of one
/// claim share a token, so each (topic, token) group is one statement. An
/// acked entry keeps its token, so when fewer rows changed than expected the
/// lost leases are exactly those not carrying it.
async fn settle(conn: &mut SqliteConnection, leases: &[LeaseRef], now: i64, how: Settle) -> Result<Vec<LeaseRef>> {
    let mut groups: HashMap<(&str, &str), Vec<&LeaseRef>> = HashMap::new();
    for lease in leases {
        groups.entry((&lease.topic, &lease.token)).or_default().push(lease);
    }
    let mut lost = Vec::new();
    for ((topic, token), group) in groups {
        for chunk in group.chunks(CHUNK) {
            let mut update = QueryBuilder::<Sqlite>::new("UPDATE queue_entries SET ");
            match how {
                Settle::Ack => update.push("state = 1, settled_at = ").push_bind(now),
                Settle::Extend(until) => update.push("visible_at = ").push_bind(until),
            };
            update.push(" WHERE state = 0 AND topic = ").push_bind(topic);
            update.push(" AND lease_token = ").push_bind(token).push(" AND id IN (");
            let mut ids = update.separated(", ");
            for lease in chunk {
                ids.push_bind(&lease.id);
            }
            update.push(")");
            if update.build().execute(&mut *conn).await?.rows_affected() as usize == chunk.len() {
                continue;
            }
            let mut held = QueryBuilder::<Sqlite>::new("SELECT id FROM queue_entries WHERE topic = ");
            held.push_bind(topic).push(" AND lease_token = ").push_bind(token);
            if matches!(how, Settle::Extend(_)) {
                held.push(" AND state = 0");
            }
            held.push(" AND id IN (");
            let mut ids = held.separated(", ");
            for lease in chunk {
                ids.push_bind(&lease.id);
            }
            held.push(")");
            let held: HashSet<String> = held
                .build()
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>("id"))
                .collect::<Result<_, _>>()?;
            lost.extend(chunk.iter().filter(|l| !held.contains(&l.id)).map(|l| (*l).clone()));
        }
    }
    Ok(lost)
}

async fn nack(
    conn: &mut SqliteConnection,
    lease: &LeaseRef,
    now: i64,
    delay_ms: i64,
    max_attempts: u32,
) -> Result<NackOutcome> {
    let attempts: Option<i64> = sqlx::query_scalar(
        "SELECT attempts FROM queue_entries WHERE topic = ? AND id = ? AND lease_token = ? AND state = 0",
    )
    .bind(&lease.topic)
    .bind(&lease.id)
    .bind(&lease.token)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(attempts) = attempts else {
        return Err(QueueError::LeaseLost { topic: lease.topic.clone(), id: lease.id.clone() });
    };
    if attempts >= i64::from(max_attempts) {
        sqlx::query(
            "UPDATE queue_entries SET state = 2, lease_token = NULL, settled_at = ? WHERE topic = ? AND id = ?",
        )
        .bind(now)
        .bind(&lease.topic)
        .bind(&lease.id)
        .execute(&mut *conn)
        .await?;
        return Ok(NackOutcome::DeadLettered);
    }
    let at = now.saturating_add(delay_ms);
    sqlx::query("UPDATE queue_entries SET visible_at = ?, lease_token = NULL WHERE topic = ? AND id = ?")
        .bind(at)
        .bind(&lease.topic)
        .bind(&lease.id)
        .execute(&mut *conn)
        .await?;
    let at = chrono::DateTime::from_timestamp_millis(at).unwrap_or_default();
    Ok(NackOutcome::Retrying { at })
}

pub(super) async fn append<R: std::borrow::Borrow<EventRow>>(conn: &mut SqliteConnection, rows: &[R]) -> Result<usize> {
    let mut appended = 0;
    for chunk in rows.chunks(CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO journal (event_id, message_id, event) ");
        insert.push_values(chunk, |mut row, e| {
            let e = e.borrow();
            row.push_bind(&e.event_id).push_bind(&e.message_id).push_bind(&e.json);
        });
        insert.push(" ON CONFLICT (event_id) DO NOTHING");
        appended += insert.build().execute(&mut *conn).await?.rows_affected() as usize;
    }
    Ok(appended)
}
