//! The status fold depends only on the set of a message's events.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use tern_core::{AccountId, DeliveryState, Encoding, Event, EventKind, MessageId, MessageStatus};

#[derive(Debug, Clone, Copy)]
enum Ending {
    Delivered,
    Undeliverable,
    ExpiredReceipt,
    ValidityExpired,
    Rejected,
    SmscRejected,
    Cancelled,
    StillSubmitted,
    StillAccepted,
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        Just(Ending::Delivered),
        Just(Ending::Undeliverable),
        Just(Ending::ExpiredReceipt),
        Just(Ending::ValidityExpired),
        Just(Ending::Rejected),
        Just(Ending::SmscRejected),
        Just(Ending::Cancelled),
        Just(Ending::StillSubmitted),
        Just(Ending::StillAccepted),
    ]
}

/// Builds one plausible lifecycle and the status it must fold to. Several
/// events may share a timestamp (stages run within a millisecond).
fn lifecycle(
    segments: u16,
    scheduled: bool,
    routing_attempts: u32,
    end: Ending,
    steps: &[u8],
) -> (Vec<Event>, MessageStatus) {
    let m = MessageId::new();
    let account = AccountId::new();
    let base: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut clock = 0i64;
    let mut step = steps.iter().cycle();
    let mut events = Vec::new();
    let last_id = std::cell::Cell::new(None);
    let mut push = |kind: EventKind| {
        clock += i64::from(*step.next().unwrap_or(&0) % 3);
        let event = Event::new(m, Some(account), base + Duration::milliseconds(clock), kind);
        last_id.set(Some(event.id));
        events.push(event);
    };
    push(EventKind::Accepted {
        to: "+447700900123".into(),
        country: Some("GB".into()),
        from: "Tern".into(),
        body: "hi".into(),
        encoding: Encoding::Gsm7,
        segments,
        batch_id: None,
        client_ref: None,
        callback_url: None,
        priority: 0,
        expires_at: base + Duration::days(2),
        price: None,
        currency: None,
    });
    if scheduled {
        push(EventKind::Scheduled { send_at: base + Duration::hours(1) });
        if matches!(end, Ending::Cancelled) {
            push(EventKind::Cancelled { by: "api".into() });
            return (events, MessageStatus::Cancelled);
        }
        push(EventKind::Released);
    }
    match end {
        Ending::StillAccepted => return (events, MessageStatus::Accepted),
        Ending::Cancelled => {
            push(EventKind::Cancelled { by: "api".into() });
            return (events, MessageStatus::Cancelled);
        }
        Ending::Rejected => {
            push(EventKind::Rejected { code: "no_route".into(), detail: "no route".into() });
            return (events, MessageStatus::Rejected);
        }
        _ => {}
    }
    for attempt in 1..=routing_attempts {
        push(EventKind::Routed { connector: format!("c{attempt}"), route: "default".into(), attempt });
    }
    let payer = account;
    push(EventKind::Charged { payer, amount: 7 * i64::from(segments), currency: "EUR".into() });
    push(EventKind::SmscThrottled { connector: "c1".into(), command_status: 0x58, attempt: 1 });
    if let Ending::SmscRejected = end {
        push(EventKind::SmscRejected { connector: "c1".into(), segment: 1, command_status: 0x0b });
        push(EventKind::Refunded { payer, amount: 7, currency: "EUR".into(), reason: "failed".into() });
        return (events, MessageStatus::Failed);
    }
    for segment in 1..=segments {
        push(EventKind::SubmittedToSmsc { connector: "c1".into(), segment, smsc_message_id: format!("s{segment}") });
    }
    let receipt = |segment: u16, state| EventKind::DeliveryReport {
        segment,
        smsc_message_id: format!("s{segment}"),
        state,
        error_code: None,
    };
    let expected = match end {
        Ending::Delivered => {
            for segment in 1..=segments {
                push(receipt(segment, DeliveryState::Unknown));
                push(receipt(segment, DeliveryState::Delivered));
            }
            MessageStatus::Delivered
        }
        Ending::Undeliverable => {
            push(receipt(segments, DeliveryState::Undeliverable));
            MessageStatus::Undeliverable
        }
        Ending::ExpiredReceipt => {
            push(receipt(1, DeliveryState::Expired));
            MessageStatus::Expired
        }
        Ending::ValidityExpired => {
            if segments > 1 {
                push(receipt(1, DeliveryState::Delivered));
            }
            push(EventKind::Expired);
            MessageStatus::Expired
        }
        _ => {
            push(receipt(1, DeliveryState::Unknown));
            MessageStatus::Submitted
        }
    };
    let for_event = last_id.get().unwrap();
    push(EventKind::CallbackDelivered { for_event, url: "http://localhost/cb".into(), http_status: 200, attempts: 1 });
    (events, expected)
}

proptest! {
    #[test]
    fn fold_depends_only_on_the_set_of_events(
        segments in 1u16..5,
        scheduled in any::<bool>(),
        routing_attempts in 1u32..3,
        end in ending(),
        steps in proptest::collection::vec(any::<u8>(), 1..8),
        duplicate in any::<prop::sample::Index>(),
        shuffle_seed in any::<u64>(),
    ) {
        let (events, expected) = lifecycle(segments, scheduled, routing_attempts, end, &steps);
        prop_assert_eq!(MessageStatus::fold(&events), Some(expected));

        // Any arrival order, with a fact re-delivered, folds the same.
        let mut shuffled = events.clone();
        shuffled.push(events[duplicate.index(events.len())].clone());
        let mut state = shuffle_seed;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = (state >> 33) as usize % (i + 1);
            shuffled.swap(i, j);
        }
        prop_assert_eq!(MessageStatus::fold(&shuffled), Some(expected));
        prop_assert_eq!(expected.is_terminal(), !matches!(expected, MessageStatus::Accepted | MessageStatus::Submitted));
    }
}

#[test]
fn a_receipt_stamped_before_the_accept_does_not_complete_a_long_message() {
    let (events, _) = lifecycle(3, false, 1, Ending::StillSubmitted, &[1]);
    let m = events[0].message_id;
    let early = events[0].at - Duration::seconds(1);
    let mut skewed = events.clone();
    skewed.push(Event::new(
        m,
        None,
        early,
        EventKind::DeliveryReport {
            segment: 1,
            smsc_message_id: "s1".into(),
            state: DeliveryState::Delivered,
            error_code: None,
        },
    ));
    assert_eq!(MessageStatus::fold(&skewed), Some(MessageStatus::Submitted));
}

#[test]
fn no_events_means_no_status() {
    assert_eq!(MessageStatus::fold(&[]), None);
}

#[test]
fn a_terminal_state_absorbs_late_facts() {
    let (mut events, expected) = lifecycle(1, false, 1, Ending::Delivered, &[1]);
    assert_eq!(expected, MessageStatus::Delivered);
    let last = events.last().unwrap().at;
    events.push(Event::new(events[0].message_id, None, last + Duration::seconds(5), EventKind::Expired));
    assert_eq!(MessageStatus::fold(&events), Some(MessageStatus::Delivered));
}
