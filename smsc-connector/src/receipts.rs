//! Delivery receipts: matched to their message through the SMSC id records
//! and recorded as `DeliveryReport` events, one per segment the id stands for.
//!
//! Receipts arrive by the thousand; each `deliver_sm` hands its receipt to
//! one task that takes every receipt waiting, matches them with one read
//! and records them with one write, and only then lets their
//! `deliver_sm_resp`s go: an acknowledged receipt is on disk.
//!
//! A receipt can arrive before the `submit_sm_resp` of its message was
//! recorded (the SMSC delivered faster than we wrote, or the response was
//! lost and the message is being resent). Such a receipt is not dropped: it
//! is queued durably on `dlr.<connector>` and matched again with growing
//! delays, for `receipt_match_window_secs`, then given up and counted.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use rusmpp::CommandStatus;
use tern_core::{Event, EventKind};
use tern_queue::{ClaimedEntry, Consumer, Delivery, NewEntry, QueueError, Store};
use tern_workers::WorkerError;
use tern_workers::runtime::Stage;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::ReceiptIds;
use crate::deliver::Receipt;
use crate::metrics;

/// The topic of a connector's receipts waiting for their message to be known.
pub fn deferred_topic(connector: &str) -> String {
    format!("dlr.{connector}")
}

/// First delay before a deferred receipt is matched again; doubles per try.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(300);
/// Receipts matched and recorded together at most.
const BATCH: usize = 1_000;

/// Matches receipts to messages and records them.
#[derive(Debug)]
pub struct ReceiptMatcher {
    connector: String,
    store: Store,
    ids: ReceiptIds,
}

impl ReceiptMatcher {
    /// A matcher for `connector`'s receipts.
    pub fn new(connector: &str, store: Store, ids: ReceiptIds) -> Self {
        Self { connector: connector.to_owned(), store, ids }
    }

    /// Records the receipts whose message is known; returns the indexes of
    /// the others.
    pub async fn record(&self, receipts: &[Receipt]) -> Result<Vec<usize>, QueueError> {
        let keys: Vec<String> = receipts.iter().map(|r| self.ids.from_receipt(&r.smsc_id)).collect();
        let mut wanted = keys.clone();
        wanted.sort_unstable();
        wanted.dedup();
        let known: std::collections::HashMap<String, tern_queue::SmscIdRecord> = self
            .store
            .smsc()
            .smsc_ids(&self.connector, &wanted)
            .await?
            .into_iter()
            .map(|record| (record.smsc_id.clone(), record))
            .collect();
        let mut events = Vec::with_capacity(receipts.len());
        let mut unmatched = Vec::new();
        for (i, (receipt, key)) in receipts.iter().zip(&keys).enumerate() {
            let Some(record) = known.get(key) else {
                unmatched.push(i);
                continue;
            };
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
        self.store.queue().producer(deferred_topic(&self.connector)).publish(entries).await?;
        Ok(())
    }

    fn count(&self, result: &'static str, n: usize) {
        ::metrics::counter!(metrics::RECEIPTS, "connector" => self.connector.clone(), "result" => result)
            .increment(n as u64);
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
    /// handle is dropped.
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
    let mut batch = Vec::with_capacity(BATCH);
    while waiting.recv_many(&mut batch, BATCH).await > 0 {
        let (receipts, answers): (Vec<Receipt>, Vec<oneshot::Sender<CommandStatus>>) = batch.drain(..).unzip();
        let status = match record_or_defer(&matcher, &receipts).await {
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
    }
}

async fn record_or_defer(matcher: &ReceiptMatcher, receipts: &[Receipt]) -> Result<(), QueueError> {
    let unmatched = matcher.record(receipts).await?;
    matcher.count("matched", receipts.len() - unmatched.len());
    if !unmatched.is_empty() {
        let deferred: Vec<&Receipt> = unmatched.iter().filter_map(|i| receipts.get(*i)).collect();
        matcher.defer(&deferred).await?;
        matcher.count("deferred", deferred.len());
    }
    Ok(())
}

/// The stage that matches deferred receipts again (`dlr.<connector>`).
#[derive(Debug)]
pub struct DeferredReceipts {
    topic: String,
    matcher: Arc<ReceiptMatcher>,
    window: Duration,
}

impl DeferredReceipts {
    /// The stage for `matcher`'s connector, giving up on a receipt `window` after it arrived.
    pub fn new(matcher: Arc<ReceiptMatcher>, window: Duration) -> Self {
        Self { topic: deferred_topic(&matcher.connector), matcher, window }
    }
}

fn retry_delay(attempts: u32) -> Duration {
    FIRST_RETRY.saturating_mul(1 << attempts.min(16)).min(LONGEST_RETRY)
}

#[async_trait]
impl Stage for DeferredReceipts {
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
        let unmatched: std::collections::HashSet<usize> = self.matcher.record(&receipts).await?.into_iter().collect();
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
