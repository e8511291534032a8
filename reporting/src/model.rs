//! The rows of the reporting store as the projector computes them.

use chrono::{DateTime, NaiveDate, Utc};
use tern_core::{AccountId, BatchId, Encoding, Event, EventKind, MessageId, MessageStatus};
use tern_queue::{JournalRecord, Position};

use crate::ReportingError;

use crate::fold::FoldState;

/// One `messages` row: a message's attributes and its status fold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// The message.
    pub message_id: MessageId,
    /// Its owner.
    pub account_id: Option<AccountId>,
    /// An account above the owner that paid a wholesale charge for it.
    pub reseller_id: Option<AccountId>,
    /// Its batch, for bulk sends.
    pub batch_id: Option<BatchId>,
    /// Destination, E.164.
    pub destination: Option<String>,
    /// ISO country of the destination.
    pub country: Option<String>,
    /// Sender id.
    pub sender: Option<String>,
    /// The customer's reference.
    pub client_ref: Option<String>,
    /// SMS segments.
    pub segments: Option<u16>,
    /// `gsm7` or `ucs2`.
    pub encoding: Option<String>,
    /// Connector of the latest routing attempt.
    pub connector: Option<String>,
    /// That attempt's number.
    pub routed_attempt: Option<u32>,
    /// Price quoted at acceptance.
    pub price: Option<i64>,
    /// Currency of the price and of the owner's charges.
    pub currency: Option<String>,
    /// Charged to the owner.
    pub charged: i64,
    /// Refunded to the owner.
    pub refunded: i64,
    /// Charged to resellers, net of their refunds.
    pub wholesale: i64,
    /// When it was accepted.
    pub accepted_at: Option<DateTime<Utc>>,
    /// When an SMSC first took a segment.
    pub submitted_at: Option<DateTime<Utc>>,
    /// Latest fact.
    pub last_event_at: Option<DateTime<Utc>>,
    /// The status fold (status, terminal instant, reason, ordering state).
    pub fold: FoldState,
}

impl MessageRow {
    /// A row for a message nothing is known about yet.
    pub fn new(message_id: MessageId) -> Self {
        Self {
            message_id,
            account_id: None,
            reseller_id: None,
            batch_id: None,
            destination: None,
            country: None,
            sender: None,
            client_ref: None,
            segments: None,
            encoding: None,
            connector: None,
            routed_attempt: None,
            price: None,
            currency: None,
            charged: 0,
            refunded: 0,
            wholesale: 0,
            accepted_at: None,
            submitted_at: None,
            last_event_at: None,
            fold: FoldState::default(),
        }
    }

    /// The folded status.
    pub fn status(&self) -> Option<MessageStatus> {
        self.fold.status()
    }

    /// When it was delivered.
    pub fn delivered_at(&self) -> Option<DateTime<Utc>> {
        self.fold.ended_at.filter(|_| self.fold.status() == Some(MessageStatus::Delivered))
    }

