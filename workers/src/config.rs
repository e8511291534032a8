//! The `[worker]`, `[routing]`, `[optout]`, `[replies]`, `[callbacks]` and
//! `[scheduler]` sections of Tern's configuration (docs/configuration.md).

use std::time::Duration;

use serde::Deserialize;
use tern_handlers::optout::OptOutConfig;
use tern_handlers::routing::{Action, Route, RoutingTable};
use tern_queue::ConsumerOptions;

/// How one stage consumes its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageConfig {
    /// Batches worked on at once.
    pub concurrency: usize,
    /// Entries claimed per batch.
    pub batch_size: usize,
    /// Lease of a claimed entry, in milliseconds (extended while in flight).
    pub lease_ms: u64,
    /// Deliveries after which an entry is dead-lettered.
    pub max_attempts: u32,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self { concurrency: 4, batch_size: 500, lease_ms: 30_000, max_attempts: 10 }
    }
}

impl StageConfig {
    /// The consumer options this stage claims with.
    pub fn consumer(&self) -> ConsumerOptions {
        ConsumerOptions { lease: Duration::from_millis(self.lease_ms.max(100)), max_attempts: self.max_attempts.max(1) }
    }
}

/// Handler chains by stage.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandlerChains {
    /// Outbound: registered names `optout`, `routing`, `billing`, `conversations`.
    pub mt: Vec<String>,
    /// Inbound: registered names `replies`, `optout`, `inbound`.
    pub mo: Vec<String>,
}

impl Default for HandlerChains {
    fn default() -> Self {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect();
        Self {
            mt: names(&["optout", "routing", "billing", "conversations"]),
            mo: names(&["replies", "optout", "inbound"]),
        }
    }
}

/// `[worker]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Stages this process runs: `mt`, `mo`, `callbacks`.
    pub stages: Vec<String>,
    /// Handler chains.
    pub handlers: HandlerChains,
    /// The `mt` stage.
    pub mt: StageConfig,
    /// The `mo` stage.
    pub mo: StageConfig,
    /// How long SIGTERM waits for in-flight batches, in milliseconds.
    pub drain_timeout_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            stages: vec!["mt".into(), "mo".into(), "callbacks".into()],
            handlers: HandlerChains::default(),
            mt: StageConfig::default(),
            mo: StageConfig { batch_size: 100, ..StageConfig::default() },
            drain_timeout_ms: 30_000,
        }
    }
}

/// `[routing]`: the configured routing table (the admin API can replace it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// How often a process checks for a new stored table, in milliseconds.
    pub reload_ms: u64,
    /// Routes, in order.
    pub routes: Vec<Route>,
    /// Default action.
    pub default: Option<Action>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self { reload_ms: 2_000, routes: Vec::new(), default: None }
    }
}

impl RoutingConfig {
    /// The configured table.
    pub fn table(&self) -> RoutingTable {
        RoutingTable { routes: self.routes.clone(), default: self.default.clone() }
    }
}

/// `[replies]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepliesConfig {
    /// How long after an outbound message a reply is matched to it, in seconds.
    pub window_secs: u64,
}

impl Default for RepliesConfig {
    fn default() -> Self {
        Self { window_secs: 7 * 24 * 3600 }
    }
}

/// `[callbacks]`: webhook dispatch and delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackConfig {
    /// Deliveries in flight = `concurrency` × `batch_size`.
    pub concurrency: usize,
    /// Webhooks claimed per batch.
    pub batch_size: usize,
    /// Timeout of one POST, in milliseconds.
    pub timeout_ms: u64,
    /// First retry delay, in milliseconds; each retry doubles it.
    pub min_delay_ms: u64,
    /// Longest retry delay, in seconds.
    pub max_delay_secs: u64,
    /// Retries stop this long after the event, in seconds (then a `callback_failed` event).
    pub give_up_after_secs: u64,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            batch_size: 16,
            timeout_ms: 10_000,
            min_delay_ms: 1_000,
            max_delay_secs: 3_600,
            give_up_after_secs: 24 * 3600,
        }
    }
}

/// `[scheduler]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// How often the leader looks for due work, in milliseconds.
    pub tick_ms: u64,
    /// Lease that elects the leader, in milliseconds; renewed at a third of it.
    pub lease_ms: u64,
    /// A submitted message expires this long after its validity, in seconds:
    /// the SMSC holds it and its receipt may still come.
    pub submitted_grace_secs: u64,
    /// How often interrupted accepts are repaired, in seconds.
    pub repair_every_secs: u64,
    /// How often acked queue entries and idempotency records are purged, in seconds.
    pub purge_every_secs: u64,
    /// Acked queue entries older than this are purged, in seconds.
    pub queue_retention_secs: u64,
    /// Idempotency records older than this are purged, in seconds (keep it
    /// at least the submission role's `idempotency_ttl_secs`).
    pub idempotency_retention_secs: u64,
    /// SMSC message id records older than this are purged, in seconds (keep
    /// it longer than the longest validity period: receipts need them).
    pub smsc_id_retention_secs: u64,
    /// Parts of inbound messages whose other parts never came are purged
    /// after this, in seconds.
    pub mo_part_retention_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick_ms: 250,
            lease_ms: 10_000,
            submitted_grace_secs: 3_600,
            repair_every_secs: 30,
            purge_every_secs: 3_600,
            queue_retention_secs: 7 * 24 * 3600,
            idempotency_retention_secs: 24 * 3600,
            smsc_id_retention_secs: 7 * 24 * 3600,
            mo_part_retention_secs: 24 * 3600,
        }
    }
}

/// Everything the worker role reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineSettings {
    /// `[worker]`.
    pub worker: WorkerConfig,
    /// `[routing]`.
    pub routing: RoutingConfig,
    /// `[optout]`.
    pub optout: OptOutConfig,
    /// `[replies]`.
    pub replies: RepliesConfig,
    /// `[callbacks]`.
    pub callbacks: CallbackConfig,
}
