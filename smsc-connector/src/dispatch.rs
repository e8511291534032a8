//! The stage that sends: it consumes `smsc.<connector>` (the `Dispatch`
//! entries routing published), sends each message's segments and records
//! what the SMSC answered.
//!
//! Per claimed batch: messages already finished (cancelled, expired by the
//! scheduler) are dropped, messages past their validity expire here, and a
//! redelivered message sends only the segments its journal does not show
//! as submitted. Then every segment goes out at once (the binds' windows
//! and the token bucket pace them), and the answers are recorded in this
//! order: SMSC id records (so a receipt can be matched), the journal (and
//! index), then the acks. A crash anywhere redoes the batch; what was
//! recorded is not sent again, so only a segment whose response was never
//! recorded can reach the handset twice (see `docs/architecture.md`,
//! "Duplicates").

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable as _};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use tern_core::{Event, EventKind, MessageId};
use tern_handlers::billing::{self, reached_smsc};
use tern_handlers::{Dispatch, Outbound};
use tern_queue::{ClaimedEntry, Consumer, Delivery, NackOutcome, QueueError, SmscIdRecord, Store};
use tern_workers::WorkerError;
use tern_workers::runtime::Stage;

use crate::config::ConnectorConfig;
use crate::link::{Link, THROTTLING};
use crate::metrics;
use crate::receipts::ReceiptMatcher;
use crate::session::RequestError;
use crate::submit::{Piece, pieces};

/// Attempts at recording the SMSC's answers while the store is away: about
/// two minutes with the backoff above, then the batch fails and the window
/// of docs/architecture.md ("Duplicates") applies.
const RECORD_ATTEMPTS: usize = 30;

/// Stage name in `Retried` and `DeadLettered` events.
pub const STAGE: &str = "connector";

/// Answers worth trying again besides throttling: a system error, a bind in
/// the wrong state, an application's temporary error.
const RETRYABLE: [u32; 3] = [0x08, 0x04, 0x64];

/// The sending stage of one connector.
#[derive(Debug)]
pub struct DispatchStage {
    connector: String,
    topic: String,
    store: Store,
    link: Arc<Link>,
    config: ConnectorConfig,
    receipts: Arc<ReceiptMatcher>,
}

impl DispatchStage {
    /// The stage of connector `name`, sending through `link`; the SMSC ids it
    /// records are handed to `receipts`, which then matches most receipts
    /// without reading them back.
    pub fn new(
        name: &str,
        store: Store,
        link: Arc<Link>,
        config: ConnectorConfig,
        receipts: Arc<ReceiptMatcher>,
    ) -> Self {
        Self { connector: name.to_owned(), topic: Dispatch::topic(name), store, link, config, receipts }
    }
}

/// What became of one piece.
#[derive(Debug, Clone)]
enum Answer {
    Accepted(String),
    Throttled(u32),
    Retryable(u32),
    Rejected(u32),
    /// No response: the SMSC may have it (a resend may duplicate it).
    Unknown(RequestError),
    /// Never sent.
    NotSent,
}

/// One message of the batch and what is to be done with it.
struct Job {
    delivery: Delivery,
    dispatch: Dispatch,
    history: Vec<Event>,
    /// Pieces still to send, each with its answer once sent.
    pieces: Vec<(Piece, Option<Answer>)>,
    /// Set when it cannot be sent at all (a permanent failure).
    unsendable: Option<String>,
}

impl Job {
    fn id(&self) -> MessageId {
        self.dispatch.accepted.message_id
    }

    fn owner(&self) -> Option<tern_core::AccountId> {
        self.dispatch.accepted.account_id
    }
}

#[async_trait]
impl Stage for DispatchStage {
    fn name(&self) -> &str {
        &self.topic
    }

    async fn ready(&self) {
        self.link.wait_up().await;
    }

