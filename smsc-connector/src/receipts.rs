//! Delivery receipts: matched to their message through the SMSC id records
//! and recorded as `DeliveryReport` events, one per segment the id stands for.
//!
//! An SMSC keeps only so many `deliver_sm` outstanding per bind, so a bind
//! takes receipts no faster than its window over the time one takes to
//! acknowledge. Receipts from every bind therefore go to one place that
//! takes all that are waiting, matches them (from the ids this process just
//! recorded, else with one read of the store) and records them with one
//! write; several such batches may be under way at once. Only then do their
//! `deliver_sm_resp`s go: an acknowledged receipt is on disk.
//!
//! A receipt can arrive before the `submit_sm_resp` of its message was
//! recorded (the SMSC delivered faster than we wrote, the receipt came on
//! another process's bind, or the response was lost and the message is
//! being resent). It is then queued durably on `dlr.<connector>` and the
//! [`ReceiptStage`] matches it again with growing delays, for
//! `receipt_match_window_secs`, then gives it up and counts it.
//!
//! The dispatcher stores a message's SMSC ids, then records its
//! `SubmittedToSmsc` events, and only then lets this process's cache know
//! the ids. A receipt matched from the cache therefore follows a recorded
//! submission. One matched from the store may not: the dispatcher can have
//! died between the two writes. So such a receipt is recorded with the
//! submission its id record proves; the event's id is derived from the fact,
//! so where the dispatcher did record it, the journal keeps that one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use rusmpp::CommandStatus;
use tern_core::{Event, EventKind};
use tern_queue::{ClaimedEntry, Consumer, Delivery, NewEntry, QueueError, SmscIdRecord, Store};
use tern_workers::WorkerError;
use tern_workers::runtime::Stage;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::ReceiptIds;
use crate::deliver::Receipt;
use crate::metrics;
use crate::recent::RecentIds;

/// The topic of a connector's receipts whose message was not known yet.
pub fn receipt_topic(connector: &str) -> String {
    format!("dlr.{connector}")
}

/// The `SubmittedToSmsc` events an SMSC id record stands for.
fn proven_submission(record: &SmscIdRecord) -> impl Iterator<Item = Event> + '_ {
    (record.first_segment..=record.last_segment.max(record.first_segment)).map(move |segment| {
        let kind = EventKind::SubmittedToSmsc {
            connector: record.connector.clone(),
            segment,
            smsc_message_id: record.smsc_id.clone(),
        };
        Event::new(record.message_id, record.account_id, record.at, kind)
    })
}

/// First delay before an unmatched receipt is matched again; doubles per try.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(300);
/// Receipts matched and recorded together at most.
const BATCH: usize = 1_000;
/// Batches being recorded at once: while one waits for its commit, the
/// next is matched.
const BATCHES_IN_FLIGHT: usize = 4;
/// SMSC ids kept in memory per connector (per generation).
const RECENT_IDS: usize = 200_000;

/// Matches receipts to messages and records them.
#[derive(Debug)]
pub struct ReceiptMatcher {
    connector: String,
    store: Store,
    ids: ReceiptIds,
    recent: RecentIds,
}

impl ReceiptMatcher {
    /// A matcher for `connector`'s receipts.
    pub fn new(connector: &str, store: Store, ids: ReceiptIds) -> Self {
        Self { connector: connector.to_owned(), store, ids, recent: RecentIds::new(RECENT_IDS) }
    }

    /// Notes SMSC id records this process just stored.
    pub fn remember(&self, records: &[SmscIdRecord]) {
        self.recent.remember(records);
    }

