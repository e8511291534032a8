//! The backend conformance suite (`tern_queue::test_suite`) on SQLite.

use tern_queue::{SqliteConfig, Store, StoreConfig};

/// A store in a fresh temporary directory, kept for the rest of the test
/// process (nextest runs each test in its own process; the OS temp dir is
/// cleaned up by the machine).
#[allow(clippy::expect_used)]
async fn sqlite_store() -> Store {
    let dir = tempfile::Builder::new().prefix("tern-queue-suite-").tempdir().expect("create a temp dir").keep();
    let config = StoreConfig::Sqlite(SqliteConfig { path: dir.join("tern.db") });
    config.connect().await.expect("open a SQLite store")
}

tern_queue::store_test_suite!(sqlite_store);
