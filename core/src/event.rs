//! The journal's events: one immutable fact per stage of a message's life.
//!
//! Every event's id is derived from the fact it records ([`EventKind::fact_key`]),
//! so a stage that is retried after a crash re-appends the same id and the
//! journal keeps one copy (invariant 3 of the brief).
//!
//! Versioning: the envelope carries `v`. A change that only adds optional
//! fields keeps the version; anything else bumps [`EVENT_SCHEMA_VERSION`] and
//! adds an upcast from the older shape at deserialisation, because the journal
//! is never rewritten.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::encoding::Encoding;
use crate::ids::{AccountId, BatchId, EventId, MessageId};

/// Version of the event schema written by this build.
pub const EVENT_SCHEMA_VERSION: u16 = 1;

/// One fact about one message, as stored in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Deterministic id (see [`EventKind::fact_key`]).
    pub id: EventId,
    /// The message the fact is about (an inbound message has its own id).
    pub message_id: MessageId,
    /// The account that owns the message; `None` only for an inbound message
    /// that matched no account.
    pub account_id: Option<AccountId>,
    /// When the stage observed the fact.
    pub at: DateTime<Utc>,
    /// Schema version of `kind`.
    #[serde(rename = "v")]
    pub version: u16,
    /// The fact itself.
    pub kind: EventKind,
}

impl Event {
    /// Builds an event whose id is derived from the message and the fact.
    pub fn new(message_id: MessageId, account_id: Option<AccountId>, at: DateTime<Utc>, kind: EventKind) -> Self {
        let (fact, discriminator) = kind.fact_key();
        Self {
            id: EventId::derive(message_id, fact, &discriminator),
            message_id,
            account_id,
            at,
            version: EVENT_SCHEMA_VERSION,
            kind,
        }
    }

    /// Key that orders one message's events canonically: by time, then by
    /// lifecycle stage (so two facts stamped in the same millisecond still
    /// fold in the order the pipeline produces them), then by id.
    pub fn sequence_key(&self) -> (DateTime<Utc>, u8, EventId) {
        (self.at, self.kind.stage_rank(), self.id)
    }
}

/// What the delivery receipt of one segment says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// The handset has it.
    Delivered,
    /// The network gave up (or refused it) for good.
    Undeliverable,
    /// The SMSC's validity period passed before the handset took it.
    Expired,
    /// The SMSC does not know (yet); the message stays submitted.
    Unknown,
}

