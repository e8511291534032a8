//! The reporting store: PostgreSQL or SQLite behind one handle, its schema
//! (sqlx migrations, one folder per dialect), the transaction that applies
//! a batch of the journal with its checkpoint, and the account summary.

mod postgres;
mod rows;
mod sqlite;

use std::str::FromStr;
use std::time::Duration;

use chrono::NaiveDate;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tern_core::{AccountId, Event, MessageId};
use tern_queue::{JournalRecord, Position};

use crate::ReportingError;
use crate::model::{EventRow, MessageRow};
use crate::plan::{Changes, Plan, outbound_ids};
use crate::summary::{GroupBy, SummaryRow};

/// Every table of the store, dropped by a rebuild.
const TABLES: [&str; 7] = [
    "messages",
    "message_events",
    "daily_stats",
    "inbound_messages",
    "batches",
    "projector_checkpoint",
    "_sqlx_migrations",
];

/// A connection pool to the reporting database.
#[derive(Debug, Clone)]
pub enum ReportStore {
    /// The embedded default: one SQLite file.
    Sqlite(SqlitePool),
    /// PostgreSQL, for production.
    Postgres(PgPool),
}

/// What one applied batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Records newly applied (records at or before the stored checkpoint are skipped).
    pub applied: usize,
    /// The checkpoint stored with them.
    pub checkpoint: Position,
}

impl ReportStore {
    /// Connects to `url` (`sqlite://path` or `postgres://...`) and brings
    /// the schema up to date. A SQLite file and its directory are created.
    #[tracing::instrument(skip_all, fields(dialect))]
    pub async fn connect(url: &str) -> Result<Self, ReportingError> {
        let store = Self::open(url).await?;
        tracing::Span::current().record("dialect", store.dialect());
        store.migrate().await?;
        Ok(store)
    }

