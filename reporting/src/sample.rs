//! A realistic synthetic journal, for benchmarks and tests: accounts (some
//! under a reseller), single and batch sends over several days, every
//! lifecycle path (delivered in one or several segments, undeliverable,
//! expired at the SMSC or before sending, rejected, failed by the SMSC,
//! dead-lettered, scheduled, cancelled, failover, still in flight), refunds,
//! callbacks, inbound replies and STOP keywords, and the disorder real
//! journals show (receipts journaled before their submission, clocks that
//! disagree, stale routing facts).

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tern_core::{AccountId, BatchId, DeliveryState, Encoding, Event, EventKind, MessageId};

/// What to generate.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// Outbound messages.
    pub messages: usize,
    /// Accounts sending them.
    pub accounts: usize,
    /// Days the acceptances spread over.
    pub days: i64,
    /// Fraction of adjacent journal records swapped (out-of-order arrival).
    pub disorder: f64,
    /// Seed: the same options give the same journal.
    pub seed: u64,
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self { messages: 1_000, accounts: 6, days: 5, disorder: 0.02, seed: 1 }
    }
}

struct Account {
    id: AccountId,
    reseller: Option<AccountId>,
    batches: Vec<BatchId>,
}

const CONNECTORS: [&str; 3] = ["smsc-a", "smsc-b", "smsc-c"];
const COUNTRIES: [(&str, &str); 4] = [("GB", "+4477009"), ("FR", "+3361234"), ("DE", "+4915112"), ("US", "+1202555")];

/// Generates the journal, in append order.
pub fn journal(options: &SampleOptions) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap_or_else(Utc::now);
    let resellers: Vec<AccountId> = (0..2).map(|_| AccountId::new()).collect();
    let accounts: Vec<Account> = (0..options.accounts.max(1))
        .map(|i| Account {
            id: AccountId::new(),
            reseller: (i % 3 == 0).then(|| resellers[i % 2]),
            batches: (0..2).map(|_| BatchId::new()).collect(),
        })
        .collect();
    let span_ms = options.days.max(1) * 86_400_000;
    let mut stamped: Vec<(DateTime<Utc>, u64, Event)> = Vec::new();
    let mut seq = 0u64;
    for _ in 0..options.messages {
        let account = &accounts[rng.random_range(0..accounts.len())];
        let at = start + TimeDelta::milliseconds(rng.random_range(0..span_ms));
        for event in lifecycle(&mut rng, account, at) {
            // Journal order follows the time a stage appended, which is the
            // event's own time, give or take a clock.
            let appended = event.at + TimeDelta::milliseconds(rng.random_range(0..50));
            stamped.push((appended, seq, event));
            seq += 1;
        }
    }
    stamped.sort_by_key(|(at, seq, _)| (*at, *seq));
    let mut events: Vec<Event> = stamped.into_iter().map(|(_, _, e)| e).collect();
    for i in 1..events.len() {
        if rng.random_bool(options.disorder.clamp(0.0, 1.0)) {
            events.swap(i - 1, i);
        }
    }
    events
}

fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

