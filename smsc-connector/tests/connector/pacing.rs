//! What paces the sends: the token bucket and the window. Each test checks
//! a lower bound on the time taken, which no machine beats when the pacing
//! works and which an unpaced connector misses by far.

use std::time::{Duration, Instant};

use tern_core::MessageStatus;
use tern_smsc_connector::ConnectorConfig;
use tern_smsc_connector::sim::SimHandle;

use crate::helpers::*;

/// How long `n` messages take from routed to delivered through a connector
/// with `config` (its port set to the simulator's), once it is bound.
async fn time_to_deliver(store: &TestStore, sim: &SimHandle, config: ConnectorConfig, n: usize) -> Duration {
    let account = account(store, 10_000).await;
    let config = ConnectorConfig { port: sim.local_addr().port(), ..config };
    let connector = start(store, &config);
    connector.running.link.wait_up().await;
    let started = Instant::now();
    let ids = routed_many(store, &account, n, "paced").await;
    wait_for(store, &ids, MessageStatus::Delivered).await;
    let elapsed = started.elapsed();
    connector.stop().await;
    elapsed
}

pub async fn the_throughput_cap_paces_the_sends(store: &TestStore) {
    let sim = simulator(|_| {}).await;
    let elapsed = time_to_deliver(store, &sim, ConnectorConfig { throughput: 10, ..connector_config(0) }, 40).await;
    // The bucket holds one second's worth (10) at the start; the other 30
    // come one every 100 ms.
    assert!(elapsed >= Duration::from_millis(2_800), "40 messages at 10/s went in {elapsed:?}");
    let stats = sim.stats();
    assert_eq!((stats.submit_sm, stats.duplicates), (40, 0), "{stats:?}");
}

pub async fn the_window_bounds_the_requests_in_flight(store: &TestStore) {
    // Every response comes 200 ms late, each on its own timer.
    let sim = simulator(|c| {
        c.slow_share = 1.0;
        c.slow_ms = 200;
    })
    .await;
    let elapsed = time_to_deliver(store, &sim, ConnectorConfig { window: 2, ..connector_config(0) }, 10).await;
    // Two at a time: five rounds of 200 ms. With no window all ten would
    // wait out one 200 ms together.
    assert!(elapsed >= Duration::from_millis(950), "10 slow responses with a window of 2 in {elapsed:?}");
    let stats = sim.stats();
    assert_eq!((stats.submit_sm, stats.slow_responses, stats.duplicates), (10, 10, 0), "{stats:?}");
}
