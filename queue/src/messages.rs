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
    /// When it expires unless delivered.
    pub expires_at: Option<DateTime<Utc>>,
}

impl MessageRow {
    /// The index rows of the messages `events` accept, with the status the
    /// events give them (accepted, or scheduled).
    pub fn from_accept(events: &[Event]) -> Vec<Self> {
        let mut by_message: std::collections::HashMap<MessageId, Vec<&Event>> = std::collections::HashMap::new();
        for e in events {
            by_message.entry(e.message_id).or_default().push(e);
        }
        events
            .iter()
            .filter_map(|e| match (&e.kind, e.account_id) {
                (EventKind::Accepted { to, batch_id, client_ref, expires_at, .. }, Some(account_id)) => {
                    let own = by_message.get(&e.message_id).into_iter().flatten().copied();
                    Some(Self {
                        message_id: e.message_id,
                        account_id,
                        batch_id: *batch_id,
                        to: to.clone(),
                        client_ref: client_ref.clone(),
                        status: MessageStatus::fold(own).unwrap_or(MessageStatus::Accepted),
                        created_at: e.at,
                        updated_at: e.at,
                        expires_at: Some(*expires_at),
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
    /// Its owner.
    pub account_id: AccountId,
    /// The message.
    pub message_id: MessageId,
    /// Its status now.
    pub status: MessageStatus,
    /// When it changed: the latest folded event's time.
    pub at: DateTime<Utc>,
    /// How many journal events the status folds. Two recorders can fold
    /// different histories whose latest events share a millisecond; the one
    /// that read more of the journal must win, so this breaks ties in `at`.
    pub events: u32,
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
    /// Most messages a backend examines for one page when a filter (status,
    /// recipient) is not served by an index; see [`MessagePage`].
    pub scan_limit: usize,
}

impl MessageQuery {
    /// One account's messages, newest first, `limit` per page, no filters.
    pub fn new(account_id: AccountId, limit: usize) -> Self {
        Self {
            account_id,
            status: None,
            to: None,
            batch_id: None,
            since: None,
            until: None,
            before: None,
            limit,
            scan_limit: DEFAULT_SCAN_LIMIT,
        }
    }
}

/// Messages examined per page for unindexed filters, by default.
pub const DEFAULT_SCAN_LIMIT: usize = 10_000;

/// One page of a listing.
///
/// A backend may serve a status or recipient filter by scanning the
/// account's messages newest first (SQLite does: an index on recipients cost
/// every accept a random B-tree insert, and halved bulk throughput). It then
/// stops after `scan_limit` messages, so a page can hold fewer than `limit`
/// rows, even none, while `next` says more may follow. Callers follow `next`
/// until it is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagePage {
    /// Matching messages, newest first.
    pub rows: Vec<MessageRow>,
    /// Cursor (`MessageQuery::before`) of the next page; `None` on the last.
    pub next: Option<MessageId>,
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
    async fn list(&self, query: &MessageQuery) -> Result<MessagePage>;
    /// One message's row, if `account_id` owns it.
    async fn get(&self, account_id: AccountId, message_id: MessageId) -> Result<Option<MessageRow>>;
    /// Stores a batch record (idempotent per batch id).
    async fn put_batch(&self, batch: &BatchRecord) -> Result<()>;
    /// One batch.
    async fn batch(&self, batch_id: BatchId) -> Result<Option<BatchRecord>>;
    /// How many of a batch's messages are in each status.
    async fn batch_counts(&self, batch_id: BatchId) -> Result<Vec<(MessageStatus, u64)>>;
    /// The indexed status of each of these messages that the index holds.
    async fn statuses(&self, messages: &[(AccountId, MessageId)]) -> Result<Vec<(MessageId, MessageStatus)>>;
    /// Up to `limit` messages past their validity, oldest expiry first:
    /// accepted, scheduled or routed ones whose `expires_at` is at or before
    /// `due`, and submitted ones whose `expires_at` is at or before
    /// `submitted_due` (an SMSC holds those and may still deliver them).
    async fn expirable(
        &self,
        due: DateTime<Utc>,
        submitted_due: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRow>>;
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

    /// Those of these messages whose indexed status is terminal (cancelled,
    /// expired...): a stage skips them instead of working on them again.
    pub async fn finished(&self, messages: &[(AccountId, MessageId)]) -> Result<std::collections::HashSet<MessageId>> {
        let statuses = self.backend.statuses(messages).await?;
        Ok(statuses.into_iter().filter(|(_, status)| status.is_terminal()).map(|(id, _)| id).collect())
    }
}
