//! Several processes opening one fresh SQLite store at once (`tern
//! submission & tern worker & ...` on one file) race through the
//! migrations; every one of them must end up with a usable store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tern_queue::{SqliteConfig, StoreConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_opened_together_on_a_fresh_file_all_migrate() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::Sqlite(SqliteConfig { path: dir.path().join("tern.db") });
        // One task is enough to race: each store's migrations run on its own
        // connection thread, interleaved at every await.
        let opened = futures::future::join_all((0..8).map(|_| config.connect())).await;
        for (i, store) in opened.into_iter().enumerate() {
            let store = store.unwrap_or_else(|e| panic!("round {round}, store {i}: {e}"));
            assert!(store.journal().head().await.is_ok());
        }
    }
}
