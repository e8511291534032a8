//! What SMSC connectors keep in the store: which message each SMSC message
//! id stands for (so that delivery receipts can be matched, whichever
//! process or bind they arrive on), and the parts of concatenated inbound
//! messages until the last one arrives.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tern_core::{AccountId, MessageId};

use crate::Result;

/// The message segments an SMSC message id stands for.
///
/// A message sent as UDH-concatenated segments has one id per segment; one
/// sent whole in `message_payload` has one id for all of its segments, so a
/// record names a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmscIdRecord {
    /// Connector the segments went through (SMSC ids are unique per SMSC only).
    pub connector: String,
    /// The id the SMSC gave in its `submit_sm_resp`.
    pub smsc_id: String,
    /// The message.
    pub message_id: MessageId,
    /// Its owner.
    pub account_id: Option<AccountId>,
    /// First segment (1-based) the id stands for.
    pub first_segment: u16,
    /// Last segment the id stands for (equal to `first_segment` for UDH parts).
    pub last_segment: u16,
    /// When the SMSC took it.
    pub at: DateTime<Utc>,
}

/// Identifies one concatenated inbound message: its parts share these.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MoPartKey {
    /// Connector the parts came through.
    pub connector: String,
    /// The handset (source address as received).
    pub from: String,
    /// The number or short code it was sent to.
    pub to: String,
    /// The concatenation reference number (8- or 16-bit).
    pub reference: u16,
    /// How many parts the message has.
    pub total: u8,
}

/// One part of a concatenated inbound message, kept until every part arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoPart {
    /// Which message it belongs to.
    pub key: MoPartKey,
    /// Its place, 1-based.
    pub seq: u8,
    /// SMPP data_coding of the part (the text is decoded once reassembled,
    /// so a character split across two parts survives).
    pub data_coding: u8,
    /// The user data after the UDH.
    pub payload: Vec<u8>,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// What one backend implements. Callers use [`Smsc`].
///
/// Contract (checked by `test_suite`): SMSC id records are found by
/// connector and id, the latest write of a pair winning (SMSCs reuse ids
/// eventually); a part stored twice is kept once; `put_mo_part` answers
/// every part stored for the message so far, this one included.
#[async_trait]
pub trait SmscBackend: Send + Sync + fmt::Debug + 'static {
    /// Stores SMSC id records durably (replacing any with the same connector and id).
    async fn put_smsc_ids(&self, records: &[SmscIdRecord]) -> Result<()>;
    /// The records of `smsc_ids` on `connector` (those that exist).
    async fn smsc_ids(&self, connector: &str, smsc_ids: &[String]) -> Result<Vec<SmscIdRecord>>;
    /// Deletes records written more than `older_than` ago; returns how many.
    async fn purge_smsc_ids(&self, older_than: Duration) -> Result<u64>;
    /// Stores one part durably (idempotent per key and seq) and returns every
    /// part of its message stored so far, in seq order.
    async fn put_mo_part(&self, part: &MoPart) -> Result<Vec<MoPart>>;
    /// Deletes the parts of a message once it was reassembled and recorded.
    async fn delete_mo_parts(&self, key: &MoPartKey) -> Result<()>;
    /// Deletes parts that arrived more than `older_than` ago (their siblings
    /// never came); returns how many.
    async fn purge_mo_parts(&self, older_than: Duration) -> Result<u64>;
}

/// SMSC id records and inbound parts, whatever the backend.
#[derive(Debug, Clone)]
pub struct Smsc {
    backend: Arc<dyn SmscBackend>,
}

impl std::ops::Deref for Smsc {
    type Target = dyn SmscBackend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl Smsc {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn SmscBackend>) -> Self {
        Self { backend }
    }
}