    /// Takes in the attributes an event carries. None of them depends on the
    /// order events arrive in (first/min/max/sum), so incremental projection
    /// and a rebuild agree; the status is [`FoldState`]'s business.
    pub fn absorb(&mut self, event: &Event) {
        if self.account_id.is_none() {
            self.account_id = event.account_id;
        }
        self.last_event_at = self.last_event_at.max(Some(event.at));
        match &event.kind {
            EventKind::Accepted {
                to,
                country,
                from,
                encoding,
                segments,
                batch_id,
                client_ref,
                price,
                currency,
                ..
            } => {
                self.account_id = event.account_id.or(self.account_id);
                self.destination = Some(to.clone());
                self.country.clone_from(country);
                self.sender = Some(from.clone());
                self.encoding = Some(encoding_name(*encoding).to_owned());
                self.segments = Some(*segments);
                self.batch_id = *batch_id;
                self.client_ref.clone_from(client_ref);
                self.price = *price;
                if currency.is_some() {
                    self.currency.clone_from(currency);
                }
                self.accepted_at = Some(event.at);
            }
            EventKind::Routed { connector, attempt, .. } if self.routed_attempt.is_none_or(|a| *attempt > a) => {
                self.connector = Some(connector.clone());
                self.routed_attempt = Some(*attempt);
            }
            EventKind::Charged { payer, amount, currency } => {
                if self.is_owner(*payer, event) {
                    self.charged += amount;
                    if self.currency.is_none() {
                        self.currency = Some(currency.clone());
                    }
                } else {
                    self.wholesale += amount;
                    self.reseller_id = Some(self.reseller_id.map_or(*payer, |r| r.min(*payer)));
                }
            }
            EventKind::Refunded { payer, amount, .. } => {
                if self.is_owner(*payer, event) {
                    self.refunded += amount;
                } else {
                    self.wholesale -= amount;
                }
            }
            EventKind::SubmittedToSmsc { .. } => {
                self.submitted_at = Some(self.submitted_at.map_or(event.at, |at| at.min(event.at)));
            }
            _ => {}
        }
    }

    fn is_owner(&self, payer: AccountId, event: &Event) -> bool {
        event.account_id.or(self.account_id).is_none_or(|owner| owner == payer)
    }

    /// The `daily_stats` bucket this message counts in, if it can be counted
    /// yet (its acceptance and status are known).
    pub fn bucket(&self) -> Option<(StatsKey, StatsCounts)> {
        let key = StatsKey {
            day: self.accepted_at?.date_naive(),
            account_id: self.account_id?,
            country: self.country.clone().unwrap_or_default(),
            connector: self.connector.clone().unwrap_or_default(),
            status: self.status()?,
        };
        let counts = StatsCounts {
            messages: 1,
            segments: i64::from(self.segments.unwrap_or(1)),
            revenue: self.charged - self.refunded,
        };
        Some((key, counts))
    }

    /// The batch and status this message counts as in `batches`.
    pub fn batch_status(&self) -> Option<(BatchId, AccountId, MessageStatus, DateTime<Utc>)> {
        Some((self.batch_id?, self.account_id?, self.status()?, self.accepted_at?))
    }
}

/// The stored name of an encoding.
pub fn encoding_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Gsm7 => "gsm7",
        Encoding::Ucs2 => "ucs2",
    }
}

/// Whether an event belongs to an inbound (mobile-originated) message.
pub fn is_inbound(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::InboundReceived { .. }
            | EventKind::ReplyMatched { .. }
            | EventKind::OptedOut { .. }
            | EventKind::OptedIn { .. }
    )
}

/// Whether an event is part of an outbound message's lifecycle (its `messages` row).
pub fn is_outbound(kind: &EventKind) -> bool {
    !is_inbound(kind) && !matches!(kind, EventKind::CallbackDelivered { .. } | EventKind::CallbackFailed { .. })
}

/// One `inbound_messages` row, or the part of it some events carry (`None`:
/// unknown so far; stored values are kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundRow {
    /// The inbound message.
    pub message_id: Option<MessageId>,
    /// The account it was attributed to.
    pub account_id: Option<AccountId>,
    /// The handset.
    pub from_number: Option<String>,
    /// The number or short code it was sent to.
    pub to_number: Option<String>,
    /// Its text.
    pub body: Option<String>,
    /// Connector it came through.
    pub connector: Option<String>,
    /// When it arrived.
    pub received_at: Option<DateTime<Utc>>,
    /// The outbound message it answers.
    pub reply_to: Option<MessageId>,
    /// `opted_out` or `opted_in` when it was a STOP or START keyword.
    pub opt: Option<String>,
    /// The keyword.
    pub keyword: Option<String>,
}