    async fn open(url: &str) -> Result<Self, ReportingError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(|e| ReportingError::Config(format!("cannot connect to the reporting database: {e}")))?;
            return Ok(Self::Postgres(pool));
        }
        if !url.starts_with("sqlite:") {
            return Err(ReportingError::Config(format!(
                "reporting database_url must start with sqlite:// or postgres://, not {:?}",
                url.split(':').next().unwrap_or_default()
            )));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| ReportingError::Config(format!("bad SQLite URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // The checkpoint commits with the rows, so a power cut can only
            // take back whole batches, which are then projected again.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .pragma("cache_size", "-65536")
            // Checkpoint every ~64 MB of WAL instead of 4 MB: the rows a batch
            // rewrites (messages, stats) are copied to the database file once
            // per checkpoint rather than once per few batches.
            .pragma("wal_autocheckpoint", "16384")
            .pragma("temp_store", "memory");
        if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ReportingError::Config(format!("cannot create {}: {e}", dir.display())))?;
        }
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        Ok(Self::Sqlite(pool))
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn dialect(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    async fn migrate(&self) -> Result<(), ReportingError> {
        // Two processes starting together (projector and submission) may
        // both find a migration missing; on SQLite, which has no migration
        // lock, the loser fails on the winner's tables. Each migration
        // commits with its bookkeeping row, so a second look sees it done.
        let mut attempt = 0;
        loop {
            let outcome = match self {
                Self::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
                Self::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= 5 => {
                    return Err(ReportingError::Unexpected(anyhow::anyhow!("cannot migrate the reporting store: {e}")));
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "migrating the reporting store failed; looking again");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
    }

    /// Drops every table and creates the schema again, empty, checkpoint at
    /// the journal's start.
    #[tracing::instrument(skip_all, fields(dialect = self.dialect()))]
    pub async fn reset(&self) -> Result<(), ReportingError> {
        for table in TABLES {
            let sql = format!("DROP TABLE IF EXISTS {table}");
            match self {
                Self::Sqlite(pool) => sqlx::query(&sql).execute(pool).await.map(|_| ())?,
                Self::Postgres(pool) => sqlx::query(&sql).execute(pool).await.map(|_| ())?,
            }
        }
        self.migrate().await
    }

    /// The position of the last journal record projected.
    pub async fn checkpoint(&self) -> Result<Position, ReportingError> {
        let position: i64 = match self {
            Self::Sqlite(pool) => {
                sqlx::query_scalar("SELECT position FROM projector_checkpoint WHERE id = 1").fetch_one(pool).await?
            }
            Self::Postgres(pool) => {
                sqlx::query_scalar("SELECT position FROM projector_checkpoint WHERE id = 1").fetch_one(pool).await?
            }
        };
        Ok(Position(u64::try_from(position).unwrap_or(0)))
    }

    /// Applies journal records (in position order, gap-free from the
    /// reader) in one transaction that also moves the checkpoint to the last
    /// of them. Records at or before the stored checkpoint are skipped, so
    /// applying a batch twice changes nothing.
    pub async fn apply(&self, records: &[JournalRecord]) -> Result<BatchOutcome, ReportingError> {
        let rows = records.iter().cloned().map(EventRow::new).collect::<Result<Vec<_>, _>>()?;
        self.apply_rows(rows).await
    }

    /// [`ReportStore::apply`] for records already made into rows.
    #[tracing::instrument(skip_all, fields(records = rows.len(), dialect = self.dialect()))]
    pub async fn apply_rows(&self, mut rows: Vec<EventRow>) -> Result<BatchOutcome, ReportingError> {
        let mut tx = match self {
            Self::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        };
        let stored = tx.checkpoint().await?;
        rows.retain(|r| r.position() > stored);
        let Some(last) = rows.last().map(EventRow::position) else {
            return Ok(BatchOutcome { applied: 0, checkpoint: stored });
        };
        let applied = rows.len();
        let existing = tx.load_messages(&outbound_ids(&rows)).await?;
        let mut plan = Plan::new(rows, existing);
        let refold = plan.needs_refold();
        if !refold.is_empty() {
            plan.refold(tx.load_events(&refold).await?);
        }
        let changes = plan.finish();
        tx.write(&changes).await?;
        tx.commit().await?;
        Ok(BatchOutcome { applied, checkpoint: last })
    }

    /// An account's totals between two days (inclusive), grouped.
    #[tracing::instrument(skip_all, fields(account_id = %account, ?group_by))]
    pub async fn summary(
        &self,
        account: AccountId,
        from: NaiveDate,
        to: NaiveDate,
        group_by: GroupBy,
    ) -> Result<Vec<SummaryRow>, ReportingError> {
        match self {
            Self::Sqlite(pool) => sqlite::summary(pool, account, from, to, group_by).await,
            Self::Postgres(pool) => postgres::summary(pool, account, from, to, group_by).await,
        }
    }

    /// The store answers.
    pub async fn ping(&self) -> Result<(), ReportingError> {
        self.checkpoint().await.map(|_| ())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// One apply transaction, in either dialect.
enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    /// The stored checkpoint; on PostgreSQL the row stays locked until
    /// commit, so two projectors on one store take turns (SQLite's
    /// `BEGIN IMMEDIATE` already did that).
    async fn checkpoint(&mut self) -> Result<Position, ReportingError> {
        let position: i64 = match self {
            Self::Sqlite(tx) => {
                sqlx::query_scalar("SELECT position FROM projector_checkpoint WHERE id = 1")
                    .fetch_one(&mut **tx)
                    .await?
            }
            Self::Postgres(tx) => {
                sqlx::query_scalar("SELECT position FROM projector_checkpoint WHERE id = 1 FOR UPDATE")
                    .fetch_one(&mut **tx)
                    .await?
            }
        };
        Ok(Position(u64::try_from(position).unwrap_or(0)))
    }

    async fn load_messages(&mut self, ids: &[MessageId]) -> Result<Vec<MessageRow>, ReportingError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw = match self {
            Self::Sqlite(tx) => sqlite::load_messages(tx, ids).await?,
            Self::Postgres(tx) => postgres::load_messages(tx, ids).await?,
        };
        raw.into_iter().map(rows::RawMessage::into_row).collect()
    }

    async fn load_events(&mut self, ids: &[MessageId]) -> Result<Vec<Event>, ReportingError> {
        let json = match self {
            Self::Sqlite(tx) => sqlite::load_events(tx, ids).await?,
            Self::Postgres(tx) => postgres::load_events(tx, ids).await?,
        };
        json.iter().map(|j| serde_json::from_str(j).map_err(|e| ReportingError::Corrupt(e.to_string()))).collect()
    }

    async fn write(&mut self, changes: &Changes) -> Result<(), ReportingError> {
        match self {
            Self::Sqlite(tx) => sqlite::write(tx, changes).await,
            Self::Postgres(tx) => postgres::write(tx, changes).await,
        }
    }

    async fn commit(self) -> Result<(), ReportingError> {
        match self {
            Self::Sqlite(tx) => tx.commit().await?,
            Self::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}
