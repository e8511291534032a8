//! The work-queue contract: named topics, batched publish and claim, leases
//! that expire and redeliver, delayed retries, dead letters.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use crate::{QueueError, Result};

/// An entry to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Idempotency key: publishing an id the topic already holds (even acked,
    /// until purged) is a no-op. Derive it from what the entry is for.
    pub id: String,
    /// Opaque body (Tern's stages put JSON here).
    pub payload: Vec<u8>,
    /// Not visible to consumers before this instant (scheduled sends).
    pub not_before: Option<DateTime<Utc>>,
}

impl NewEntry {
    /// An entry visible at once.
    pub fn new(id: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self { id: id.into(), payload: payload.into(), not_before: None }
    }

    /// The same entry, hidden from consumers until `at`.
    pub fn not_before(mut self, at: DateTime<Utc>) -> Self {
        self.not_before = Some(at);
        self
    }
}

/// What a publish did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishReceipt {
    /// Entries newly stored.
    pub inserted: usize,
    /// Entries whose id the topic already held (left unchanged).
    pub duplicates: usize,
}

/// Identifies one lease on one entry; settling requires the same token, so a
/// consumer whose lease expired cannot ack an entry someone else now holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    /// Topic of the entry.
    pub topic: String,
    /// Entry id.
    pub id: String,
    /// Token of this lease.
    pub token: String,
    /// Which deployment holds the entry (multi-deployment MongoDB); 0 otherwise.
    pub shard: usize,
}

/// An entry handed to a consumer under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEntry {
    /// The lease.
    pub lease: LeaseRef,
    /// The body as published.
    pub payload: Vec<u8>,
    /// Deliveries so far, including this one (1 on first delivery).
    pub attempts: u32,
}

/// Result of one claim: the entries leased, and those that had been delivered
/// `max_attempts` times without ever being settled (their consumers crashed)
/// and were dead-lettered instead of delivered again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// Leased entries, oldest first.
    pub entries: Vec<ClaimedEntry>,
    /// Entries moved to the dead letters by this claim.
    pub dead_lettered: Vec<ClaimedEntry>,
}

/// What a nack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackOutcome {
    /// The entry will be delivered again at this instant.
    Retrying {
        /// When it becomes visible again.
        at: DateTime<Utc>,
    },
    /// Attempts were exhausted; the entry is in the dead letters.
    DeadLettered,
}

/// Entries of one topic by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Visible now.
    pub ready: u64,
    /// Under a live lease.
    pub leased: u64,
    /// Waiting for their not-before time or a retry delay.
    pub delayed: u64,
    /// Dead-lettered.
    pub dead: u64,
}

impl Depth {
    /// Entries not yet settled (ready, leased or delayed).
    pub fn pending(&self) -> u64 {
        self.ready + self.leased + self.delayed
    }
}

/// What one queue backend implements. Callers use [`Queue`] instead.
///
/// Contract (checked by `test_suite`): publish is idempotent per id; a claim
/// leases each visible entry to exactly one claimer, oldest first, and counts
/// the delivery; an entry whose lease expires is visible again; ack and nack
/// need the current lease token; a nacked entry reappears after its delay, or
/// is dead-lettered when its deliveries reached `max_attempts`.
#[async_trait]
pub trait QueueBackend: Send + Sync + fmt::Debug + 'static {
    /// Stores entries durably; returns when they are on disk.
    async fn publish(&self, topic: &str, entries: Vec<NewEntry>) -> Result<PublishReceipt>;
    /// Leases up to `max` visible entries for `lease`.
    async fn claim(&self, topic: &str, max: usize, lease: Duration, max_attempts: u32) -> Result<Claim>;
    /// Settles entries for good; returns the leases that were no longer held.
    async fn ack(&self, leases: &[LeaseRef]) -> Result<Vec<LeaseRef>>;
    /// Gives an entry back, visible again after `delay`.
    async fn nack(&self, lease: &LeaseRef, delay: Duration, max_attempts: u32) -> Result<NackOutcome>;
    /// Extends live leases to `lease` from now; returns the leases that were no longer held.
    async fn extend(&self, leases: &[LeaseRef], lease: Duration) -> Result<Vec<LeaseRef>>;
    /// Counts a topic's entries by state.
    async fn depth(&self, topic: &str) -> Result<Depth>;
    /// Lists up to `limit` dead-lettered entries of a topic.
    async fn dead_letters(&self, topic: &str, limit: usize) -> Result<Vec<ClaimedEntry>>;
    /// Deletes acked entries settled more than `older_than` ago (ending their idempotency window).
    async fn purge_acked(&self, older_than: Duration) -> Result<u64>;
}

