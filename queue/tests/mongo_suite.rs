//! The backend conformance suite (`tern_queue::test_suite`) on MongoDB.
//!
//! Needs `TERN_TEST_MONGODB_URI`: run it through `scripts/test.sh`, which
//! starts the MongoDB stand-in. Without it every test fails (never passes
//! silently).

use tern_queue::{MongoConfig, Store, StoreConfig};

/// A store in a fresh database of the test deployment, with short timings.
#[allow(clippy::panic, clippy::expect_used)]
async fn mongo_store() -> Store {
    let uri = match std::env::var("TERN_TEST_MONGODB_URI") {
        Ok(uri) if !uri.trim().is_empty() => uri,
        _ => panic!(
            "TERN_TEST_MONGODB_URI is not set: run the suite through scripts/test.sh, which starts the MongoDB stand-in"
        ),
    };
    let database = format!("t_{}", uuid::Uuid::new_v4().simple());
    let config = MongoConfig {
        journal_settle_ms: 300,
        outbox_settle_ms: 500,
        server_selection_timeout_ms: 2_000,
        ..MongoConfig::new(uri, database)
    };
    StoreConfig::Mongodb(config).connect().await.expect("connect to the MongoDB test deployment")
}

tern_queue::store_test_suite!(mongo_store);
