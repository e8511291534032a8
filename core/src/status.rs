//! A message's status is a fold over its events.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::event::{DeliveryState, Event, EventKind};

/// Where a message stands. The last six outbound states, and `Received`, are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Taken by submission, waiting for the pipeline.
    Accepted,
    /// Waiting for its `send_at`.
    Scheduled,
    /// Assigned to a connector, not yet taken by an SMSC.
    Routed,
    /// At least one segment is with an SMSC; waiting for receipts.
    Submitted,
    /// Every segment reached the handset.
    Delivered,
    /// The network gave up on a segment.
    Undeliverable,
    /// Validity passed before delivery.
    Expired,
    /// A handler refused it before sending.
    Rejected,
    /// It could not be sent.
    Failed,
    /// The customer cancelled it.
    Cancelled,
    /// An inbound (MO) message: it has no further lifecycle.
    Received,
}

impl MessageStatus {
    /// Whether no further event can change this status.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Accepted | Self::Scheduled | Self::Routed | Self::Submitted)
    }

    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Scheduled => "scheduled",
            Self::Routed => "routed",
            Self::Submitted => "submitted",
            Self::Delivered => "delivered",
            Self::Undeliverable => "undeliverable",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Received => "received",
        }
    }

    /// Folds one message's events into its status; `None` when there are none.
    ///
    /// The events are put in canonical order ([`Event::sequence_key`]) first,
    /// so the result depends only on the set of events, not on the order a
    /// reader happened to get them in. Terminal states absorb everything that
    /// follows; the first terminal fact wins.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Option<Self> {
        let mut ordered: Vec<&Event> = events.into_iter().collect();
        ordered.sort_by_key(|e| e.sequence_key());
        // Known before folding: a receipt stamped (by a skewed clock) before
        // the accept must not make a multi-part message look delivered.
        let segments = ordered.iter().find_map(|e| match e.kind {
            EventKind::Accepted { segments, .. } => Some(segments),
            _ => None,
        });
        let mut fold = StatusFold::new(segments);
        for event in ordered {
            fold.apply(&event.kind);
        }
        fold.status
    }
}

/// The state machine of [`MessageStatus::fold`], for readers that fold a
/// message's events one at a time, in canonical order, and keep the state
/// between events (the reporting projector stores it per message).
/// `MessageStatus::fold` is exactly this machine run over the sorted events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusFold {
    status: Option<MessageStatus>,
    segments: u16,
    delivered: BTreeSet<u16>,
}

impl StatusFold {
    /// A fold that has seen nothing, for a message of `segments` segments
    /// (from its `Accepted`; 1 while unknown).
    pub fn new(segments: Option<u16>) -> Self {
        Self { status: None, segments: segments.unwrap_or(1), delivered: BTreeSet::new() }
    }

    /// A fold resumed from what [`StatusFold::status`] and
    /// [`StatusFold::delivered`] said when it was put aside.
    pub fn resume(status: Option<MessageStatus>, segments: Option<u16>, delivered: BTreeSet<u16>) -> Self {
        Self { status, segments: segments.unwrap_or(1), delivered }
    }

    /// The status so far.
    pub fn status(&self) -> Option<MessageStatus> {
        self.status
    }

    /// The segments whose delivered receipt was folded so far.
    pub fn delivered(&self) -> &BTreeSet<u16> {
        &self.delivered
    }

    /// Folds the next event (events must come in [`Event::sequence_key`] order).
    pub fn apply(&mut self, kind: &EventKind) {
        use MessageStatus as S;
        if self.status.is_some_and(S::is_terminal) {
            return;
        }
        let next = match kind {
            EventKind::Accepted { .. } => Some(S::Accepted),
            EventKind::InboundReceived { .. } => Some(S::Received),
            EventKind::Scheduled { .. } => Some(S::Scheduled),
            EventKind::Released => Some(S::Accepted),
            EventKind::Routed { .. } => Some(S::Routed),
            EventKind::SubmittedToSmsc { .. } => Some(S::Submitted),
            EventKind::DeliveryReport { segment, state, .. } => match state {
                DeliveryState::Delivered => {
                    self.delivered.insert(*segment);
                    let all = usize::from(self.segments.max(1));
                    Some(if self.delivered.len() >= all { S::Delivered } else { S::Submitted })
                }
                DeliveryState::Undeliverable => Some(S::Undeliverable),
                DeliveryState::Expired => Some(S::Expired),
                DeliveryState::Unknown => Some(S::Submitted),
            },
            EventKind::Expired => Some(S::Expired),
            EventKind::Rejected { .. } => Some(S::Rejected),
            EventKind::Cancelled { .. } => Some(S::Cancelled),
            EventKind::Failed { .. } | EventKind::SmscRejected { .. } | EventKind::DeadLettered { .. } => {
                Some(S::Failed)
            }
            EventKind::Charged { .. }
            | EventKind::Refunded { .. }
            | EventKind::SmscThrottled { .. }
            | EventKind::Retried { .. }
            | EventKind::ReplyMatched { .. }
            | EventKind::OptedOut { .. }
            | EventKind::OptedIn { .. }
            | EventKind::CallbackDelivered { .. }
            | EventKind::CallbackFailed { .. } => None,
        };
        if let Some(next) = next {
            // A late pipeline fact (a stale routing retry after submission, say)
            // must not move a message backwards.
            if self.status.is_none_or(|current| progress(next) >= progress(current)) {
                self.status = Some(next);
            }
        }
    }
}

fn progress(status: MessageStatus) -> u8 {
    match status {
        MessageStatus::Scheduled | MessageStatus::Accepted => 1,
        MessageStatus::Routed => 2,
        MessageStatus::Submitted => 3,
        _ => 4,
    }
}
