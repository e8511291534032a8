//! The runner: retries and dead letters, draining on shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tern_core::{EventKind, MessageStatus};
use tern_handlers::{Handler, HandlerError, Mt, Outcome};
use tern_queue::{ClaimedEntry, Consumer, Delivery, Store};
use tern_workers::config::StageConfig;
use tern_workers::mt::{MT_TOPIC, MtStage};
use tern_workers::runtime::{Runner, Stage};
use tern_workers::{Shutdown, WorkerError};

use crate::helpers::*;

#[derive(Debug)]
struct AlwaysLater;

#[async_trait]
impl Handler<Mt> for AlwaysLater {
    async fn handle(&self, batch: &mut [&mut Mt]) -> Result<Vec<Outcome>, HandlerError> {
        Ok(vec![Outcome::RetryLater { after: Duration::from_millis(20), reason: "upstream busy".into() }; batch.len()])
    }
}

pub async fn failing_messages_are_dead_lettered_and_refunded(store: &TestStore) {
    let acme = account(store, NewAccount::default()).await;
    let (mut registry, _) = mt_registry(store, table("sim")).await;
    registry.register("later", Arc::new(AlwaysLater));
    let stage =
        Arc::new(MtStage::new(store.store.clone(), registry.chain(&names(&["routing", "billing", "later"])).unwrap()));
    let id = send(store, &acme, Send::default()).await;
    let config = StageConfig { concurrency: 1, batch_size: 10, lease_ms: 5_000, max_attempts: 3 };
    let (shutdown, stop) = Shutdown::new();
    let runner = tokio::spawn(
        Runner::new(stage, store.queue().consumer(MT_TOPIC, config.consumer()), config, Duration::from_secs(5))
            .run(stop),
    );
    let mut done = false;
    for _ in 0..200 {
        if status(store, id).await == MessageStatus::Failed {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.trigger();
    runner.await.unwrap();
    let events = history(store, id).await;
    assert!(done, "never dead-lettered: {events:?}");
    let c = counts(&events);
    assert_eq!(c.get("retried"), Some(&2), "attempts 1 and 2 retried: {events:?}");
    assert!(events.iter().any(|k| matches!(k, EventKind::DeadLettered { attempts: 3, stage, .. } if stage == "mt")));
    assert_eq!(c.get("charged"), Some(&1));
    assert_eq!(c.get("refunded"), Some(&1));
    assert_eq!(balance(store, acme.id).await, 1_000_000, "charged once, refunded once");
    assert_eq!(store.queue().depth(MT_TOPIC).await.unwrap().dead, 1);
}

/// Holds each batch until told to finish; counts what it settled.
struct Slow {
    started: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    hold: Duration,
}

#[async_trait]
impl Stage for Slow {
    fn name(&self) -> &str {
        "slow"
    }

    async fn process(&self, consumer: &Consumer, deliveries: Vec<Delivery>) -> Result<(), WorkerError> {
        self.started.fetch_add(deliveries.len(), Ordering::SeqCst);
        tokio::time::sleep(self.hold).await;
        let n = deliveries.len();
        consumer.ack_all(deliveries).await?;
        self.finished.fetch_add(n, Ordering::SeqCst);
        Ok(())
    }

    async fn dead_lettered(&self, _: Vec<ClaimedEntry>) -> Result<(), WorkerError> {
        Ok(())
    }
}

async fn publish(store: &TestStore, topic: &str, n: usize) {
    let entries = (0..n).map(|i| tern_queue::NewEntry::new(format!("e{i}"), b"x".to_vec())).collect();
    store.queue().producer(topic).publish(entries).await.unwrap();
}

pub async fn shutdown_drains_in_flight_work_and_releases_the_rest(store: &TestStore) {
    // A drain that has time finishes the batch in flight and claims nothing more.
    publish(store, "slow", 20).await;
    let (started, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stage =
        Arc::new(Slow { started: started.clone(), finished: finished.clone(), hold: Duration::from_millis(500) });
    let config = StageConfig { concurrency: 1, batch_size: 5, lease_ms: 60_000, max_attempts: 10 };
    let (shutdown, stop) = Shutdown::new();
    let runner = tokio::spawn(
        Runner::new(stage, store.queue().consumer("slow", config.consumer()), config, Duration::from_secs(10))
            .run(stop),
    );
    while started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.trigger();
    runner.await.unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 5);
    assert_eq!(finished.load(Ordering::SeqCst), 5, "the batch in flight was finished");
    let depth = store.queue().depth("slow").await.unwrap();
    assert_eq!((depth.ready, depth.leased), (15, 0));

    // A drain that runs out of time gives the leases back: visible at once, not after the 60 s lease.
    publish(store, "stuck", 5).await;
    let (started, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stage = Arc::new(Slow { started: started.clone(), finished: finished.clone(), hold: Duration::from_secs(600) });
    let (shutdown, stop) = Shutdown::new();
    let runner = tokio::spawn(
        Runner::new(stage, store.queue().consumer("stuck", config.consumer()), config, Duration::from_millis(200))
            .run(stop),
    );
    while started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.trigger();
    runner.await.unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    let claimed = store.queue().consumer("stuck", config.consumer()).claim(10).await.unwrap();
    assert_eq!(claimed.deliveries.len(), 5, "released leases are claimable at once");
}

pub async fn leases_are_extended_while_a_batch_is_in_flight(store: &TestStore) {
    publish(store, "long", 3).await;
    let (started, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Work takes five leases' worth of time; without extension the entries
    // would be handed to the rival below after 400 ms.
    let stage =
        Arc::new(Slow { started: started.clone(), finished: finished.clone(), hold: Duration::from_millis(2_000) });
    let config = StageConfig { concurrency: 1, batch_size: 10, lease_ms: 400, max_attempts: 10 };
    let (shutdown, stop) = Shutdown::new();
    let runner = tokio::spawn(
        Runner::new(stage, store.queue().consumer("long", config.consumer()), config, Duration::from_secs(10))
            .run(stop),
    );
    while started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rival = store.queue().consumer("long", config.consumer());
    while finished.load(Ordering::SeqCst) == 0 {
        let claimed = rival.claim(10).await.unwrap();
        assert!(claimed.deliveries.is_empty(), "an entry in flight was handed to another consumer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.trigger();
    runner.await.unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 3);
    assert_eq!(store.queue().depth("long").await.unwrap().pending(), 0, "acked under the extended lease");
}

/// Calls the store without pause for `busy_for`, then acks the batch.
struct Busy {
    store: Store,
    busy_for: Duration,
    finished: Arc<AtomicUsize>,
}

#[async_trait]
impl Stage for Busy {
    fn name(&self) -> &str {
        "busy"
    }

    async fn process(&self, consumer: &Consumer, deliveries: Vec<Delivery>) -> Result<(), WorkerError> {
        let started = Instant::now();
        while started.elapsed() < self.busy_for {
            self.store.queue().depth("busy").await?;
        }
        let n = deliveries.len();
        consumer.ack_all(deliveries).await?;
        self.finished.fetch_add(n, Ordering::SeqCst);
        Ok(())
    }

    async fn dead_lettered(&self, _: Vec<ClaimedEntry>) -> Result<(), WorkerError> {
        Ok(())
    }
}

pub async fn a_batch_busy_on_the_store_finishes_while_its_leases_are_extended(store: &TestStore) {
    // On one connection a lease extension waits for the batch's own store
    // call to give the connection back, which it can only do if the batch
    // is still being run while the extension waits.
    let store = one_connection(store).await;
    let entries = (0..3).map(|i| tern_queue::NewEntry::new(format!("e{i}"), b"x".to_vec())).collect();
    store.queue().producer("busy").publish(entries).await.unwrap();
    let finished = Arc::new(AtomicUsize::new(0));
    // About fifteen extensions while the batch is busy.
    let stage =
        Arc::new(Busy { store: store.clone(), busy_for: Duration::from_millis(1_500), finished: finished.clone() });
    let config = StageConfig { concurrency: 1, batch_size: 10, lease_ms: 300, max_attempts: 10 };
    let (shutdown, stop) = Shutdown::new();
    let runner = tokio::spawn(
        Runner::new(stage, store.queue().consumer("busy", config.consumer()), config, Duration::from_secs(10))
            .run(stop),
    );
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        while finished.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "the batch stopped moving while its leases were being extended");
    shutdown.trigger();
    runner.await.unwrap();
    assert_eq!(store.queue().depth("busy").await.unwrap().pending(), 0);
}