    #[tracing::instrument(skip_all, fields(connector = %self.connector, entries = deliveries.len()))]
    async fn process(&self, consumer: &Consumer, deliveries: Vec<Delivery>) -> Result<(), WorkerError> {
        let now = Utc::now();
        let mut readable = Vec::with_capacity(deliveries.len());
        let mut unreadable = Vec::new();
        for delivery in deliveries {
            match delivery.payload_json::<Dispatch>() {
                Ok(dispatch) => match Outbound::from_kind(&dispatch.accepted.kind) {
                    Some(message) => readable.push((delivery, dispatch, message)),
                    None => unreadable.push(delivery),
                },
                Err(_) => unreadable.push(delivery),
            }
        }
        for delivery in unreadable {
            tracing::error!(entry = delivery.id(), "unreadable dispatch entry");
            delivery.nack(Duration::from_secs(60)).await?;
        }
        let keys: Vec<_> =
            readable.iter().filter_map(|(_, d, _)| d.accepted.account_id.map(|a| (a, d.accepted.message_id))).collect();
        let finished = self.store.messages().finished(&keys).await?;
        let redelivered: Vec<MessageId> =
            readable.iter().filter(|(d, _, _)| d.attempts() > 1).map(|(_, x, _)| x.accepted.message_id).collect();
        let mut histories: HashMap<MessageId, Vec<Event>> = HashMap::new();
        for event in self.store.journal().messages_events(&redelivered).await? {
            histories.entry(event.message_id).or_default().push(event);
        }

        let mut events = Vec::new();
        let mut acks = Vec::new();
        let mut jobs = Vec::new();
        for (delivery, dispatch, message) in readable {
            let id = dispatch.accepted.message_id;
            if finished.contains(&id) {
                // Cancelled, or expired by the scheduler: re-checked here, just before sending.
                acks.push(delivery);
                continue;
            }
            let history = histories.remove(&id).unwrap_or_default();
            if message.expires_at <= now {
                events.extend(
                    self.finish(id, dispatch.accepted.account_id, &history, vec![EventKind::Expired], now).await?,
                );
                acks.push(delivery);
                continue;
            }
            let sent = submitted_segments(&history);
            let (pending, unsendable) = match pieces(&message, id, &self.config) {
                Ok(all) => (all.into_iter().filter(|p| !(p.first..=p.last).all(|s| sent.contains(&s))).collect(), None),
                Err(why) => (Vec::new(), Some(why)),
            };
            if pending.is_empty() && unsendable.is_none() {
                acks.push(delivery);
                continue;
            }
            let pieces = pending.into_iter().map(|p| (p, None)).collect();
            jobs.push(Job { delivery, dispatch, history, pieces, unsendable });
        }

        self.send(&mut jobs).await;
        self.settle(consumer, jobs, events, acks, now).await
    }

    async fn dead_lettered(&self, entries: Vec<ClaimedEntry>) -> Result<(), WorkerError> {
        let now = Utc::now();
        let mut events = Vec::new();
        for entry in entries {
            let Ok(dispatch) = serde_json::from_slice::<Dispatch>(&entry.payload) else { continue };
            let id = dispatch.accepted.message_id;
            let history = self.store.journal().message_events(id).await?;
            let dead = EventKind::DeadLettered {
                stage: STAGE.into(),
                attempts: entry.attempts,
                last_error: "its connector stopped before finishing it, every time".into(),
            };
            events.extend(self.finish(id, dispatch.accepted.account_id, &history, vec![dead], now).await?);
        }
        self.store.record(&events).await?;
        Ok(())
    }
}

/// Segments the journal shows as taken by an SMSC.
fn submitted_segments(history: &[Event]) -> BTreeSet<u16> {
    history
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::SubmittedToSmsc { segment, .. } => Some(segment),
            _ => None,
        })
        .collect()
}