#[allow(clippy::too_many_lines)]
fn lifecycle(rng: &mut StdRng, account: &Account, accepted_at: DateTime<Utc>) -> Vec<Event> {
    let id = MessageId::new();
    let mut b = Life { id, owner: account.id, reseller: account.reseller, out: Vec::new() };
    let mut at = accepted_at;
    let (country, prefix) = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
    let segments: u16 = if rng.random_bool(0.2) { rng.random_range(2..=3) } else { 1 };
    let price = 5 * i64::from(segments);
    let batch_id = rng.random_bool(0.3).then(|| account.batches[rng.random_range(0..account.batches.len())]);
    b.push(
        at,
        EventKind::Accepted {
            to: format!("{prefix}{:04}", rng.random_range(0..10_000)),
            country: Some(country.into()),
            from: "ACME".into(),
            body: "Your code is 123456".into(),
            encoding: if rng.random_bool(0.1) { Encoding::Ucs2 } else { Encoding::Gsm7 },
            segments,
            batch_id,
            client_ref: rng.random_bool(0.2).then(|| format!("ref-{}", rng.random_range(0..1000))),
            callback_url: None,
            priority: 0,
            expires_at: at + TimeDelta::hours(48),
            price: Some(price),
            currency: Some("EUR".into()),
        },
    );
    let path = rng.random_range(0..100);
    if path >= 96 {
        return b.out; // still waiting for the pipeline
    }
    if (88..92).contains(&path) || (60..64).contains(&path) {
        at += ms(1);
        b.push(at, EventKind::Scheduled { send_at: at + TimeDelta::hours(1) });
        if path >= 88 {
            at += ms(rng.random_range(1_000..60_000));
            b.push(at, EventKind::Cancelled { by: "api".into() });
            return b.out;
        }
        at += TimeDelta::hours(1);
        b.push(at, EventKind::Released);
    }
    if (82..88).contains(&path) {
        at += ms(rng.random_range(1..30));
        let code = if rng.random_bool(0.5) { "opted_out" } else { "insufficient_balance" };
        b.push(at, EventKind::Rejected { code: code.into(), detail: "refused".into() });
        return b.out;
    }
    let mut connector = CONNECTORS[rng.random_range(0..CONNECTORS.len())];
    at += ms(rng.random_range(1..40));
    b.push(at, EventKind::Routed { connector: connector.into(), route: "default".into(), attempt: 1 });
    at += ms(rng.random_range(1..20));
    b.push(at, EventKind::Charged { payer: account.id, amount: price, currency: "EUR".into() });
    if let Some(reseller) = account.reseller {
        b.push(at, EventKind::Charged { payer: reseller, amount: 3 * i64::from(segments), currency: "EUR".into() });
    }
    match path {
        76..82 => {
            // Validity ran out before any SMSC took it.
            at += TimeDelta::hours(48);
            b.push(at, EventKind::Expired);
            b.refund(at + ms(1), price, segments, "expired");
            return b.out;
        }
        72..76 => {
            for attempt in 1..=3 {
                at += ms(rng.random_range(100..2_000));
                b.push(
                    at,
                    EventKind::Retried {
                        stage: "mt".into(),
                        attempt,
                        reason: "store away".into(),
                        retry_at: at + ms(500),
                    },
                );
            }
            at += ms(10);
            b.push(at, EventKind::DeadLettered { stage: "mt".into(), attempts: 3, last_error: "store away".into() });
            b.refund(at + ms(1), price, segments, "dead_lettered");
            return b.out;
        }
        66..72 => {
            at += ms(rng.random_range(10..200));
            b.push(at, EventKind::SmscRejected { connector: connector.into(), segment: 1, command_status: 0x0B });
            b.refund(at + ms(1), price, segments, "smsc_rejected");
            return b.out;
        }
        56..60 => {
            // The first connector gives the message back; failover to the next.
            at += ms(rng.random_range(10..200));
            b.push(at, EventKind::SmscThrottled { connector: connector.into(), command_status: 0x58, attempt: 1 });
            at += ms(rng.random_range(100..1_000));
            b.push(
                at,
                EventKind::Retried { stage: "connector".into(), attempt: 1, reason: "throttled".into(), retry_at: at },
            );
            connector = if connector == CONNECTORS[0] { CONNECTORS[1] } else { CONNECTORS[0] };
            at += ms(5);
            b.push(at, EventKind::Routed { connector: connector.into(), route: "default".into(), attempt: 2 });
        }
        _ => {}
    }
    let mut submitted = Vec::new();
    for segment in 1..=segments {
        at += ms(rng.random_range(5..100));
        b.push(
            at,
            EventKind::SubmittedToSmsc {
                connector: connector.into(),
                segment,
                smsc_message_id: format!("{id}-{segment}"),
            },
        );
        submitted.push(at);
    }
    if (52..56).contains(&path) {
        return b.out; // with the SMSC, no receipt yet
    }
    if rng.random_bool(0.05) {
        // A stale routing fact recorded after submission must not move the status back.
        b.push(at + ms(3), EventKind::Routed { connector: connector.into(), route: "stale".into(), attempt: 9 });
    }
    let state = match path {
        44..52 => DeliveryState::Undeliverable,
        40..44 => DeliveryState::Expired,
        _ => DeliveryState::Delivered,
    };
    for segment in 1..=segments {
        let mut receipt_at = at + ms(rng.random_range(500..30_000));
        if rng.random_bool(0.03) {
            // The SMSC's clock is behind ours: the receipt predates its submission.
            receipt_at = submitted[usize::from(segment - 1)] - ms(rng.random_range(1..500));
        }
        if rng.random_bool(0.1) {
            let kind = EventKind::DeliveryReport {
                segment,
                smsc_message_id: format!("{id}-{segment}"),
                state: DeliveryState::Unknown,
                error_code: None,
            };
            b.push(receipt_at - ms(1), kind);
        }
        let error_code = (state != DeliveryState::Delivered).then_some(1);
        let smsc_message_id = format!("{id}-{segment}");
        b.push(receipt_at, EventKind::DeliveryReport { segment, smsc_message_id, state, error_code });
        if state != DeliveryState::Delivered {
            break;
        }
    }
    let last = b.out.last().map_or(at, |e| e.at);
    if rng.random_bool(0.3)
        && let Some(for_event) = b.out.last().map(|e| e.id)
    {
        let url = "https://example.com/cb".into();
        b.push(last + ms(200), EventKind::CallbackDelivered { for_event, url, http_status: 200, attempts: 1 });
    }
    if rng.random_bool(0.1) {
        let at = last + ms(rng.random_range(10_000..600_000));
        b.out.extend(reply(rng, id, account.id, at));
    }
    b.out
}

