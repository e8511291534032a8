//! The embedded backend: queue and journal in one SQLite file.
//!
//! WAL mode. All writes go through the group-commit [`writer`]: one
//! connection, one transaction per group, and a caller is answered only
//! once the WAL holding its writes is fsynced. Reads use a small pool of WAL
//! readers that never block the writer. Because there is exactly one write
//! transaction at a time and journal positions are assigned inside it,
//! positions become visible in order: the stream is gap-free by construction.

mod ops;
mod pipeline;
mod record;
mod records;
mod smsc;
mod writer;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row};
use tern_core::{Event, MessageId};
use tokio::sync::{mpsc, oneshot};

use self::ops::{EventRow, Op, Outcome};
use self::writer::{Job, Writer};
use crate::accounts::Accounts;
use crate::messages::{MessageRow, Messages};
use crate::queue::millis;
use crate::{
    AcceptBackend, Claim, ClaimedEntry, Contacts, Coordination, Depth, Journal, JournalBackend, JournalRecord,
    LeaseRef, NackOutcome, NewEntry, Position, PublishReceipt, Queue, QueueBackend, QueueError, Result, Smsc,
    SqliteConfig, Store, StoreParts,
};

/// Rows deleted per purge transaction, so a big purge never stalls other writers.
const PURGE_STEP: i64 = 5_000;