impl DispatchStage {
    /// Sends every pending piece of the batch at once and notes the answers.
    async fn send(&self, jobs: &mut [Job]) {
        let sends = jobs.iter().enumerate().flat_map(|(j, job)| {
            job.pieces.iter().enumerate().map(move |(p, (piece, _))| {
                let pdu = piece.pdu.clone();
                async move { (j, p, self.link.submit(pdu).await) }
            })
        });
        for (j, p, result) in join_all(sends).await {
            let answer = match result {
                Ok(response) if response.status == 0 => Answer::Accepted(response.message_id),
                Ok(response) if THROTTLING.contains(&response.status) => Answer::Throttled(response.status),
                Ok(response) if RETRYABLE.contains(&response.status) => Answer::Retryable(response.status),
                Ok(response) => Answer::Rejected(response.status),
                Err(RequestError::NotSent) => Answer::NotSent,
                Err(e) => Answer::Unknown(e),
            };
            let result = match &answer {
                Answer::Accepted(_) => "ok",
                Answer::Throttled(_) => "throttled",
                Answer::Retryable(_) => "retryable",
                Answer::Rejected(_) => "rejected",
                Answer::Unknown(RequestError::Timeout) => "timeout",
                Answer::Unknown(_) => "link_lost",
                Answer::NotSent => "not_sent",
            };
            ::metrics::counter!(metrics::SUBMITS, "connector" => self.connector.clone(), "result" => result)
                .increment(1);
            if matches!(answer, Answer::Unknown(_)) {
                ::metrics::counter!(metrics::UNKNOWN_OUTCOMES, "connector" => self.connector.clone()).increment(1);
            }
            if let Some(slot) = jobs.get_mut(j).and_then(|job| job.pieces.get_mut(p)) {
                slot.1 = Some(answer);
            }
        }
    }

