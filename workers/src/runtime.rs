//! The runner: claims batches from one topic and hands them to a [`Stage`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use tern_queue::{ClaimedEntry, Consumer, Delivery, LeaseRef};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::WorkerError;
use crate::config::StageConfig;
use crate::metrics;

/// What a stage does with a claimed batch.
#[async_trait]
pub trait Stage: Send + Sync + 'static {
    /// The stage's name, for logs and metrics.
    fn name(&self) -> &str;
    /// Works on the batch and settles every delivery (ack or nack). On an
    /// error the runner gives back the leases of whatever was not settled.
    async fn process(&self, consumer: &Consumer, deliveries: Vec<Delivery>) -> Result<(), WorkerError>;
    /// Entries a claim dead-lettered because their consumers kept dying.
    async fn dead_lettered(&self, entries: Vec<ClaimedEntry>) -> Result<(), WorkerError>;
    /// Returns when the stage can take work. A connector whose binds are all
    /// down claims nothing: its messages wait in the queue, unleased.
    async fn ready(&self) {}
}

/// Consumes one topic with a [`Stage`].
pub struct Runner {
    stage: Arc<dyn Stage>,
    consumer: Consumer,
    config: StageConfig,
    drain_timeout: Duration,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("stage", &self.stage.name()).field("config", &self.config).finish()
    }
}

/// Idle polling starts at this interval and backs off to `IDLE_MAX`.
const IDLE_MIN: Duration = Duration::from_millis(5);
const IDLE_MAX: Duration = Duration::from_millis(200);

impl Runner {
    /// A runner for `stage` on `consumer`'s topic.
    pub fn new(stage: Arc<dyn Stage>, consumer: Consumer, config: StageConfig, drain_timeout: Duration) -> Self {
        Self { stage, consumer, config, drain_timeout }
    }

    /// Runs until `shutdown` turns true, then drains: no new claims, in-flight
    /// batches get `drain_timeout` to finish, and the leases of any still
    /// running are given back so another worker takes them at once.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.stage.name().to_owned();
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let in_flight: Arc<std::sync::Mutex<HashMap<u64, Vec<LeaseRef>>>> = Arc::default();
        let mut batch_ids = 0u64;
        let mut errors = backoff();
        let mut idle = IDLE_MIN;
        loop {
            while tasks.try_join_next().is_some() {}
            if *shutdown.borrow() {
                break;
            }
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
                _ = shutdown.changed() => continue,
            };
            tokio::select! {
                () = self.stage.ready() => {}
                _ = shutdown.changed() => continue,
            }
            let claimed = self.consumer.claim(self.config.batch_size.max(1)).await;
            let batch = match claimed {
                Ok(batch) => {
                    errors = backoff();
                    batch
                }
                Err(e) => {
                    drop(permit);
                    ::metrics::counter!(metrics::CLAIM_ERRORS, "stage" => name.clone()).increment(1);
                    let wait = errors.next().unwrap_or(Duration::from_secs(10));
                    tracing::warn!(stage = %name, error = %e, retry_in = ?wait, "cannot claim; the store may be away");
                    sleep_or_stop(wait, &mut shutdown).await;
                    continue;
                }
            };
            if !batch.dead_lettered.is_empty()
                && let Err(e) = self.stage.dead_lettered(batch.dead_lettered).await
            {
                tracing::error!(stage = %name, error = %e, "cannot record dead-lettered entries");
            }
            if batch.deliveries.is_empty() {
                drop(permit);
                sleep_or_stop(idle, &mut shutdown).await;
                idle = (idle * 2).min(IDLE_MAX);
                continue;
            }
            idle = IDLE_MIN;
            let leases: Vec<LeaseRef> = batch.deliveries.iter().map(|d| d.lease().clone()).collect();
            let stage = self.stage.clone();
            let consumer = self.consumer.clone();
            let lease = self.config.consumer().lease;
            let registry = in_flight.clone();
            let stage_name = name.clone();
            batch_ids += 1;
            let batch_id = batch_ids;
            if let Ok(mut list) = registry.lock() {
                list.insert(batch_id, leases.clone());
            }
            tasks.spawn(async move {
                let _permit = permit;
                ::metrics::gauge!(metrics::IN_FLIGHT, "stage" => stage_name.clone()).increment(1.0);
                let started = Instant::now();
                let work = stage.process(&consumer, batch.deliveries);
                let result = keep_leases(work, &consumer, &leases, lease).await;
                ::metrics::histogram!(metrics::BATCH_SECONDS, "stage" => stage_name.clone())
                    .record(started.elapsed().as_secs_f64());
                ::metrics::gauge!(metrics::IN_FLIGHT, "stage" => stage_name.clone()).decrement(1.0);
                let outcome = if result.is_ok() { "ok" } else { "error" };
                ::metrics::counter!(metrics::BATCHES, "stage" => stage_name.clone(), "result" => outcome).increment(1);
                if let Err(e) = result {
                    tracing::warn!(stage = %stage_name, error = %e, entries = leases.len(), "batch failed; giving its leases back");
                    // Settled entries come back as lost; the rest are visible again.
                    if let Err(e) = consumer.release_leases(&leases).await {
                        tracing::warn!(stage = %stage_name, error = %e, "cannot give leases back; they will expire");
                    }
                    // Give the store a moment before this permit claims again.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if let Ok(mut list) = registry.lock() {
                    list.remove(&batch_id);
                }
            });
        }
        tracing::info!(stage = %name, in_flight = tasks.len(), "draining");
        let drained =
            tokio::time::timeout(self.drain_timeout, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let abandoned: Vec<LeaseRef> =
                in_flight.lock().map(|l| l.values().flatten().cloned().collect()).unwrap_or_default();
            tracing::warn!(stage = %name, entries = abandoned.len(), "drain timed out; giving leases back");
            if let Err(e) = self.consumer.release_leases(&abandoned).await {
                tracing::warn!(stage = %name, error = %e, "cannot give leases back; they will expire");
            }
        }
        tracing::info!(stage = %name, "stopped");
    }
}

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build()
}

async fn sleep_or_stop(wait: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        _ = shutdown.changed() => {}
    }
}

/// Runs `work`, extending `leases` every third of `lease` until it ends.
///
/// The extension runs beside the work, never in its place: work parked in
/// the middle of a store call can hold the connection the extension waits
/// for (a MongoDB pool has a few), and then neither would ever move again.
async fn keep_leases<F>(work: F, consumer: &Consumer, leases: &[LeaseRef], lease: Duration) -> Result<(), WorkerError>
where
    F: std::future::Future<Output = Result<(), WorkerError>>,
{
    let extend = async {
        let mut tick = tokio::time::interval(lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match consumer.extend_leases(leases).await {
                Ok(lost) if !lost.is_empty() => {
                    tracing::debug!(lost = lost.len(), "some leases were settled or lost while extending");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot extend leases; they may expire and be redelivered"),
            }
        }
    };
    tokio::select! {
        result = work => result,
        never = extend => never,
    }
}