/// The queue as the rest of Tern sees it, whatever the backend.
#[derive(Debug, Clone)]
pub struct Queue {
    backend: Arc<dyn QueueBackend>,
}

impl Queue {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn QueueBackend>) -> Self {
        Self { backend }
    }

    /// A handle that publishes to `topic`.
    pub fn producer(&self, topic: impl Into<String>) -> Producer {
        Producer { topic: topic.into(), backend: self.backend.clone() }
    }

    /// A handle that consumes `topic`.
    pub fn consumer(&self, topic: impl Into<String>, options: ConsumerOptions) -> Consumer {
        Consumer { topic: topic.into(), backend: self.backend.clone(), options }
    }

    /// Counts a topic's entries by state.
    pub async fn depth(&self, topic: &str) -> Result<Depth> {
        self.backend.depth(topic).await
    }

    /// Lists dead-lettered entries of a topic.
    pub async fn dead_letters(&self, topic: &str, limit: usize) -> Result<Vec<ClaimedEntry>> {
        self.backend.dead_letters(topic, limit).await
    }

    /// Deletes acked entries settled more than `older_than` ago.
    pub async fn purge_acked(&self, older_than: Duration) -> Result<u64> {
        self.backend.purge_acked(older_than).await
    }
}

/// Topic names are short identifiers (`mt`, `dlr.c1`): ASCII letters,
/// digits, `.`, `_` and `-`, 1 to 128 of them.
pub(crate) fn check_topic(topic: &str) -> Result<()> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 128 || !topic.chars().all(valid) {
        return Err(QueueError::Invalid(format!(
            "topic names are 1 to 128 ASCII letters, digits, '.', '_' or '-'; got {topic:?}"
        )));
    }
    Ok(())
}

/// Publishes to one topic.
#[derive(Debug, Clone)]
pub struct Producer {
    topic: String,
    backend: Arc<dyn QueueBackend>,
}

impl Producer {
    /// Publishes a batch; returns once it is durable.
    pub async fn publish(&self, entries: Vec<NewEntry>) -> Result<PublishReceipt> {
        check_topic(&self.topic)?;
        if entries.is_empty() {
            return Ok(PublishReceipt::default());
        }
        self.backend.publish(&self.topic, entries).await
    }

    /// The topic this producer writes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

/// How a consumer leases entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// How long a claimed entry stays invisible to other consumers.
    pub lease: Duration,
    /// Deliveries after which an entry is dead-lettered instead of retried.
    pub max_attempts: u32,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self { lease: Duration::from_secs(30), max_attempts: 10 }
    }
}

/// Consumes one topic.
#[derive(Debug, Clone)]
pub struct Consumer {
    topic: String,
    backend: Arc<dyn QueueBackend>,
    options: ConsumerOptions,
}

/// A claim as a consumer sees it.
#[derive(Debug, Default)]
pub struct Deliveries {
    /// Entries to process, each settled with [`Delivery::ack`] or [`Delivery::nack`].
    pub deliveries: Vec<Delivery>,
    /// Entries dead-lettered by this claim (delivered `max_attempts` times, never settled).
    pub dead_lettered: Vec<ClaimedEntry>,
}

impl Consumer {
    /// Leases up to `max` visible entries, oldest first.
    pub async fn claim(&self, max: usize) -> Result<Deliveries> {
        check_topic(&self.topic)?;
        if max == 0 {
            return Ok(Deliveries::default());
        }
        let claim = self.backend.claim(&self.topic, max, self.options.lease, self.options.max_attempts).await?;
        let deliveries = claim
            .entries
            .into_iter()
            .map(|entry| Delivery { entry, backend: self.backend.clone(), options: self.options })
            .collect();
        Ok(Deliveries { deliveries, dead_lettered: claim.dead_lettered })
    }

