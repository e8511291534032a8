//! Fresh databases for tests, the journal filler, and store snapshots.

use std::collections::BTreeMap;

use sqlx::Row;
use tern_core::Event;
use tern_queue::{Journal, MongoConfig, SqliteConfig, Store, StoreConfig};

use crate::ReportStore;

/// Keeps a test database alive; dropping it removes the database.
pub type Guard = Box<dyn std::any::Any + Send + Sync>;

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!("{name} is not set: run the tests through scripts/test.sh, which starts the servers"),
    }
}

/// Drops a PostgreSQL test database when dropped.
#[derive(Debug)]
pub struct PostgresDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside any runtime we could block; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// A URL to a new, empty PostgreSQL database on the server of
/// `TERN_TEST_POSTGRES_URL`, and the guard that drops it.
pub async fn fresh_postgres_url() -> (String, Guard) {
    let admin_url = env("TERN_TEST_POSTGRES_URL");
    let name = format!("tern_test_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin_url).await.expect("connect to TERN_TEST_POSTGRES_URL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.expect("create a test database");
    pool.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("TERN_TEST_POSTGRES_URL ends with /<database>");
    let url = format!("{base}/{name}");
    (url, Box::new(PostgresDatabase { admin_url, name }))
}

/// A new PostgreSQL reporting store.
pub async fn postgres_reports() -> (ReportStore, Guard) {
    let (url, guard) = fresh_postgres_url().await;
    (ReportStore::connect(&url).await.expect("open the PostgreSQL reporting store"), guard)
}

/// A URL to a SQLite file in a new temporary directory, and the guard that removes it.
pub fn fresh_sqlite_url() -> (String, Guard) {
    let dir = tempfile::Builder::new().prefix("tern-reports-").tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("reports.db").display());
    (url, Box::new(dir))
}

/// A new SQLite reporting store.
pub async fn sqlite_reports() -> (ReportStore, Guard) {
    let (url, guard) = fresh_sqlite_url();
    (ReportStore::connect(&url).await.expect("open the SQLite reporting store"), guard)
}

/// A new SQLite journal (a whole Tern store in a temporary directory).
pub async fn sqlite_journal() -> (Store, Guard) {
    let dir = tempfile::Builder::new().prefix("tern-journal-").tempdir().expect("temp dir");
    let config = StoreConfig::Sqlite(SqliteConfig { path: dir.path().join("tern.db") });
    (config.connect().await.expect("open the SQLite store"), Box::new(dir))
}

/// A new database on the MongoDB stand-in of `TERN_TEST_MONGODB_URI`.
pub async fn mongo_journal() -> (Store, Guard) {
    let uri = env("TERN_TEST_MONGODB_URI");
    let database = format!("reports_{}", uuid::Uuid::new_v4().simple());
    let config =
        MongoConfig { journal_settle_ms: 300, server_selection_timeout_ms: 5_000, ..MongoConfig::new(uri, database) };
    (StoreConfig::Mongodb(config).connect().await.expect("connect to the MongoDB stand-in"), Box::new(()))
}

/// Appends `events` in order, a thousand at a time.
pub async fn append(journal: &Journal, events: &[Event]) {
    for chunk in events.chunks(1_000) {
        journal.append(chunk).await.expect("append to the journal");
    }
}

/// Every table's rows as text, sorted, for comparing two stores of one
/// dialect (the checkpoint's `updated_at` left out).
pub type Snapshot = BTreeMap<String, Vec<String>>;

const TABLES: [&str; 5] = ["messages", "message_events", "daily_stats", "inbound_messages", "batches"];

/// Reads the whole store.
pub async fn snapshot(store: &ReportStore) -> Snapshot {
    let mut tables = Snapshot::new();
    for table in TABLES {
        let mut rows: Vec<String> = match store {
            ReportStore::Sqlite(pool) => {
                let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                    .bind(table)
                    .fetch_all(pool)
                    .await
                    .unwrap();
                let sql = format!("SELECT json_array({}) FROM {table}", columns.join(", "));
                sqlx::query_scalar(&sql).fetch_all(pool).await.unwrap()
            }
            ReportStore::Postgres(pool) => {
                let sql = format!("SELECT row_to_json(t)::text FROM {table} t");
                sqlx::query_scalar(&sql).fetch_all(pool).await.unwrap()
            }
        };
        rows.sort();
        tables.insert(table.to_owned(), rows);
    }
    let checkpoint = store.checkpoint().await.unwrap();
    tables.insert("projector_checkpoint".into(), vec![checkpoint.to_string()]);
    tables
}

/// Asserts two snapshots are equal, naming the first difference.
pub fn assert_same(left: &Snapshot, right: &Snapshot, what: &str) {
    for (table, rows) in left {
        let other = right.get(table).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(rows.len(), other.len(), "{what}: {table} has {} rows against {}", rows.len(), other.len());
        if let Some((a, b)) = rows.iter().zip(other).find(|(a, b)| a != b) {
            panic!("{what}: {table} differs:\n  {a}\n  {b}");
        }
    }
}

/// Runs a query whose columns are all text (or NULL) and returns its rows.
pub async fn text_rows(store: &ReportStore, sql: &str) -> Vec<Vec<Option<String>>> {
    fn read<R: Row>(row: &R) -> Vec<Option<String>>
    where
        for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        usize: sqlx::ColumnIndex<R>,
    {
        (0..row.len()).map(|i| row.try_get::<Option<String>, _>(i).unwrap()).collect()
    }
    let mut rows: Vec<Vec<Option<String>>> = match store {
        ReportStore::Sqlite(pool) => sqlx::query(sql).fetch_all(pool).await.unwrap().iter().map(read).collect(),
        ReportStore::Postgres(pool) => sqlx::query(sql).fetch_all(pool).await.unwrap().iter().map(read).collect(),
    };
    rows.sort();
    rows
}