/// Queue, journal and accept on one SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<Job>,
    readers: SqlitePool,
    wal: PathBuf,
    /// Journal positions known to be on disk. A reader may see a commit
    /// before its flush; it flushes before handing out anything past this, so
    /// no checkpoint is ever stored past an event a power cut could take back
    /// (its position would be reused, and the reader would skip the new event).
    durable_through: Arc<AtomicU64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `config.path`, applies
    /// migrations, and starts the writer.
    pub async fn open(config: &SqliteConfig) -> Result<Self> {
        if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                QueueError::Config(format!("cannot create directory {} for the SQLite store: {e}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| QueueError::Config(e.to_string()))?
            .filename(&config.path)
            .create_if_missing(true)
            .page_size(8192)
            .journal_mode(SqliteJournalMode::Wal)
            // The writer commits without fsync; its syncer flushes the WAL
            // before any caller is answered (see `writer`).
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            // Checkpoint every ~40 MB of WAL rather than every 4 MB: the tail
            // pages that many small commits rewrite reach the database once.
            .pragma("wal_autocheckpoint", "10000")
            // Read through a map: fewer system calls on every statement.
            .pragma("mmap_size", "268435456")
            // The savepoint of each grouped operation journals the pages it
            // touches; in memory, not in a temporary file written page by page.
            .pragma("temp_store", "memory")
            // 64 MiB of page cache: the indexes' hot pages stay in memory
            // instead of being read back from the WAL on every insert.
            .pragma("cache_size", "-65536")
            .foreign_keys(false)
            // A claim or a history read returns hundreds of rows; hand them
            // over in larger runs so the connection's thread stalls less often.
            .row_buffer_size(1024)
            .disable_statement_logging();
        let mut conn = options
            .connect()
            .await
            .map_err(|e| QueueError::Config(format!("cannot open SQLite store at {}: {e}", config.path.display())))?;
        migrate(&mut conn, &config.path).await?;
        let checkpointer = options.clone().connect().await?;
        let readers = SqlitePoolOptions::new().max_connections(4).connect_with(options.read_only(true)).await?;
        let mut wal = config.path.clone().into_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let writer = Writer::spawn(conn, wal.clone());
        tokio::spawn(checkpoints(checkpointer, wal.clone(), writer.downgrade()));
        Ok(Self { writer, readers, wal, durable_through: Arc::new(AtomicU64::new(0)) })
    }

    /// The store as the rest of Tern sees it.
    pub fn into_store(self) -> Store {
        let this = Arc::new(self);
        let parts = StoreParts {
            queue: Queue::new(this.clone()),
            journal: Journal::new(this.clone()),
            accept: this.clone(),
            accounts: Accounts::new(this.clone()),
            messages: Messages::new(this.clone()),
            contacts: Contacts::new(this.clone()),
            coordination: Coordination::new(this.clone()),
            smsc: Smsc::new(this.clone()),
            recorder: this,
        };
        Store::new(parts, "sqlite")
    }

    /// Makes sure journal positions up to `position` are on disk.
    async fn ensure_durable(&self, position: u64) -> Result<()> {
        if position > self.durable_through.load(Ordering::Acquire) {
            writer::flush_wal(self.wal.clone())
                .await
                .map_err(|e| QueueError::Unavailable(format!("cannot flush the SQLite WAL: {e}")))?;
            self.durable_through.fetch_max(position, Ordering::AcqRel);
        }
        Ok(())
    }

    async fn record_op(&self, op: records::RecordOp) -> Result<Outcome> {
        self.call(Op::Record(op)).await
    }

    async fn call(&self, op: Op) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        let stopped = || QueueError::Unavailable("the SQLite writer has stopped".into());
        self.writer.send((op, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// WAL size above which the background checkpointer copies frames back.
const CHECKPOINT_AT_BYTES: u64 = 8 * 1024 * 1024;

/// Copies WAL frames into the database file from its own connection (its
/// own thread), so the writer's automatic checkpoint finds nearly all of
/// them done: at bulk rates a checkpoint copying 40 MB in the writer stalled
/// every caller for half a second. PASSIVE never blocks the writer or readers.
async fn checkpoints(mut conn: sqlx::SqliteConnection, wal: PathBuf, store: mpsc::WeakSender<Job>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if store.upgrade().is_none() {
            // The store is gone; closing the connection lets the writer's close checkpoint.
            let _ = conn.close().await;
            return;
        }
        let size = match tokio::fs::metadata(&wal).await {
            Ok(meta) => meta.len(),
            Err(_) => continue,
        };
        if size < CHECKPOINT_AT_BYTES {
            continue;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut conn).await {
            // Busy with another checkpoint: the next tick tries again.
            tracing::debug!(error = %e, "background checkpoint failed");
        }
    }
}

fn unexpected(outcome: Outcome) -> QueueError {
    QueueError::Unexpected(anyhow::anyhow!("the SQLite writer answered with the wrong outcome: {outcome:?}"))
}

fn lost_leases(outcome: Outcome) -> Result<Vec<LeaseRef>> {
    match outcome {
        Outcome::Lost(lost) => Ok(lost),
        other => Err(unexpected(other)),
    }
}

fn count(outcome: Outcome) -> Result<u64> {
    match outcome {
        Outcome::Count(n) => Ok(n),
        other => Err(unexpected(other)),
    }
}

fn event_rows(events: &[Event]) -> Result<Vec<EventRow>> {
    events
        .iter()
        .map(|e| {
            Ok(EventRow {
                event_id: e.id.to_string(),
                message_id: e.message_id.to_string(),
                json: serde_json::to_string(e)?,
            })
        })
        .collect()
}

#[async_trait]
impl QueueBackend for SqliteStore {
    async fn publish(&self, topic: &str, entries: Vec<NewEntry>) -> Result<PublishReceipt> {
        let topic = topic.to_owned();
        match self.call(Op::Publish { topic, entries }).await? {
            Outcome::Published(receipt) => Ok(receipt),
            other => Err(unexpected(other)),
        }
    }

    async fn claim(&self, topic: &str, max: usize, lease: Duration, max_attempts: u32) -> Result<Claim> {
        let topic = topic.to_owned();
        match self.call(Op::Claim { topic, max, lease_ms: millis(lease), max_attempts }).await? {
            Outcome::Claimed(claim) => Ok(claim),
            other => Err(unexpected(other)),
        }
    }

    async fn ack(&self, leases: &[LeaseRef]) -> Result<Vec<LeaseRef>> {
        let leases = leases.to_vec();
        lost_leases(self.call(Op::Ack { leases }).await?)
    }

    async fn nack(&self, lease: &LeaseRef, delay: Duration, max_attempts: u32) -> Result<NackOutcome> {
        let lease = lease.clone();
        match self.call(Op::Nack { lease, delay_ms: millis(delay), max_attempts }).await? {
            Outcome::Nacked(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn extend(&self, leases: &[LeaseRef], lease: Duration) -> Result<Vec<LeaseRef>> {
        let leases = leases.to_vec();
        lost_leases(self.call(Op::Extend { leases, lease_ms: millis(lease) }).await?)
    }

    async fn depth(&self, topic: &str) -> Result<Depth> {
        let now = chrono::Utc::now().timestamp_millis();
        let count =
            |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).bind(topic).bind(now).fetch_one(&self.readers);
        let ready = count("SELECT COUNT(*) FROM queue_entries WHERE topic = ? AND state = 0 AND visible_at <= ?");
        let leased = count(
            "SELECT COUNT(*) FROM queue_entries WHERE topic = ? AND state = 0 AND visible_at > ? \
             AND lease_token IS NOT NULL",
        );
        let delayed = count(
            "SELECT COUNT(*) FROM queue_entries WHERE topic = ? AND state = 0 AND visible_at > ? \
             AND lease_token IS NULL",
        );
        let dead = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM queue_entries WHERE topic = ? AND state = 2")
            .bind(topic)
            .fetch_one(&self.readers);
        let as_u64 = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Depth {
            ready: as_u64(ready.await?),
            leased: as_u64(leased.await?),
            delayed: as_u64(delayed.await?),
            dead: as_u64(dead.await?),
        })
    }

    async fn dead_letters(&self, topic: &str, limit: usize) -> Result<Vec<ClaimedEntry>> {
        let rows = sqlx::query(
            "SELECT id, payload, attempts FROM queue_entries WHERE topic = ? AND state = 2 ORDER BY seq LIMIT ?",
        )
        .bind(topic)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(ClaimedEntry {
                    lease: LeaseRef { topic: topic.to_owned(), id: row.try_get("id")?, token: String::new(), shard: 0 },
                    payload: row.try_get("payload")?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn purge_acked(&self, older_than: Duration) -> Result<u64> {
        let mut purged = 0;
        loop {
            let step = count(self.call(Op::Purge { older_than_ms: millis(older_than), limit: PURGE_STEP }).await?)?;
            purged += step;
            if step < PURGE_STEP as u64 {
                return Ok(purged);
            }
        }
    }
}

#[async_trait]
impl JournalBackend for SqliteStore {
    async fn append(&self, events: &[Event]) -> Result<usize> {
        let rows = event_rows(events)?;
        Ok(usize::try_from(count(self.call(Op::Append { rows }).await?)?).unwrap_or(usize::MAX))
    }

    async fn message_events(&self, message_id: MessageId) -> Result<Vec<Event>> {
        let rows = sqlx::query("SELECT event FROM journal WHERE message_id = ? ORDER BY position")
            .bind(message_id.to_string())
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(|row| Ok(serde_json::from_str(row.try_get("event")?)?)).collect()
    }

    async fn messages_events(&self, message_ids: &[MessageId]) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        for chunk in message_ids.chunks(ops::CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT event FROM journal WHERE message_id IN (");
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(id.to_string());
            }
            query.push(") ORDER BY position");
            for row in query.build().fetch_all(&self.readers).await? {
                events.push(serde_json::from_str(row.try_get("event")?)?);
            }
        }
        Ok(events)
    }

    async fn read_from(&self, after: Position, limit: usize) -> Result<Vec<JournalRecord>> {
        let rows = sqlx::query("SELECT position, event FROM journal WHERE position > ? ORDER BY position LIMIT ?")
            .bind(i64::try_from(after.0).unwrap_or(i64::MAX))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.readers)
            .await?;
        let records = rows
            .iter()
            .map(|row| {
                let position: i64 = row.try_get("position")?;
                Ok(JournalRecord {
                    position: Position(u64::try_from(position).unwrap_or(0)),
                    event: serde_json::from_str(row.try_get("event")?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(last) = records.last() {
            self.ensure_durable(last.position.0).await?;
        }
        Ok(records)
    }

    async fn head(&self) -> Result<Position> {
        let head: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM journal").fetch_one(&self.readers).await?;
        let head = u64::try_from(head).unwrap_or(0);
        self.ensure_durable(head).await?;
        Ok(Position(head))
    }
}

#[async_trait]
impl AcceptBackend for SqliteStore {
    async fn accept(&self, events: &[Event], topic: &str, entries: Vec<NewEntry>) -> Result<()> {
        let rows = event_rows(events)?;
        let topic = topic.to_owned();
        let index = MessageRow::from_accept(events);
        match self.call(Op::Accept { rows, topic, entries, index }).await? {
            Outcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Nothing to repair: the journal rows and queue entries of an accept
    /// commit in one transaction.
    async fn repair(&self) -> Result<usize> {
        Ok(0)
    }
}

/// Runs the migrations. Roles started together on one file (`tern
/// submission & tern worker & ...`) may each find a migration missing; SQLite
/// has no migration lock, so the losers fail on the winner's tables or
/// bookkeeping row. Each migration commits with that row, so a second look
/// finds it done: retry, a little later each time.
async fn migrate(conn: &mut sqlx::SqliteConnection, path: &std::path::Path) -> Result<()> {
    const ATTEMPTS: u64 = 8;
    let mut attempt = 0;
    loop {
        match sqlx::migrate!("./migrations/sqlite").run(&mut *conn).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt + 1 >= ATTEMPTS => {
                return Err(QueueError::Config(format!("cannot migrate SQLite store at {}: {e}", path.display())));
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "migrating the SQLite store failed; looking again");
                tokio::time::sleep(Duration::from_millis(100 * attempt + rand::random_range(0..100))).await;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteConfig { path: dir.path().join("t.db") }).await.unwrap();
        let row = sqlx::query("PRAGMA journal_mode").fetch_one(&store.readers).await.unwrap();
        assert_eq!(row.get::<String, _>(0), "wal");
    }

    #[tokio::test]
    async fn a_store_in_a_missing_directory_is_created_and_a_bad_path_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        SqliteStore::open(&SqliteConfig { path: dir.path().join("a/b/t.db") }).await.unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = SqliteStore::open(&SqliteConfig { path: file.join("t.db") }).await.unwrap_err();
        assert!(matches!(err, QueueError::Config(_)), "{err}");
    }
}
