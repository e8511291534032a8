//! Metric names of the workers, in one place.

/// Counter: batches processed, by stage and result (`ok`, `error`).
pub const BATCHES: &str = "tern_worker_batches_total";
/// Counter: entries settled, by stage and how (`ack`, `retry`, `dead`).
pub const SETTLED: &str = "tern_worker_entries_total";
/// Histogram: seconds one batch took, by stage.
pub const BATCH_SECONDS: &str = "tern_worker_batch_seconds";
/// Gauge: batches in flight, by stage.
pub const IN_FLIGHT: &str = "tern_worker_batches_in_flight";
/// Counter: store errors met while claiming, by stage.
pub const CLAIM_ERRORS: &str = "tern_worker_claim_errors_total";
/// Counter: webhooks, by result (`delivered`, `retry`, `given_up`).
pub const WEBHOOKS: &str = "tern_webhooks_total";
/// Counter: scheduled messages released.
pub const RELEASED: &str = "tern_scheduler_released_total";
/// Counter: messages expired by the scheduler.
pub const EXPIRED: &str = "tern_scheduler_expired_total";
/// Gauge: 1 while this process holds a lease (`job` label), else 0.
pub const LEADER: &str = "tern_leader";

pub(crate) fn settled(stage: &str, how: &'static str, n: usize) {
    ::metrics::counter!(SETTLED, "stage" => stage.to_owned(), "how" => how).increment(n as u64);
}