    /// Records the receipts whose message is known; returns the indexes of
    /// the others.
    pub async fn record(&self, receipts: &[Receipt]) -> Result<Vec<usize>, QueueError> {
        let keys: Vec<String> = receipts.iter().map(|r| self.ids.from_receipt(&r.smsc_id)).collect();
        let mut found: Vec<Option<SmscIdRecord>> = keys.iter().map(|key| self.recent.get(key)).collect();
        let cached: Vec<bool> = found.iter().map(Option::is_some).collect();
        let mut wanted: Vec<String> =
            keys.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(k, _)| k.clone()).collect();
        if !wanted.is_empty() {
            wanted.sort_unstable();
            wanted.dedup();
            let stored: std::collections::HashMap<String, SmscIdRecord> = self
                .store
                .smsc()
                .smsc_ids(&self.connector, &wanted)
                .await?
                .into_iter()
                .map(|r| (r.smsc_id.clone(), r))
                .collect();
            for (key, slot) in keys.iter().zip(found.iter_mut()) {
                if slot.is_none() {
                    *slot = stored.get(key).cloned();
                }
            }
        }
        let mut events = Vec::with_capacity(receipts.len());
        let mut unmatched = Vec::new();
        for (i, ((receipt, record), cached)) in receipts.iter().zip(&found).zip(cached).enumerate() {
            let Some(record) = record else {
                unmatched.push(i);
                continue;
            };
            if !cached {
                events.extend(proven_submission(record));
            }
            for segment in record.first_segment..=record.last_segment.max(record.first_segment) {
                let kind = EventKind::DeliveryReport {
                    segment,
                    smsc_message_id: receipt.smsc_id.clone(),
                    state: receipt.state,
                    error_code: receipt.error_code,
                };
                events.push(Event::new(record.message_id, record.account_id, receipt.received_at, kind));
            }
        }
        self.store.record(&events).await?;
        Ok(unmatched)
    }

    /// Queues receipts whose message is not known yet, to be matched again.
    async fn defer(&self, receipts: &[&Receipt]) -> Result<(), QueueError> {
        let retry_at = Utc::now() + TimeDelta::from_std(FIRST_RETRY).unwrap_or_default();
        let mut entries = Vec::with_capacity(receipts.len());
        for receipt in receipts {
            let payload = serde_json::to_vec(receipt).map_err(|e| QueueError::Unexpected(e.into()))?;
            // One entry per receipt fact: the SMSC resending the same receipt adds nothing.
            let id = format!("{}/{:?}", receipt.smsc_id, receipt.state);
            entries.push(NewEntry::new(id, payload).not_before(retry_at));
        }
        self.store.queue().producer(receipt_topic(&self.connector)).publish(entries).await?;
        Ok(())
    }

    /// Records what can be matched now and queues the rest.
    async fn record_or_defer(&self, receipts: &[Receipt]) -> Result<(), QueueError> {
        let unmatched = self.record(receipts).await?;
        self.count("matched", receipts.len() - unmatched.len());
        if !unmatched.is_empty() {
            let deferred: Vec<&Receipt> = unmatched.iter().filter_map(|i| receipts.get(*i)).collect();
            self.defer(&deferred).await?;
            self.count("deferred", deferred.len());
        }
        Ok(())
    }

    fn count(&self, result: &'static str, n: usize) {
        if n > 0 {
            ::metrics::counter!(metrics::RECEIPTS, "connector" => self.connector.clone(), "result" => result)
                .increment(n as u64);
        }
    }
}

type Pending = (Receipt, oneshot::Sender<CommandStatus>);

/// Where the binds hand receipts in.
#[derive(Debug, Clone)]
pub struct Receipts {
    queue: mpsc::Sender<Pending>,
}

impl Receipts {
    /// Starts the task that records receipts in batches; it ends when every
    /// handle is dropped (and its batches are recorded).
    pub fn start(matcher: Arc<ReceiptMatcher>) -> (Self, JoinHandle<()>) {
        let (queue, waiting) = mpsc::channel(4 * BATCH);
        (Self { queue }, tokio::spawn(record_batches(matcher, waiting)))
    }

    /// Records one receipt; answers the status for its `deliver_sm_resp`.
    pub async fn record(&self, receipt: Receipt) -> CommandStatus {
        let (answer, status) = oneshot::channel();
        if self.queue.send((receipt, answer)).await.is_err() {
            return CommandStatus::EsmeRxTAppn;
        }
        status.await.unwrap_or(CommandStatus::EsmeRxTAppn)
    }
}

