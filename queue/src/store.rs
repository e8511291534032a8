//! The store: queue and journal of one backend, and the atomic accept.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tern_core::{Event, MessageId, MessageStatus};

use crate::{Accounts, Contacts, Coordination, Journal, Messages, NewEntry, Queue, Result, Smsc, StatusUpdate};

/// Writing a message's first events and its first queue entry as one
/// crash-atomic step. See `docs/architecture.md`, "Accepting a message".
#[async_trait]
pub trait AcceptBackend: Send + Sync + fmt::Debug + 'static {
    /// Makes `events` and `entries` (on `topic`) durable together: after it
    /// returns Ok both exist, or one will be derived from the other by
    /// [`AcceptBackend::repair`] whatever crashes in between.
    async fn accept(&self, events: &[Event], topic: &str, entries: Vec<NewEntry>) -> Result<()>;

    /// Finishes accepts that a crash interrupted; returns how many entries it
    /// had to publish. Idempotent; safe to run from several processes.
    async fn repair(&self) -> Result<usize>;
}

/// Recording a stage's events: appending them to the journal and refreshing
/// the indexed status of their messages (what [`Store::record`] does).
///
/// Contract: afterwards every event is journaled, and each touched
/// message's indexed status is the fold of its whole journal, whatever
/// other recorders did concurrently.
#[async_trait]
pub trait RecordBackend: Send + Sync + fmt::Debug + 'static {
    /// Appends `events` and refreshes the index; returns how many events were new.
    async fn record(&self, events: &[Event]) -> Result<usize>;
}

/// The portable recorder: append, then read the touched messages' journals
/// back, fold and update the index. Reading after appending is what makes
/// concurrent recorders safe: of two recording facts about one message, the
/// later reader sees both, and its update (the later `at`, or at the same
/// `at` the longer history) wins.
#[derive(Debug, Clone)]
pub struct AppendThenFold {
    journal: Journal,
    messages: Messages,
}

impl AppendThenFold {
    /// A recorder over one backend's journal and index.
    pub fn new(journal: Journal, messages: Messages) -> Self {
        Self { journal, messages }
    }
}

#[async_trait]
impl RecordBackend for AppendThenFold {
    async fn record(&self, events: &[Event]) -> Result<usize> {
        let appended = self.journal.append(events).await?;
        let mut touched: Vec<MessageId> = events.iter().map(|e| e.message_id).collect();
        touched.sort_unstable();
        touched.dedup();
        let history = self.journal.messages_events(&touched).await?;
        self.messages.update_statuses(&status_updates(history)).await?;
        Ok(appended)
    }
}

/// The indexed status of each message whose events these are: the fold of
/// them, stamped with the latest event's time. Messages without an owner
/// (inbound ones not matched to an account) are not indexed.
pub fn status_updates(events: impl IntoIterator<Item = Event>) -> Vec<StatusUpdate> {
    let mut histories: HashMap<MessageId, Vec<Event>> = HashMap::new();
    for event in events {
        histories.entry(event.message_id).or_default().push(event);
    }
    let mut updates = Vec::with_capacity(histories.len());
    for (message_id, history) in histories {
        let at = history.iter().map(|e| e.at).max();
        let owner = history.iter().find_map(|e| e.account_id);
        let events = u32::try_from(history.len()).unwrap_or(u32::MAX);
        if let (Some(status), Some(at), Some(account_id)) = (MessageStatus::fold(&history), at, owner) {
            updates.push(StatusUpdate { account_id, message_id, status, at, events });
        }
    }
    updates
}

/// Queue, journal and accept of one configured backend.
#[derive(Debug, Clone)]
pub struct Store {
    queue: Queue,
    journal: Journal,
    accept: Arc<dyn AcceptBackend>,
    accounts: Accounts,
    messages: Messages,
    contacts: Contacts,
    coordination: Coordination,
    smsc: Smsc,
    recorder: Arc<dyn RecordBackend>,
    backend_name: &'static str,
}

/// The parts of one backend that a [`Store`] is assembled from.
#[derive(Debug, Clone)]
pub struct StoreParts {
    /// Work queues.
    pub queue: Queue,
    /// Event journal.
    pub journal: Journal,
    /// Atomic accept.
    pub accept: Arc<dyn AcceptBackend>,
    /// Accounts, keys, balances.
    pub accounts: Accounts,
    /// Message index.
    pub messages: Messages,
    /// Opt-outs, conversations, inbound messages.
    pub contacts: Contacts,
    /// Leases and settings.
    pub coordination: Coordination,
    /// SMSC id records and inbound parts.
    pub smsc: Smsc,
    /// Appending events and refreshing the index.
    pub recorder: Arc<dyn RecordBackend>,
}

impl Store {
    /// Assembles a store from one backend's parts.
    pub fn new(parts: StoreParts, backend_name: &'static str) -> Self {
        let StoreParts { queue, journal, accept, accounts, messages, contacts, coordination, smsc, recorder } = parts;
        Self { queue, journal, accept, accounts, messages, contacts, coordination, smsc, recorder, backend_name }
    }

    /// What connectors keep: SMSC message ids, parts of inbound messages.
    pub fn smsc(&self) -> &Smsc {
        &self.smsc
    }

    /// Opt-outs, conversations, inbound messages.
    pub fn contacts(&self) -> &Contacts {
        &self.contacts
    }

    /// Leases and settings shared by the processes.
    pub fn coordination(&self) -> &Coordination {
        &self.coordination
    }

    /// Accounts, API keys, balances, idempotency records.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The message index (listing, batch counts).
    pub fn messages(&self) -> &Messages {
        &self.messages
    }

    /// The work queues.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The event journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// `"sqlite"` or `"mongodb"`.
    pub fn backend_name(&self) -> &'static str {
        self.backend_name
    }

    /// Records accepted messages: their events in the journal and their first
    /// queue entries, crash-atomically.
    ///
    /// `Ok` means both are durable. An error means the outcome is unknown:
    /// on MongoDB an accept that failed after its intent was written is still
    /// finished by [`Store::repair`]. Callers retry with the same event and
    /// entry ids (they are derived from the message), which makes the retry a
    /// no-op if the first attempt went through.
    pub async fn accept(&self, events: &[Event], topic: &str, entries: Vec<NewEntry>) -> Result<()> {
        crate::queue::check_topic(topic)?;
        self.accept.accept(events, topic, entries).await
    }

    /// Appends events a stage produced and refreshes the indexed status of
    /// the messages they are about. Returns how many events were new.
    ///
    /// The index is refreshed even when every event was already journaled: a
    /// stage that crashed between the two steps and redoes its work (it did
    /// not ack) repairs the index that way.
    pub async fn record(&self, events: &[Event]) -> Result<usize> {
        if events.is_empty() {
            return Ok(0);
        }
        self.recorder.record(events).await
    }

    /// Finishes accepts a crash interrupted (see [`AcceptBackend::repair`]).
    pub async fn repair(&self) -> Result<usize> {
        self.accept.repair().await
    }
}
