//! The conformance suite on a queue spread over two independent MongoDB
//! deployments (the Starling/Kestrel model): journal on the first, queue
//! entries on either. Needs `TERN_TEST_MONGODB_URI` and `TERN_TEST_MONGODB_URI_2`
//! (both started by `scripts/test.sh`); fails without them.

use tern_queue::{MongoConfig, Store, StoreConfig};

#[allow(clippy::panic, clippy::expect_used)]
async fn two_deployment_store() -> Store {
    let var = |name: &str| match std::env::var(name) {
        Ok(uri) if !uri.trim().is_empty() => uri,
        _ => panic!("{name} is not set: run the suite through scripts/test.sh, which starts two MongoDB stand-ins"),
    };
    let (first, second) = (var("TERN_TEST_MONGODB_URI"), var("TERN_TEST_MONGODB_URI_2"));
    let database = format!("t2_{}", uuid::Uuid::new_v4().simple());
    let config = MongoConfig {
        queue_uris: vec![first.clone(), second],
        journal_settle_ms: 300,
        outbox_settle_ms: 500,
        server_selection_timeout_ms: 2_000,
        ..MongoConfig::new(first, database)
    };
    StoreConfig::Mongodb(config).connect().await.expect("connect to the two MongoDB test deployments")
}

tern_queue::store_test_suite!(two_deployment_store);