impl InboundRow {
    /// Takes in what an inbound event says.
    pub fn absorb(&mut self, event: &Event) {
        self.message_id = Some(event.message_id);
        self.account_id = event.account_id.or(self.account_id);
        match &event.kind {
            EventKind::InboundReceived { from, to, body, connector } => {
                self.from_number = Some(from.clone());
                self.to_number = Some(to.clone());
                self.body = Some(body.clone());
                self.connector = Some(connector.clone());
                self.received_at = Some(event.at);
            }
            EventKind::ReplyMatched { outbound_message_id } => self.reply_to = Some(*outbound_message_id),
            EventKind::OptedOut { keyword, .. } => {
                self.opt = Some("opted_out".into());
                self.keyword = Some(keyword.clone());
            }
            EventKind::OptedIn { keyword, .. } => {
                self.opt = Some("opted_in".into());
                self.keyword = Some(keyword.clone());
            }
            _ => {}
        }
    }
}

/// A `daily_stats` bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatsKey {
    /// Day of acceptance (UTC).
    pub day: NaiveDate,
    /// Owner.
    pub account_id: AccountId,
    /// Destination country, `""` when unknown.
    pub country: String,
    /// Connector, `""` when never routed.
    pub connector: String,
    /// Current status.
    pub status: MessageStatus,
}

impl StatsKey {
    fn sort_key(&self) -> (NaiveDate, AccountId, &str, &str, &'static str) {
        (self.day, self.account_id, &self.country, &self.connector, self.status.as_str())
    }
}

impl PartialOrd for StatsKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StatsKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

/// What one bucket counts (or a change to it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsCounts {
    /// Messages.
    pub messages: i64,
    /// Their segments.
    pub segments: i64,
    /// Charged to their owners, net of refunds (minor units).
    pub revenue: i64,
}

impl StatsCounts {
    /// Adds `other` times `sign`.
    pub fn add(&mut self, other: StatsCounts, sign: i64) {
        self.messages += sign * other.messages;
        self.segments += sign * other.segments;
        self.revenue += sign * other.revenue;
    }

    /// Whether it changes nothing.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

/// The statuses `batches` counts, in column order.
pub const BATCH_STATUSES: [MessageStatus; 10] = [
    MessageStatus::Accepted,
    MessageStatus::Scheduled,
    MessageStatus::Routed,
    MessageStatus::Submitted,
    MessageStatus::Delivered,
    MessageStatus::Undeliverable,
    MessageStatus::Expired,
    MessageStatus::Rejected,
    MessageStatus::Failed,
    MessageStatus::Cancelled,
];

/// A change to one `batches` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchDelta {
    /// The batch.
    pub batch_id: BatchId,
    /// Its owner.
    pub account_id: AccountId,
    /// Change of its message count.
    pub messages: i64,
    /// Change per status, in [`BATCH_STATUSES`] order.
    pub by_status: [i64; 10],
    /// Earliest acceptance among the messages counted.
    pub first_accepted_at: DateTime<Utc>,
    /// Latest.
    pub last_accepted_at: DateTime<Utc>,
}

impl BatchDelta {
    /// Counts `status` `sign` times.
    pub fn count(&mut self, status: MessageStatus, sign: i64) {
        if let Some(i) = BATCH_STATUSES.iter().position(|s| *s == status) {
            self.by_status[i] += sign;
            self.messages += sign;
        }
    }
}

/// One `message_events` row: a journal record and its JSON, made before
/// the transaction (by the projector's reader, on the other core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Journal position.
    pub position: i64,
    /// The event.
    pub event: Event,
    /// The event as JSON.
    pub json: String,
}

impl EventRow {
    /// The row of one journal record.
    pub fn new(record: JournalRecord) -> Result<Self, ReportingError> {
        let position = i64::try_from(record.position.0)
            .map_err(|_| anyhow::anyhow!("journal position {} is out of range", record.position))?;
        let json = serde_json::to_string(&record.event).map_err(anyhow::Error::from)?;
        Ok(Self { position, event: record.event, json })
    }

    /// Its journal position.
    pub fn position(&self) -> Position {
        Position(u64::try_from(self.position).unwrap_or(0))
    }
}
