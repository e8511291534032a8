//! A queue over two MongoDB deployments keeps working while one is down, and
//! loses nothing when it comes back (the Starling/Kestrel model).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::standin::StandIn;
use tern_queue::{ConsumerOptions, MongoConfig, NewEntry, StoreConfig};

const ENTRIES: usize = 1_500;
const BATCH: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_stopped_and_restarted_mid_run_loses_nothing() {
    let first = StandIn::start();
    let mut second = StandIn::start();
    let config = MongoConfig {
        queue_uris: vec![first.uri(), second.uri()],
        server_selection_timeout_ms: 1_000,
        ..MongoConfig::new(first.uri(), "failover")
    };
    let store = StoreConfig::Mongodb(config).connect().await.unwrap();
    let producer = store.queue().producer("mt");
    let consumer = store.queue().consumer("mt", ConsumerOptions { lease: Duration::from_secs(60), max_attempts: 5 });

    let mut deliveries: HashMap<String, usize> = HashMap::new();
    let consume = async |deliveries: &mut HashMap<String, usize>| {
        // While a deployment is down a claim may fail outright (if it was the
        // only one tried); that is an error to retry, not data lost.
        if let Ok(claim) = consumer.claim(BATCH).await {
            for d in &claim.deliveries {
                *deliveries.entry(d.id().to_owned()).or_default() += 1;
            }
            assert!(consumer.ack_all(claim.deliveries).await.unwrap().is_empty());
        }
    };

    let mut published = 0;
    let mut failed_publishes = 0;
    for (round, first_id) in (0..ENTRIES).step_by(BATCH).enumerate() {
        if round == 10 {
            second.kill();
        }
        if round == 20 {
            second.resume();
        }
        let batch: Vec<NewEntry> =
            (first_id..first_id + BATCH).map(|i| NewEntry::new(format!("e{i}"), i.to_string())).collect();
        // A publish racing the kill may fail; the producer's caller retries it,
        // as the submission role does.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match producer.publish(batch.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(e.is_transient(), "unexpected publish error: {e}");
                    assert!(attempts < 20, "publish kept failing with one deployment up: {e}");
                    failed_publishes += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        published += BATCH;
        consume(&mut deliveries).await;
    }
    assert_eq!(published, ENTRIES);

    // Drain: everything that was on the stopped deployment is claimable again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while deliveries.len() < ENTRIES && tokio::time::Instant::now() < deadline {
        consume(&mut deliveries).await;
    }
    let missing: Vec<String> =
        (0..ENTRIES).map(|i| format!("e{i}")).filter(|id| !deliveries.contains_key(id)).collect();
    assert!(missing.is_empty(), "lost {} entries, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    // A publish whose outcome was unknown when the deployment died may be
    // retried onto the other one: at most the batches in flight are doubled.
    let duplicated = deliveries.values().filter(|&&n| n > 1).count();
    assert!(duplicated <= BATCH * (failed_publishes + 1), "{duplicated} entries delivered twice");
    let depth = store.queue().depth("mt").await.unwrap();
    assert_eq!(depth.pending(), 0, "{depth:?}");
}
