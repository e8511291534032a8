//! The `mt` stage: every accepted (or released) message goes through the
//! handler chain, and what the chain decided is recorded, forwarded to the
//! chosen connector's queue and acknowledged, in that order, so a crash at
//! any point redoes the batch with the same outcome (every write is
//! idempotent per message).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tern_core::{AccountId, Event, EventKind, MessageId};
use tern_handlers::billing::{self, reached_smsc};
use tern_handlers::{Chain, Dispatch, Mt, MtEntry, Outbound, Outcome};
use tern_queue::{Account, ClaimedEntry, Consumer, Delivery, NackOutcome, NewEntry, Store};

use crate::WorkerError;
use crate::metrics::settled;
use crate::runtime::Stage;

/// Topic of messages waiting for the pipeline.
pub const MT_TOPIC: &str = "mt";
/// Stage name in `Retried` and `DeadLettered` events.
const STAGE: &str = "mt";

/// The `mt` stage.
#[derive(Debug)]
pub struct MtStage {
    store: Store,
    chain: Chain<Mt>,
}

impl MtStage {
    /// A stage running `chain` over `store`.
    pub fn new(store: Store, chain: Chain<Mt>) -> Self {
        Self { store, chain }
    }

    async fn accounts(&self, ids: HashSet<AccountId>) -> Result<HashMap<AccountId, Arc<Account>>, WorkerError> {
        let mut found = HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(account) = self.store.accounts().account(id).await? {
                found.insert(id, Arc::new(account));
            }
        }
        Ok(found)
    }
}

/// One delivery and what became of it.
struct Item {
    delivery: Delivery,
    decision: Decision,
}

enum Decision {
    /// Worked on by the chain (index into the items given to it).
    Chain(usize),
    /// Settled without the chain, recording these facts (none for a message already finished).
    Direct(Box<MtEntry>, Vec<EventKind>),
    /// The entry cannot be read: leave it to be retried, then dead-lettered.
    Unreadable(String),
}

fn account_of(entry: &MtEntry) -> Option<AccountId> {
    entry.accepted.account_id
}

/// An entry read once: the entry, its message's fields and its owner.
type Readable = (MtEntry, Outbound, AccountId);

fn read(delivery: &Delivery) -> Result<Readable, String> {
    let entry: MtEntry = delivery.payload_json().map_err(|e| e.to_string())?;
    match (Outbound::from_kind(&entry.accepted.kind), account_of(&entry)) {
        (Some(message), Some(account)) => Ok((entry, message, account)),
        _ => Err("the entry is not an accepted message with an account".to_owned()),
    }
}

#[async_trait]
impl Stage for MtStage {
    fn name(&self) -> &str {
        STAGE
    }

    #[tracing::instrument(skip_all, fields(entries = deliveries.len()))]
    async fn process(&self, consumer: &Consumer, deliveries: Vec<Delivery>) -> Result<(), WorkerError> {
        let now = Utc::now();
        let entries: Vec<Result<Readable, String>> = deliveries.iter().map(read).collect();
        let readable: Vec<&Readable> = entries.iter().filter_map(|e| e.as_ref().ok()).collect();
        let accounts = self.accounts(readable.iter().map(|(_, _, account)| *account).collect()).await?;
        let keys: Vec<(AccountId, MessageId)> =
            readable.iter().map(|(entry, _, account)| (*account, entry.accepted.message_id)).collect();
        let finished = self.store.messages().finished(&keys).await?;
        // Only redeliveries need their history: handlers reuse what was decided before.
        let redelivered: Vec<MessageId> = deliveries
            .iter()
            .zip(&entries)
            .filter(|(d, _)| d.attempts() > 1)
            .filter_map(|(_, e)| e.as_ref().ok().map(|(entry, _, _)| entry.accepted.message_id))
            .collect();
        let mut histories: HashMap<MessageId, Vec<Event>> = HashMap::new();
        for event in self.store.journal().messages_events(&redelivered).await? {
            histories.entry(event.message_id).or_default().push(event);
        }

        let mut items = Vec::with_capacity(deliveries.len());
        let mut work: Vec<Mt> = Vec::new();
        for (delivery, entry) in deliveries.into_iter().zip(entries) {
            let decision = match entry {
                Err(reason) => Decision::Unreadable(reason),
                Ok((entry, message, owner)) => {
                    let id = entry.accepted.message_id;
                    match accounts.get(&owner).cloned() {
                        _ if finished.contains(&id) => Decision::Direct(Box::new(entry), Vec::new()),
                        None => {
                            let rejected = EventKind::Rejected {
                                code: "unknown_account".into(),
                                detail: "the message's account no longer exists".into(),
                            };
                            Decision::Direct(Box::new(entry), vec![rejected])
                        }
                        Some(_) if message.expires_at <= now => {
                            Decision::Direct(Box::new(entry), vec![EventKind::Expired])
                        }
                        Some(account) => {
                            work.push(Mt {
                                history: histories.remove(&id).unwrap_or_default(),
                                entry,
                                message,
                                account,
                                delivery_attempt: delivery.attempts(),
                                route: None,
                                facts: Vec::new(),
                                now,
                            });
                            Decision::Chain(work.len() - 1)
                        }
                    }
                }
            };
            items.push(Item { delivery, decision });
        }

        let outcomes = self.chain.run(&mut work).await?;
        self.settle(consumer, items, work, outcomes, now).await
    }

    async fn dead_lettered(&self, entries: Vec<ClaimedEntry>) -> Result<(), WorkerError> {
        let now = Utc::now();
        let mut events = Vec::new();
        for entry in entries {
            let Ok(mt) = serde_json::from_slice::<MtEntry>(&entry.payload) else { continue };
            let last_error = "its worker stopped before finishing it, every time".to_owned();
            events.extend(self.give_up(&mt, entry.attempts, last_error, now).await?);
        }
        self.store.record(&events).await?;
        settled(STAGE, "dead", events.len());
        Ok(())
    }
}

