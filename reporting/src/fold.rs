//! A message's status fold kept incrementally, so a batch can apply a
//! message's new events without re-reading its earlier ones.
//!
//! The state machine is [`StatusFold`], the one [`MessageStatus::fold`]
//! runs. That fold sorts events by [`Event::sequence_key`], so appending an
//! event whose key is above every key folded so far is the same as folding
//! everything again; an event that sorts earlier (out-of-order arrival), or
//! an `Accepted` arriving after other status facts (it fixes the segment
//! count the fold needs from the start), makes the caller fold the
//! message's whole history again ([`FoldState::refold`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use tern_core::{DeliveryState, Event, EventId, EventKind, MessageStatus, StatusFold};

/// The ordering key of the fold.
pub type SequenceKey = (DateTime<Utc>, u8, EventId);

/// What [`FoldState::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state is up to date (the event may have changed nothing).
    Done,
    /// The event sorts before facts already folded: fold the whole history again.
    Refold,
}

/// The status fold of one message, as stored with its `messages` row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoldState {
    /// The fold itself.
    pub machine: StatusFold,
    /// Segment count from `Accepted`, if seen.
    pub segments: Option<u16>,
    /// Highest sequence key of a status fact seen.
    pub last: Option<SequenceKey>,
    /// When the status became terminal.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended, for failures and rejections.
    pub error_code: Option<String>,
}

/// Whether the fold looks at this kind of fact at all.
pub fn affects_status(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Accepted { .. }
            | EventKind::InboundReceived { .. }
            | EventKind::Scheduled { .. }
            | EventKind::Released
            | EventKind::Routed { .. }
            | EventKind::SubmittedToSmsc { .. }
            | EventKind::DeliveryReport { .. }
            | EventKind::Expired
            | EventKind::Rejected { .. }
            | EventKind::Cancelled { .. }
            | EventKind::Failed { .. }
            | EventKind::SmscRejected { .. }
            | EventKind::DeadLettered { .. }
    )
}

impl FoldState {
    /// The folded status.
    pub fn status(&self) -> Option<MessageStatus> {
        self.machine.status()
    }

    /// Folds one more fact in; asks for a refold when it cannot be appended.
    pub fn apply(&mut self, event: &Event) -> Applied {
        if !affects_status(&event.kind) {
            return Applied::Done;
        }
        let key = event.sequence_key();
        match &self.last {
            Some(last) if key == *last => return Applied::Done,
            Some(last) if key < *last => return Applied::Refold,
            Some(_) if matches!(event.kind, EventKind::Accepted { .. }) => return Applied::Refold,
            _ => {}
        }
        if let EventKind::Accepted { segments, .. } = event.kind {
            // The first status fact: nothing folded yet.
            self.segments = Some(segments);
            self.machine = StatusFold::new(self.segments);
        }
        self.last = Some(key);
        self.step(event);
        Applied::Done
    }

    /// The fold of a message's whole history (any order, duplicates allowed).
    pub fn refold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut ordered: Vec<&Event> = events.into_iter().filter(|e| affects_status(&e.kind)).collect();
        ordered.sort_by_key(|e| e.sequence_key());
        ordered.dedup_by_key(|e| e.sequence_key());
        let segments = ordered.iter().find_map(|e| match e.kind {
            EventKind::Accepted { segments, .. } => Some(segments),
            _ => None,
        });
        let mut state = Self { machine: StatusFold::new(segments), segments, ..Self::default() };
        for event in ordered {
            state.last = Some(event.sequence_key());
            state.step(event);
        }
        state
    }

    fn step(&mut self, event: &Event) {
        let before = self.machine.status();
        self.machine.apply(&event.kind);
        let after = self.machine.status();
        if after != before && after.is_some_and(MessageStatus::is_terminal) {
            self.ended_at = Some(event.at);
            self.error_code = error_code(&event.kind);
        }
    }
}