    /// Records the answers, then acks, retries or finishes each message.
    async fn settle(
        &self,
        consumer: &Consumer,
        jobs: Vec<Job>,
        mut events: Vec<Event>,
        mut acks: Vec<Delivery>,
        now: DateTime<Utc>,
    ) -> Result<(), WorkerError> {
        let mut records = Vec::new();
        let mut retries = Vec::new();
        for job in jobs {
            let (id, owner) = (job.id(), job.owner());
            let record = |kind: EventKind| Event::new(id, owner, now, kind);
            let mut submitted = Vec::new();
            let mut rejected = None;
            let mut retry: Option<(u32, String, bool)> = None;
            for (piece, answer) in &job.pieces {
                match answer {
                    Some(Answer::Accepted(smsc_id)) => {
                        records.push(SmscIdRecord {
                            connector: self.connector.clone(),
                            smsc_id: self.config.receipt_ids.from_response(smsc_id),
                            message_id: id,
                            account_id: owner,
                            first_segment: piece.first,
                            last_segment: piece.last,
                            at: now,
                        });
                        for segment in piece.first..=piece.last {
                            submitted.push(record(EventKind::SubmittedToSmsc {
                                connector: self.connector.clone(),
                                segment,
                                smsc_message_id: smsc_id.clone(),
                            }));
                        }
                    }
                    Some(Answer::Rejected(status)) => {
                        rejected.get_or_insert((piece.first, *status));
                    }
                    Some(Answer::Throttled(status) | Answer::Retryable(status)) => {
                        retry.get_or_insert((*status, format!("the SMSC answered {status:#010x}"), true));
                    }
                    Some(Answer::Unknown(e)) => {
                        retry.get_or_insert((0, e.to_string(), true));
                    }
                    Some(Answer::NotSent) | None => {
                        retry.get_or_insert((0, "no bind was up".into(), false));
                    }
                }
            }
            let reached = !submitted.is_empty() || reached_smsc(&job.history);
            events.extend(submitted);
            if let Some(why) = &job.unsendable {
                let failed = EventKind::Failed { code: "unsendable".into(), detail: why.clone(), smpp_status: None };
                events.extend(self.finish(id, owner, &job.history, vec![failed], now).await?);
                acks.push(job.delivery);
            } else if let Some((segment, status)) = rejected {
                let facts = vec![
                    EventKind::SmscRejected { connector: self.connector.clone(), segment, command_status: status },
                    EventKind::Failed {
                        code: "smsc_rejected".into(),
                        detail: format!("the SMSC refused segment {segment} with status {status:#010x}"),
                        smpp_status: Some(status),
                    },
                ];
                if reached {
                    events.extend(facts.into_iter().map(record));
                } else {
                    events.extend(self.finish(id, owner, &job.history, facts, now).await?);
                }
                acks.push(job.delivery);
            } else if let Some(retry) = retry {
                retries.push((job, retry, reached));
            } else {
                acks.push(job.delivery);
            }
        }
        // Ids first: a receipt that finds the event must find its message
        // too. The cache last: a receipt matched from it follows a recorded
        // submission (see `receipts`). The SMSC has answered: a batch given
        // back before that is recorded would be sent again, so a store that
        // is away is waited out while the runner keeps extending the leases.
        let record_answers = || async {
            self.store.smsc().put_smsc_ids(&records).await?;
            self.store.record(&events).await
        };
        record_answers
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_jitter()
                    .with_max_times(RECORD_ATTEMPTS),
            )
            .when(QueueError::is_transient)
            .notify(|e, wait| tracing::warn!(error = %e, retry_in = ?wait, "cannot record the SMSC's answers yet"))
            .await?;
        self.receipts.remember(&records);
        let lost = consumer.ack_all(acks).await?;
        if !lost.is_empty() {
            tracing::warn!(lost = lost.len(), "leases lost before ack; those messages will be checked again");
        }
        for (job, (status, reason, counts), reached) in retries {
            self.retry(job, status, reason, counts, reached, now).await?;
        }
        Ok(())
    }

    /// Gives a message back to the queue with a delay growing per attempt;
    /// records why, or gives up when its attempts are spent.
    async fn retry(
        &self,
        job: Job,
        status: u32,
        reason: String,
        counts: bool,
        reached: bool,
        now: DateTime<Utc>,
    ) -> Result<(), WorkerError> {
        let (id, owner) = (job.id(), job.owner());
        let attempt = job.delivery.attempts();
        if !counts {
            // No bind was up: nothing happened to the message; it waits, unpenalised.
            job.delivery.nack(Duration::from_secs(1)).await?;
            return Ok(());
        }
        let delay = self.retry_delay(attempt);
        let retry_at = now + chrono::TimeDelta::from_std(delay).unwrap_or_default();
        let mut events = vec![Event::new(
            id,
            owner,
            now,
            EventKind::SmscThrottled { connector: self.connector.clone(), command_status: status, attempt },
        )];
        match job.delivery.nack(delay).await? {
            NackOutcome::Retrying { .. } => {
                let kind = EventKind::Retried { stage: STAGE.into(), attempt, reason, retry_at };
                events.push(Event::new(id, owner, now, kind));
            }
            NackOutcome::DeadLettered => {
                let dead = EventKind::DeadLettered { stage: STAGE.into(), attempts: attempt, last_error: reason };
                if reached {
                    events.push(Event::new(id, owner, now, dead));
                } else {
                    events.extend(self.finish(id, owner, &job.history, vec![dead], now).await?);
                }
            }
        }
        self.store.record(&events).await?;
        Ok(())
    }

    fn retry_delay(&self, attempt: u32) -> Duration {
        let base =
            Duration::from_millis(self.config.retry_min_ms).saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let capped = base.min(Duration::from_millis(self.config.retry_max_ms));
        // Up to a quarter more, so retries of one throttled batch spread out.
        capped + capped.mul_f64(rand::random::<f64>() / 4.0)
    }

    /// The events that end a message with `facts`, and its refund when no
    /// SMSC ever took a segment of it.
    async fn finish(
        &self,
        id: MessageId,
        owner: Option<tern_core::AccountId>,
        history: &[Event],
        facts: Vec<EventKind>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, WorkerError> {
        let reason = facts.last().map_or("failed", EventKind::type_name);
        let mut events: Vec<Event> = facts.into_iter().map(|kind| Event::new(id, owner, now, kind)).collect();
        if !reached_smsc(history) {
            events.extend(billing::refund(&self.store, id, owner, reason, now).await?);
        }
        Ok(events)
    }
}