/// The facts of a message's lifecycle. Amounts are integer minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// Submission took the message: everything needed to send it.
    Accepted {
        /// Destination, E.164.
        to: String,
        /// ISO country of the destination, if known.
        country: Option<String>,
        /// Sender id as validated.
        from: String,
        /// The rendered body.
        body: String,
        /// Encoding chosen for the body.
        encoding: Encoding,
        /// Number of SMS segments.
        segments: u16,
        /// Batch the message belongs to, for bulk sends.
        batch_id: Option<BatchId>,
        /// The customer's own reference.
        client_ref: Option<String>,
        /// Where status callbacks go, overriding the account's default.
        callback_url: Option<String>,
        /// Higher goes first.
        priority: u8,
        /// After this the message expires if not delivered.
        expires_at: DateTime<Utc>,
        /// Price quoted at acceptance (all segments, minor units), when the
        /// account's price plan covers the destination. Billing charges it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        price: Option<i64>,
        /// ISO 4217 currency of `price`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        currency: Option<String>,
    },
    /// The message waits until `send_at` (follows `Accepted`).
    Scheduled {
        /// When the scheduler releases it.
        send_at: DateTime<Utc>,
    },
    /// The scheduler released a scheduled message into the pipeline.
    Released,
    /// The customer cancelled it before it reached an SMSC.
    Cancelled {
        /// Who or what cancelled it (e.g. "api").
        by: String,
    },
    /// A handler refused it (opt-out, no route, no credit...).
    Rejected {
        /// Machine-readable reason, e.g. `opted_out`, `no_route`, `insufficient_balance`.
        code: String,
        /// Human-readable explanation.
        detail: String,
    },
    /// Routing chose a connector.
    Routed {
        /// Connector name.
        connector: String,
        /// Route that matched.
        route: String,
        /// Routing attempt (failover increments it).
        attempt: u32,
    },
    /// The account was debited.
    Charged {
        /// Account debited (the reseller for a wholesale charge).
        payer: AccountId,
        /// Debit in minor units.
        amount: i64,
        /// ISO 4217 currency.
        currency: String,
    },
    /// A charge was given back because the message failed before any SMSC took it.
    Refunded {
        /// Account credited.
        payer: AccountId,
        /// Credit in minor units.
        amount: i64,
        /// ISO 4217 currency.
        currency: String,
        /// Why.
        reason: String,
    },
    /// An SMSC accepted one segment.
    SubmittedToSmsc {
        /// Connector name.
        connector: String,
        /// Segment number, 1-based.
        segment: u16,
        /// Id the SMSC gave the segment (receipts refer to it).
        smsc_message_id: String,
    },
    /// An SMSC refused a segment for good.
    SmscRejected {
        /// Connector name.
        connector: String,
        /// Segment number, 1-based.
        segment: u16,
        /// SMPP command_status.
        command_status: u32,
    },
    /// An SMSC asked us to slow down (ESME_RTHROTTLED, ESME_RMSGQFUL) or timed out.
    SmscThrottled {
        /// Connector name.
        connector: String,
        /// SMPP command_status, or 0 for a response timeout.
        command_status: u32,
        /// Attempt that was throttled.
        attempt: u32,
    },
    /// A stage will try again later.
    Retried {
        /// Stage that retries (e.g. `mt`, `connector`).
        stage: String,
        /// Attempt number that failed.
        attempt: u32,
        /// Why it failed.
        reason: String,
        /// When it will be tried again.
        retry_at: DateTime<Utc>,
    },
    /// A delivery receipt for one segment.
    DeliveryReport {
        /// Segment number, 1-based.
        segment: u16,
        /// The SMSC's id for the segment.
        smsc_message_id: String,
        /// What happened.
        state: DeliveryState,
        /// The SMSC's error code (`err:` of the receipt), if any.
        error_code: Option<u32>,
    },
    /// The validity period passed before delivery.
    Expired,
    /// The message cannot be sent (permanent SMSC error, dead-lettered...).
    Failed {
        /// Machine-readable reason.
        code: String,
        /// Human-readable explanation.
        detail: String,
        /// SMPP command_status when an SMSC caused it.
        smpp_status: Option<u32>,
    },
    /// A stage gave up on the message after too many attempts.
    DeadLettered {
        /// Stage that gave up.
        stage: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last_error: String,
    },
    /// A mobile-originated message arrived (this event's message is the inbound one).
    InboundReceived {
        /// The handset, E.164.
        from: String,
        /// The number or short code it was sent to.
        to: String,
        /// Decoded text.
        body: String,
        /// Connector it came through.
        connector: String,
    },
    /// An inbound message was matched to the outbound message it answers.
    ReplyMatched {
        /// The outbound message.
        outbound_message_id: MessageId,
    },
    /// An inbound keyword (STOP...) opted the handset out of an account's traffic
    /// (recorded on the inbound message).
    OptedOut {
        /// The handset, E.164.
        number: String,
        /// The keyword as recognised (upper case).
        keyword: String,
    },
    /// An inbound keyword (START...) opted the handset back in.
    OptedIn {
        /// The handset, E.164.
        number: String,
        /// The keyword as recognised (upper case).
        keyword: String,
    },
    /// A status callback was accepted by the customer's endpoint.
    CallbackDelivered {
        /// The event the callback reported.
        for_event: EventId,
        /// Endpoint.
        url: String,
        /// HTTP status received.
        http_status: u16,
        /// Attempt that succeeded.
        attempts: u32,
    },
    /// A status callback was given up after its retry window.
    CallbackFailed {
        /// The event the callback reported.
        for_event: EventId,
        /// Endpoint.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last_error: String,
    },
}

