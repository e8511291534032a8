//! What the pipeline knows about the people at the other end: numbers that
//! opted out of an account's traffic, the last conversation between a sender
//! and a handset (to match replies), and the inbound messages an account
//! can list.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tern_core::{AccountId, MessageId};

use crate::Result;

/// The latest outbound message from one sender to one handset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The sender id the message went out with (what the handset replies to).
    pub sender: String,
    /// The handset, E.164.
    pub handset: String,
    /// The account that sent it.
    pub account_id: AccountId,
    /// The outbound message.
    pub message_id: MessageId,
    /// When it was sent.
    pub at: DateTime<Utc>,
}

/// An inbound message as its account lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRow {
    /// The inbound message's id.
    pub message_id: MessageId,
    /// The account it was attributed to.
    pub account_id: AccountId,
    /// The handset, E.164.
    pub from: String,
    /// The number or short code it was sent to.
    pub to: String,
    /// Decoded text.
    pub body: String,
    /// Connector it came through.
    pub connector: String,
    /// The outbound message it answers.
    pub reply_to: Option<MessageId>,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// What one backend implements. Callers use [`Contacts`].
#[async_trait]
pub trait ContactsBackend: Send + Sync + fmt::Debug + 'static {
    /// Opts `number` out of (`opted_out`) or back into `account`'s traffic;
    /// returns whether that changed anything.
    async fn set_opt_out(&self, account: AccountId, number: &str, opted_out: bool, at: DateTime<Utc>) -> Result<bool>;
    /// Those of `numbers` opted out of `account`'s traffic.
    async fn opted_out(&self, account: AccountId, numbers: &[String]) -> Result<Vec<String>>;
    /// Records conversations, keeping per (sender, handset) the latest by `at`.
    async fn remember_conversations(&self, conversations: &[Conversation]) -> Result<()>;
    /// The latest conversation between `sender` and `handset` at or after `since`.
    async fn latest_conversation(
        &self,
        sender: &str,
        handset: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<Conversation>>;
    /// Stores inbound rows (idempotent per message id).
    async fn put_inbound(&self, rows: &[InboundRow]) -> Result<()>;
    /// One account's inbound messages, newest first, older than `before` if given.
    async fn list_inbound(
        &self,
        account: AccountId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<InboundRow>>;
}

/// Opt-outs, conversations and inbound messages, whatever the backend.
#[derive(Debug, Clone)]
pub struct Contacts {
    backend: Arc<dyn ContactsBackend>,
}

impl std::ops::Deref for Contacts {
    type Target = dyn ContactsBackend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl Contacts {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn ContactsBackend>) -> Self {
        Self { backend }
    }
}
