//! The message index: one row per message, for listing messages by status,
//! recipient, batch or time, and counting a batch's messages by status.
//!
//! The journal stays the truth; the index is derived from it. Its rows are
//! written with the accept (from the `Accepted` event) and their status is
//! refreshed by [`crate::Store::record`] whenever a stage appends events.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tern_core::{AccountId, BatchId, Event, EventKind, MessageId, MessageStatus};

use crate::Result;

/// One message in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    /// The message.
    pub message_id: MessageId,
    /// Its owner.
    pub account_id: AccountId,
    /// Its batch, for bulk sends.
    pub batch_id: Option<BatchId>,
    /// Destination, E.164.
    pub to: String,
    /// The customer's reference.
    pub client_ref: Option<String>,
    /// Current status (a fold of its events).
    pub status: MessageStatus,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
}

impl MessageRow {
    /// The index rows of the messages `events` accept, with the status the
    /// events give them (accepted, or scheduled).
    pub fn from_accept(events: &[Event]) -> Vec<Self> {
        events
            .iter()
            .filter_map(|e| match (&e.kind, e.account_id) {
                (EventKind::Accepted { to, batch_id, client_ref, .. }, Some(account_id)) => {
                    let own = events.iter().filter(|o| o.message_id == e.message_id);
                    Some(Self {
                        message_id: e.message_id,
                        account_id,
                        batch_id: *batch_id,
                        to: to.clone(),
                        client_ref: client_ref.clone(),
                        status: MessageStatus::fold(own).unwrap_or(MessageStatus::Accepted),
                        created_at: e.at,
                        updated_at: e.at,
                    })
                }
                _ => None,
            })
            .collect()
    }
}

/// A status change for the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The message.
    pub message_id: MessageId,
    /// Its status now.
    pub status: MessageStatus,
    /// When it changed.
    pub at: DateTime<Utc>,
}

/// Which messages to list: always one account's, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageQuery {
    /// Owner (tenant scope).
    pub account_id: AccountId,
    /// Only this status.
    pub status: Option<MessageStatus>,
    /// Only to this number (E.164).
    pub to: Option<String>,
    /// Only of this batch.
    pub batch_id: Option<BatchId>,
    /// Accepted at or after.
    pub since: Option<DateTime<Utc>>,
    /// Accepted before.
    pub until: Option<DateTime<Utc>>,
    /// Cursor: only messages older than this one.
    pub before: Option<MessageId>,
    /// Page size.
    pub limit: usize,
}

/// A bulk send as recorded when it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The batch.
    pub batch_id: BatchId,
    /// Its owner.
    pub account_id: AccountId,
    /// Recipients in the request.
    pub recipients: u64,
    /// Messages accepted.
    pub accepted: u64,
    /// Rows refused as invalid.
    pub invalid: u64,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
}

/// What one index backend implements. Callers use [`Messages`].
#[async_trait]
pub trait MessageIndexBackend: Send + Sync + fmt::Debug + 'static {
    /// Sets statuses; rows not in the index are ignored.
    async fn update_statuses(&self, updates: &[StatusUpdate]) -> Result<()>;
    /// One account's messages matching the query, newest first.
    async fn list(&self, query: &MessageQuery) -> Result<Vec<MessageRow>>;
    /// One message's row.
    async fn get(&self, message_id: MessageId) -> Result<Option<MessageRow>>;
    /// Stores a batch record (idempotent per batch id).
    async fn put_batch(&self, batch: &BatchRecord) -> Result<()>;
    /// One batch.
    async fn batch(&self, batch_id: BatchId) -> Result<Option<BatchRecord>>;
    /// How many of a batch's messages are in each status.
    async fn batch_counts(&self, batch_id: BatchId) -> Result<Vec<(MessageStatus, u64)>>;
}

/// The message index, whatever the backend.
#[derive(Debug, Clone)]
pub struct Messages {
    backend: Arc<dyn MessageIndexBackend>,
}

impl std::ops::Deref for Messages {
    type Target = dyn MessageIndexBackend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl Messages {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn MessageIndexBackend>) -> Self {
        Self { backend }
    }
}
