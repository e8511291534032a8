//! The event journal contract: append-only, idempotent per event id, readable
//! per message and as one gap-free stream.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tern_core::{Event, MessageId};

use crate::Result;

/// A place in the journal's stream. Positions increase in commit order (a
/// position can never commit after a higher one is visible); `Position::START`
/// is before the first event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    /// Before the first event.
    pub const START: Self = Self(0);
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event with its place in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// Where it is.
    pub position: Position,
    /// What it says.
    pub event: Event,
}

/// What one journal backend implements. Callers use [`Journal`].
///
/// Contract (checked by `test_suite`): re-appending an event id is a no-op;
/// `read_from` returns records in position order with no gaps, and never
/// returns a position before an event that will later commit below it.
#[async_trait]
pub trait JournalBackend: Send + Sync + fmt::Debug + 'static {
    /// Appends events durably; returns how many were new.
    async fn append(&self, events: &[Event]) -> Result<usize>;
    /// One message's events, in journal order.
    async fn message_events(&self, message_id: MessageId) -> Result<Vec<Event>>;
    /// The events of several messages, each message's in journal order.
    async fn messages_events(&self, message_ids: &[MessageId]) -> Result<Vec<Event>> {
        let mut all = Vec::new();
        for id in message_ids {
            all.extend(self.message_events(*id).await?);
        }
        Ok(all)
    }
    /// Up to `limit` records after `after`, in order, gap-free.
    async fn read_from(&self, after: Position, limit: usize) -> Result<Vec<JournalRecord>>;
    /// The position of the last event a reader can see now.
    async fn head(&self) -> Result<Position>;
}

/// The journal as the rest of Tern sees it, whatever the backend.
#[derive(Debug, Clone)]
pub struct Journal {
    backend: Arc<dyn JournalBackend>,
}

impl Journal {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn JournalBackend>) -> Self {
        Self { backend }
    }

    /// Appends events durably; an event id already present is skipped. Returns how many were new.
    pub async fn append(&self, events: &[Event]) -> Result<usize> {
        if events.is_empty() {
            return Ok(0);
        }
        self.backend.append(events).await
    }

    /// One message's events, in journal order (its audit trail).
    pub async fn message_events(&self, message_id: MessageId) -> Result<Vec<Event>> {
        self.backend.message_events(message_id).await
    }

    /// The events of several messages in one read, each message's in journal order.
    pub async fn messages_events(&self, message_ids: &[MessageId]) -> Result<Vec<Event>> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.messages_events(message_ids).await
    }

    /// Up to `limit` records after `after`, in order, gap-free. A reader keeps
    /// the position of the last record it processed as its checkpoint.
    pub async fn read_from(&self, after: Position, limit: usize) -> Result<Vec<JournalRecord>> {
        self.backend.read_from(after, limit.max(1)).await
    }

    /// The position of the last event a reader can see now.
    pub async fn head(&self) -> Result<Position> {
        self.backend.head().await
    }
}
