//! The work items handlers decide about, and the queue entries they travel in.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tern_core::{AccountId, BatchId, Encoding, Event, EventId, EventKind, MessageId};
use tern_queue::Account;

/// An `mt` queue entry: the message's `Accepted` event, and which routing
/// attempt this is (a connector that gives a message up sends it back with
/// the next attempt, so that routing fails over).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtEntry {
    /// The `Accepted` event.
    #[serde(flatten)]
    pub accepted: Event,
    /// Routing attempt, 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_attempt: Option<u32>,
}

impl MtEntry {
    /// The queue entry id of this routing attempt: the message id for the
    /// first, so that submission's publish and the pipeline agree.
    pub fn entry_id(&self) -> String {
        match self.route_attempt {
            None | Some(0 | 1) => self.accepted.message_id.to_string(),
            Some(n) => format!("{}:route:{n}", self.accepted.message_id),
        }
    }
}

/// What an `smsc.<connector>` entry carries: the message and the routing
/// decision that sent it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    /// The `Accepted` event.
    pub accepted: Event,
    /// Connector chosen.
    pub connector: String,
    /// Route that matched.
    pub route: String,
    /// Routing attempt.
    pub route_attempt: u32,
}

impl Dispatch {
    /// The topic a connector consumes.
    pub fn topic(connector: &str) -> String {
        format!("smsc.{connector}")
    }
}

/// The fields of an `Accepted` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// Destination, E.164.
    pub to: String,
    /// ISO country of the destination.
    pub country: Option<String>,
    /// Sender id.
    pub from: String,
    /// Body.
    pub body: String,
    /// Encoding.
    pub encoding: Encoding,
    /// Segments.
    pub segments: u16,
    /// Batch.
    pub batch_id: Option<BatchId>,
    /// The customer's reference.
    pub client_ref: Option<String>,
    /// Status callback URL of the message itself.
    pub callback_url: Option<String>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Price quoted at acceptance (all segments).
    pub price: Option<i64>,
    /// Currency of `price`.
    pub currency: Option<String>,
}

impl Outbound {
    /// Reads the fields of an `Accepted` event; `None` for any other kind.
    pub fn from_kind(kind: &EventKind) -> Option<Self> {
        match kind {
            EventKind::Accepted {
                to,
                country,
                from,
                body,
                encoding,
                segments,
                batch_id,
                client_ref,
                callback_url,
                expires_at,
                price,
                currency,
                ..
            } => Some(Self {
                to: to.clone(),
                country: country.clone(),
                from: from.clone(),
                body: body.clone(),
                encoding: *encoding,
                segments: *segments,
                batch_id: *batch_id,
                client_ref: client_ref.clone(),
                callback_url: callback_url.clone(),
                expires_at: *expires_at,
                price: *price,
                currency: currency.clone(),
            }),
            _ => None,
        }
    }
}

/// Where routing sent a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChoice {
    /// Connector.
    pub connector: String,
    /// Route that matched.
    pub route: String,
}

/// One outbound message in the `mt` stage.
#[derive(Debug, Clone)]
pub struct Mt {
    /// The queue entry it came in.
    pub entry: MtEntry,
    /// Its fields.
    pub message: Outbound,
    /// Its owner.
    pub account: Arc<Account>,
    /// Deliveries of its queue entry so far, this one included.
    pub delivery_attempt: u32,
    /// Its journal so far, read only when the entry was delivered before, so
    /// that handlers reuse the decisions recorded then instead of deciding again.
    pub history: Vec<Event>,
    /// Routing's decision.
    pub route: Option<RouteChoice>,
    /// Facts found by the handlers, recorded by the stage.
    pub facts: Vec<EventKind>,
    /// The instant the stage works at.
    pub now: DateTime<Utc>,
}

impl Mt {
    /// The message's id.
    pub fn id(&self) -> MessageId {
        self.entry.accepted.message_id
    }

    /// The routing attempt.
    pub fn route_attempt(&self) -> u32 {
        self.entry.route_attempt.unwrap_or(1).max(1)
    }

    /// A fact recorded before, if this entry was delivered before.
    pub fn recorded<T>(&self, pick: impl FnMut(&EventKind) -> Option<T>) -> Option<T> {
        self.history.iter().map(|e| &e.kind).find_map(pick)
    }
}

/// An `mo` queue entry: the `InboundReceived` event a connector recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoEntry {
    /// The `InboundReceived` event.
    pub received: Event,
}

/// One inbound message in the `mo` stage.
#[derive(Debug, Clone)]
pub struct Mo {
    /// The inbound message's id.
    pub message_id: MessageId,
    /// Id of its `InboundReceived` event (what its webhook reports).
    pub received: EventId,
    /// The handset, E.164.
    pub from: String,
    /// The number or short code it was sent to.
    pub to: String,
    /// Decoded text.
    pub body: String,
    /// Connector it came through.
    pub connector: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// The account it was attributed to, once reply matching found one.
    pub account: Option<Arc<Account>>,
    /// The outbound message it answers.
    pub reply_to: Option<MessageId>,
    /// Facts found by the handlers, recorded by the stage under the account.
    pub facts: Vec<EventKind>,
    /// The instant the stage works at.
    pub now: DateTime<Utc>,
}

impl Mo {
    /// Reads an `InboundReceived` event; `None` for any other kind.
    pub fn from_event(event: &Event, now: DateTime<Utc>) -> Option<Self> {
        match &event.kind {
            EventKind::InboundReceived { from, to, body, connector } => Some(Self {
                message_id: event.message_id,
                received: event.id,
                from: from.clone(),
                to: to.clone(),
                body: body.clone(),
                connector: connector.clone(),
                received_at: event.at,
                account: None,
                reply_to: None,
                facts: Vec::new(),
                now,
            }),
            _ => None,
        }
    }

    /// The account id, once attributed.
    pub fn account_id(&self) -> Option<AccountId> {
        self.account.as_ref().map(|a| a.id)
    }
}