impl EventKind {
    /// `(fact, discriminator)` naming the fact this event records, from which
    /// its id is derived. The fact is the event's stored type tag. Two events share a key exactly when they record the
    /// same fact, so a retried stage cannot record a fact twice.
    pub fn fact_key(&self) -> (&'static str, String) {
        match self {
            Self::Accepted { .. } => ("accepted", String::new()),
            Self::Scheduled { .. } => ("scheduled", String::new()),
            Self::Released => ("released", String::new()),
            Self::Cancelled { .. } => ("cancelled", String::new()),
            Self::Rejected { .. } => ("rejected", String::new()),
            Self::Routed { attempt, .. } => ("routed", attempt.to_string()),
            Self::Charged { payer, .. } => ("charged", payer.to_string()),
            Self::Refunded { payer, .. } => ("refunded", payer.to_string()),
            Self::SubmittedToSmsc { segment, .. } => ("submitted_to_smsc", segment.to_string()),
            Self::SmscRejected { segment, .. } => ("smsc_rejected", segment.to_string()),
            Self::SmscThrottled { connector, attempt, .. } => ("smsc_throttled", format!("{connector}/{attempt}")),
            Self::Retried { stage, attempt, .. } => ("retried", format!("{stage}/{attempt}")),
            Self::DeliveryReport { segment, state, .. } => ("delivery_report", format!("{segment}/{state:?}")),
            Self::Expired => ("expired", String::new()),
            Self::Failed { .. } => ("failed", String::new()),
            Self::DeadLettered { stage, .. } => ("dead_lettered", stage.clone()),
            Self::InboundReceived { .. } => ("inbound_received", String::new()),
            Self::ReplyMatched { .. } => ("reply_matched", String::new()),
            Self::OptedOut { .. } => ("opted_out", String::new()),
            Self::OptedIn { .. } => ("opted_in", String::new()),
            Self::CallbackDelivered { for_event, .. } => ("callback_delivered", for_event.to_string()),
            Self::CallbackFailed { for_event, .. } => ("callback_failed", for_event.to_string()),
        }
    }

    /// Position of the fact in the pipeline, used to order facts stamped at the same instant.
    pub fn stage_rank(&self) -> u8 {
        match self {
            Self::InboundReceived { .. } | Self::Accepted { .. } => 0,
            Self::Scheduled { .. } => 1,
            Self::Released => 2,
            Self::Routed { .. } => 3,
            Self::Charged { .. } => 4,
            Self::Retried { .. } | Self::SmscThrottled { .. } => 5,
            Self::SubmittedToSmsc { .. } => 6,
            Self::DeliveryReport { .. } | Self::ReplyMatched { .. } => 7,
            Self::OptedOut { .. } | Self::OptedIn { .. } => 8,
            Self::Cancelled { .. }
            | Self::Rejected { .. }
            | Self::SmscRejected { .. }
            | Self::Expired
            | Self::Failed { .. }
            | Self::DeadLettered { .. } => 8,
            Self::Refunded { .. } => 9,
            Self::CallbackDelivered { .. } | Self::CallbackFailed { .. } => 10,
        }
    }

    /// The event's type tag as stored (`accepted`, `charged`...), the `type` of its JSON.
    pub fn type_name(&self) -> &'static str {
        self.fact_key().0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_a_tagged_versioned_document() {
        let m = MessageId::new();
        let e = Event::new(m, Some(AccountId::new()), Utc::now(), EventKind::Expired);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["kind"]["type"], "expired");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn type_names_are_the_stored_tags() {
        let m = MessageId::new();
        let kinds = [
            EventKind::Released,
            EventKind::Expired,
            EventKind::SubmittedToSmsc { connector: "c".into(), segment: 1, smsc_message_id: "x".into() },
            EventKind::SmscThrottled { connector: "c".into(), command_status: 0x58, attempt: 1 },
            EventKind::DeliveryReport {
                segment: 1,
                smsc_message_id: "x".into(),
                state: DeliveryState::Unknown,
                error_code: None,
            },
            EventKind::ReplyMatched { outbound_message_id: m },
        ];
        for kind in kinds {
            let json = serde_json::to_value(&kind).unwrap();
            assert_eq!(json["type"], kind.type_name());
        }
    }

    #[test]
    fn retried_stage_gets_the_same_id_and_distinct_facts_do_not() {
        let m = MessageId::new();
        let submitted = |segment, id: &str| EventKind::SubmittedToSmsc {
            connector: "c1".into(),
            segment,
            smsc_message_id: id.into(),
        };
        let a = Event::new(m, None, Utc::now(), submitted(1, "x"));
        let b = Event::new(m, None, Utc::now(), submitted(1, "y"));
        let c = Event::new(m, None, Utc::now(), submitted(2, "z"));
        assert_eq!(a.id, b.id, "one segment is submitted once, whatever the SMSC said the second time");
        assert_ne!(a.id, c.id);
    }
}