/// The machine-readable reason a failure or rejection carries.
fn error_code(kind: &EventKind) -> Option<String> {
    match kind {
        EventKind::Rejected { code, .. } | EventKind::Failed { code, .. } => Some(code.clone()),
        EventKind::SmscRejected { command_status, .. } => Some(format!("smsc_rejected:0x{command_status:08X}")),
        EventKind::DeadLettered { stage, .. } => Some(format!("dead_lettered:{stage}")),
        EventKind::DeliveryReport { error_code: Some(code), state, .. } if *state != DeliveryState::Delivered => {
            Some(format!("dlr:{code}"))
        }
        _ => None,
    }
}

/// Stored form of the delivered segments: `1,2,5`.
pub fn delivered_to_text(delivered: &BTreeSet<u16>) -> String {
    delivered.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

/// Parses [`delivered_to_text`]'s output.
pub fn delivered_from_text(text: &str) -> BTreeSet<u16> {
    text.split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

/// Stored form of a sequence key: `<at, RFC 3339 with nanoseconds>|<rank>|<event id>`.
pub fn key_to_text(key: &SequenceKey) -> String {
    format!("{}|{}|{}", key.0.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true), key.1, key.2)
}

/// Parses [`key_to_text`]'s output.
pub fn key_from_text(text: &str) -> Option<SequenceKey> {
    let mut parts = text.splitn(3, '|');
    let at = DateTime::parse_from_rfc3339(parts.next()?).ok()?.with_timezone(&Utc);
    let rank = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse().ok()?;
    Some((at, rank, id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeDelta;
    use tern_core::{AccountId, Encoding, MessageId};

    use super::*;

    fn accepted(m: MessageId, at: DateTime<Utc>, segments: u16) -> Event {
        Event::new(
            m,
            Some(AccountId::new()),
            at,
            EventKind::Accepted {
                to: "+447700900000".into(),
                country: Some("GB".into()),
                from: "ACME".into(),
                body: "hi".into(),
                encoding: Encoding::Gsm7,
                segments,
                batch_id: None,
                client_ref: None,
                callback_url: None,
                priority: 0,
                expires_at: at,
                price: None,
                currency: None,
            },
        )
    }

    fn dlr(m: MessageId, at: DateTime<Utc>, segment: u16) -> Event {
        let kind = EventKind::DeliveryReport {
            segment,
            smsc_message_id: "x".into(),
            state: DeliveryState::Delivered,
            error_code: None,
        };
        Event::new(m, None, at, kind)
    }

    #[test]
    fn in_order_facts_fold_incrementally_and_late_ones_ask_for_a_refold() {
        let m = MessageId::new();
        let t = Utc::now();
        let events = [accepted(m, t, 2), dlr(m, t + TimeDelta::seconds(2), 1), dlr(m, t + TimeDelta::seconds(1), 2)];
        let mut state = FoldState::default();
        assert_eq!(state.apply(&events[0]), Applied::Done);
        assert_eq!(state.apply(&events[1]), Applied::Done);
        assert_eq!(state.status(), Some(MessageStatus::Submitted));
        assert_eq!(state.apply(&events[2]), Applied::Refold);
        let state = FoldState::refold(&events);
        assert_eq!(state.status(), MessageStatus::fold(&events));
        assert_eq!(state.ended_at, Some(t + TimeDelta::seconds(2)));
    }

    #[test]
    fn a_late_accept_refolds_because_it_fixes_the_segment_count() {
        let m = MessageId::new();
        let t = Utc::now();
        let mut state = FoldState::default();
        assert_eq!(state.apply(&dlr(m, t, 1)), Applied::Done);
        assert_eq!(state.status(), Some(MessageStatus::Delivered));
        assert_eq!(state.apply(&accepted(m, t + TimeDelta::seconds(1), 3)), Applied::Refold);
    }

    #[test]
    fn stored_forms_round_trip() {
        let key = (Utc::now(), 7, EventId::derive(MessageId::new(), "x", ""));
        assert_eq!(key_from_text(&key_to_text(&key)), Some(key));
        let set: BTreeSet<u16> = [3, 1, 2].into();
        assert_eq!(delivered_from_text(&delivered_to_text(&set)), set);
        assert!(delivered_from_text("").is_empty());
    }
}