impl MtStage {
    async fn settle(
        &self,
        consumer: &Consumer,
        items: Vec<Item>,
        work: Vec<Mt>,
        outcomes: Vec<Outcome>,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), WorkerError> {
        let mut events = Vec::new();
        let mut dispatch: BTreeMap<String, Vec<NewEntry>> = BTreeMap::new();
        let mut acks = Vec::new();
        let mut retries = Vec::new();
        for item in items {
            match item.decision {
                Decision::Unreadable(reason) => {
                    tracing::error!(entry = item.delivery.id(), %reason, "unreadable mt entry");
                    retries.push((item.delivery, Duration::from_secs(60), reason, None));
                }
                Decision::Direct(entry, facts) => {
                    let redelivered = item.delivery.attempts() > 1 || entry.route_attempt.unwrap_or(1) > 1;
                    events.extend(self.finish(&entry, &[], facts, redelivered, now).await?);
                    acks.push(item.delivery);
                }
                Decision::Chain(i) => {
                    let mt = &work[i];
                    let owner = Some(mt.account.id);
                    let record = |kind: EventKind| Event::new(mt.id(), owner, now, kind);
                    match &outcomes[i] {
                        Outcome::Continue => {
                            events.extend(mt.facts.iter().cloned().map(record));
                            if let Some(route) = &mt.route {
                                let payload = Dispatch {
                                    accepted: mt.entry.accepted.clone(),
                                    connector: route.connector.clone(),
                                    route: route.route.clone(),
                                    route_attempt: mt.route_attempt(),
                                };
                                let entry = NewEntry::new(
                                    format!("{}:{}", mt.id(), mt.route_attempt()),
                                    serde_json::to_vec(&payload).map_err(anyhow::Error::from)?,
                                );
                                dispatch.entry(Dispatch::topic(&route.connector)).or_default().push(entry);
                            }
                            acks.push(item.delivery);
                        }
                        Outcome::Stop(terminal) => {
                            let mut facts = mt.facts.clone();
                            facts.push(terminal.clone());
                            let redelivered = mt.delivery_attempt > 1 || mt.route_attempt() > 1;
                            events.extend(self.finish(&mt.entry, &mt.history, facts, redelivered, now).await?);
                            acks.push(item.delivery);
                        }
                        Outcome::RetryLater { after, reason } => {
                            events.extend(mt.facts.iter().cloned().map(record));
                            retries.push((item.delivery, *after, reason.clone(), Some(i)));
                        }
                    }
                }
            }
        }
        self.store.record(&events).await?;
        for (topic, entries) in dispatch {
            self.store.queue().producer(topic).publish(entries).await?;
        }
        settled(STAGE, "ack", acks.len());
        let lost = consumer.ack_all(acks).await?;
        if !lost.is_empty() {
            tracing::warn!(lost = lost.len(), "leases lost before ack; those entries will be redone (idempotently)");
        }
        for (delivery, after, reason, index) in retries {
            let attempts = delivery.attempts();
            let retry_at = now + chrono::TimeDelta::from_std(after).unwrap_or_default();
            let entry = index.map(|i| &work[i].entry);
            match delivery.nack(after).await? {
                NackOutcome::Retrying { .. } => {
                    settled(STAGE, "retry", 1);
                    if let Some(entry) = entry {
                        let kind = EventKind::Retried { stage: STAGE.into(), attempt: attempts, reason, retry_at };
                        self.store
                            .record(&[Event::new(entry.accepted.message_id, account_of(entry), now, kind)])
                            .await?;
                    }
                }
                NackOutcome::DeadLettered => {
                    settled(STAGE, "dead", 1);
                    if let Some(entry) = entry {
                        let events = self.give_up(entry, attempts, reason, now).await?;
                        self.store.record(&events).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The events that finish a message with `facts` (the last one terminal),
    /// plus its refund when it was charged and no SMSC ever took it.
    async fn finish(
        &self,
        entry: &MtEntry,
        history: &[Event],
        facts: Vec<EventKind>,
        redelivered: bool,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<Event>, WorkerError> {
        let id = entry.accepted.message_id;
        let owner = account_of(entry);
        let charged =
            facts.iter().chain(history.iter().map(|e| &e.kind)).any(|k| matches!(k, EventKind::Charged { .. }));
        let facts_empty = facts.is_empty();
        let mut events: Vec<Event> = facts.into_iter().map(|kind| Event::new(id, owner, now, kind)).collect();
        // A redelivered or rerouted message may have been charged before (and
        // the events of a crashed delivery lost with it): the refund asks the ledger.
        if !facts_empty && (charged || redelivered) && !reached_smsc(history) {
            let reason = events.last().map_or("failed", |e| e.kind.type_name());
            events.extend(billing::refund(&self.store, id, owner, reason, now).await?);
        }
        Ok(events)
    }

    async fn give_up(
        &self,
        entry: &MtEntry,
        attempts: u32,
        last_error: String,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<Event>, WorkerError> {
        let history = self.store.journal().message_events(entry.accepted.message_id).await?;
        let dead = EventKind::DeadLettered { stage: STAGE.into(), attempts, last_error };
        let charged = history.iter().any(|e| matches!(e.kind, EventKind::Charged { .. }));
        let mut events = vec![Event::new(entry.accepted.message_id, account_of(entry), now, dead)];
        if charged && !reached_smsc(&history) {
            events.extend(
                billing::refund(&self.store, entry.accepted.message_id, account_of(entry), "dead_lettered", now)
                    .await?,
            );
        }
        Ok(events)
    }
}