async fn record_batches(matcher: Arc<ReceiptMatcher>, mut waiting: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let mut batches = tokio::task::JoinSet::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let mut batch = Vec::with_capacity(BATCH);
        if waiting.recv_many(&mut batch, BATCH).await == 0 {
            break;
        }
        let matcher = matcher.clone();
        batches.spawn(async move {
            let _slot = slot;
            let (receipts, answers): (Vec<Receipt>, Vec<oneshot::Sender<CommandStatus>>) = batch.into_iter().unzip();
            let status = match matcher.record_or_defer(&receipts).await {
                Ok(()) => CommandStatus::EsmeRok,
                Err(e) => {
                    // A temporary error makes the SMSC deliver the receipts again later.
                    tracing::warn!(connector = %matcher.connector, error = %e, receipts = receipts.len(), "cannot record receipts");
                    CommandStatus::EsmeRxTAppn
                }
            };
            for answer in answers {
                let _ = answer.send(status);
            }
        });
        while batches.try_join_next().is_some() {}
    }
    while batches.join_next().await.is_some() {}
}

/// The stage that matches deferred receipts again (`dlr.<connector>`).
#[derive(Debug)]
pub struct ReceiptStage {
    topic: String,
    matcher: Arc<ReceiptMatcher>,
    window: Duration,
}

impl ReceiptStage {
    /// The stage for `matcher`'s connector, giving up on a receipt `window` after it arrived.
    pub fn new(matcher: Arc<ReceiptMatcher>, window: Duration) -> Self {
        Self { topic: receipt_topic(&matcher.connector), matcher, window }
    }
}

fn retry_delay(attempts: u32) -> Duration {
    FIRST_RETRY.saturating_mul(1 << attempts.min(16)).min(LONGEST_RETRY)
}

#[async_trait]
impl Stage for ReceiptStage {
    fn name(&self) -> &str {
        &self.topic
    }

    async fn process(&self, consumer: &Consumer, deliveries: Vec<Delivery>) -> Result<(), WorkerError> {
        let mut readable = Vec::with_capacity(deliveries.len());
        let mut settled = Vec::new();
        for delivery in deliveries {
            match delivery.payload_json::<Receipt>() {
                Ok(receipt) => readable.push((delivery, receipt)),
                Err(e) => {
                    tracing::error!(entry = delivery.id(), error = %e, "unreadable deferred receipt; dropped");
                    settled.push(delivery);
                }
            }
        }
        let receipts: Vec<Receipt> = readable.iter().map(|(_, r)| r.clone()).collect();
        let unmatched: HashSet<usize> = self.matcher.record(&receipts).await?.into_iter().collect();
        self.matcher.count("matched_late", receipts.len() - unmatched.len());
        let now = Utc::now();
        let give_up = TimeDelta::from_std(self.window).unwrap_or(TimeDelta::MAX);
        let mut retries = Vec::new();
        for (i, (delivery, receipt)) in readable.into_iter().enumerate() {
            if !unmatched.contains(&i) {
                settled.push(delivery);
            } else if now - receipt.received_at > give_up {
                tracing::warn!(connector = %self.matcher.connector, smsc_id = %receipt.smsc_id, "receipt for no known message; given up");
                self.matcher.count("unmatched", 1);
                settled.push(delivery);
            } else {
                retries.push(delivery);
            }
        }
        consumer.ack_all(settled).await?;
        for delivery in retries {
            let delay = retry_delay(delivery.attempts());
            delivery.nack(delay).await?;
        }
        Ok(())
    }

    async fn dead_lettered(&self, entries: Vec<ClaimedEntry>) -> Result<(), WorkerError> {
        tracing::warn!(connector = %self.matcher.connector, receipts = entries.len(), "deferred receipts dead-lettered");
        self.matcher.count("unmatched", entries.len());
        Ok(())
    }
}
