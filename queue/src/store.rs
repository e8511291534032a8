//! The store: queue and journal of one backend, and the atomic accept.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tern_core::Event;

use crate::{Journal, NewEntry, Queue, Result};

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

/// Queue, journal and accept of one configured backend.
#[derive(Debug, Clone)]
pub struct Store {
    queue: Queue,
    journal: Journal,
    accept: Arc<dyn AcceptBackend>,
    backend_name: &'static str,
}

impl Store {
    /// Assembles a store from one backend's parts.
    pub fn new(queue: Queue, journal: Journal, accept: Arc<dyn AcceptBackend>, backend_name: &'static str) -> Self {
        Self { queue, journal, accept, backend_name }
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

    /// Finishes accepts a crash interrupted (see [`AcceptBackend::repair`]).
    pub async fn repair(&self) -> Result<usize> {
        self.accept.repair().await
    }
}