/// One message's events being made.
struct Life {
    id: MessageId,
    owner: AccountId,
    reseller: Option<AccountId>,
    out: Vec<Event>,
}

impl Life {
    fn push(&mut self, at: DateTime<Utc>, kind: EventKind) {
        self.out.push(Event::new(self.id, Some(self.owner), at, kind));
    }

    /// Gives back what the owner and its reseller were charged.
    fn refund(&mut self, at: DateTime<Utc>, price: i64, segments: u16, reason: &str) {
        let currency = "EUR".to_owned();
        let reason = reason.to_owned();
        let payer = self.owner;
        self.push(at, EventKind::Refunded { payer, amount: price, currency: currency.clone(), reason: reason.clone() });
        if let Some(payer) = self.reseller {
            self.push(at, EventKind::Refunded { payer, amount: 3 * i64::from(segments), currency, reason });
        }
    }
}

/// An inbound reply to `outbound`, sometimes a STOP.
fn reply(rng: &mut StdRng, outbound: MessageId, account: AccountId, at: DateTime<Utc>) -> Vec<Event> {
    let inbound = MessageId::new();
    let stop = rng.random_bool(0.2);
    let body = if stop { "STOP" } else { "Thanks!" };
    let mut events = vec![
        Event::new(
            inbound,
            None,
            at,
            EventKind::InboundReceived {
                from: "+447700900123".into(),
                to: "ACME".into(),
                body: body.into(),
                connector: CONNECTORS[0].into(),
            },
        ),
        Event::new(inbound, Some(account), at + ms(5), EventKind::ReplyMatched { outbound_message_id: outbound }),
    ];
    if stop {
        events.push(Event::new(
            inbound,
            Some(account),
            at + ms(6),
            EventKind::OptedOut { number: "+447700900123".into(), keyword: "STOP".into() },
        ));
    }
    events
}