    /// Acks many deliveries in one durable write; returns those whose lease was lost
    /// (they will be, or were, delivered again).
    pub async fn ack_all(&self, deliveries: Vec<Delivery>) -> Result<Vec<LeaseRef>> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let leases: Vec<LeaseRef> = deliveries.into_iter().map(|d| d.entry.lease).collect();
        self.backend.ack(&leases).await
    }

    /// Extends the leases of deliveries still being worked on; returns those already lost.
    pub async fn extend_all(&self, deliveries: &[&Delivery]) -> Result<Vec<LeaseRef>> {
        let leases: Vec<LeaseRef> = deliveries.iter().map(|d| d.entry.lease.clone()).collect();
        self.extend_leases(&leases).await
    }

    /// Extends leases by reference (for work that kept only its [`LeaseRef`]);
    /// returns those no longer held, including leases already settled.
    pub async fn extend_leases(&self, leases: &[LeaseRef]) -> Result<Vec<LeaseRef>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.extend(leases, self.options.lease).await
    }

    /// Gives leases back unsettled, visible to any consumer at once and
    /// without counting a failure (a worker that shuts down mid-batch does
    /// this); returns those no longer held.
    pub async fn release_leases(&self, leases: &[LeaseRef]) -> Result<Vec<LeaseRef>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.extend(leases, Duration::ZERO).await
    }

    /// The topic this consumer reads.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Counts this topic's entries by state.
    pub async fn depth(&self) -> Result<Depth> {
        self.backend.depth(&self.topic).await
    }
}

/// One leased entry; settle it with `ack` or `nack`. Dropping it unsettled
/// leaves the lease to expire, after which the entry is delivered again.
#[derive(Debug)]
pub struct Delivery {
    entry: ClaimedEntry,
    backend: Arc<dyn QueueBackend>,
    options: ConsumerOptions,
}

impl Delivery {
    /// The entry's id.
    pub fn id(&self) -> &str {
        &self.entry.lease.id
    }

    /// The body as published.
    pub fn payload(&self) -> &[u8] {
        &self.entry.payload
    }

    /// Decodes a JSON body.
    pub fn payload_json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.entry.payload)?)
    }

    /// Deliveries so far, this one included.
    pub fn attempts(&self) -> u32 {
        self.entry.attempts
    }

    /// The lease this delivery holds.
    pub fn lease(&self) -> &LeaseRef {
        &self.entry.lease
    }

    /// Settles the entry for good.
    pub async fn ack(self) -> Result<()> {
        let lost = self.backend.ack(std::slice::from_ref(&self.entry.lease)).await?;
        match lost.into_iter().next() {
            Some(lease) => Err(QueueError::LeaseLost { topic: lease.topic, id: lease.id }),
            None => Ok(()),
        }
    }

    /// Gives the entry back to be retried after `delay` (or dead-lettered when
    /// its attempts are exhausted).
    pub async fn nack(self, delay: Duration) -> Result<NackOutcome> {
        self.backend.nack(&self.entry.lease, delay, self.options.max_attempts).await
    }

    /// Extends the lease to the consumer's lease duration from now.
    pub async fn extend_lease(&self) -> Result<()> {
        let lost = self.backend.extend(std::slice::from_ref(&self.entry.lease), self.options.lease).await?;
        match lost.into_iter().next() {
            Some(lease) => Err(QueueError::LeaseLost { topic: lease.topic, id: lease.id }),
            None => Ok(()),
        }
    }
}

/// 64 random bits: unguessable enough to fence off a stale consumer, and
/// short, because the claim writes it into every leased row.
pub(crate) fn new_lease_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_short_identifiers() {
        for good in ["mt", "dlr.c1", "stage_2-retry", &"t".repeat(128)] {
            assert!(check_topic(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "mt\u{1f}x", "mt/1", "é", &"t".repeat(129)] {
            let err = check_topic(bad).unwrap_err();
            assert!(matches!(err, QueueError::Invalid(_)), "{bad:?}: {err}");
        }
    }
}
