//! Follows the journal during the run (the truth every invariant is
//! checked against) and, at the end, checks the brief's invariants.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use tern_core::{AccountId, Event, EventKind, MessageId, MessageStatus};
use tern_queue::{Position, Store};
use tern_reporting::ReportStore;

use super::report::{Invariant, Percentiles, Second};

/// Journal records read per step.
const READ: usize = 10_000;
/// Offenders named in an invariant's detail.
const SHOWN: usize = 5;

/// What the journal says of one outbound message.
#[derive(Debug, Default)]
struct Tracked {
    /// The events that move its status (bodies dropped to save memory).
    events: Vec<Event>,
    status: Option<MessageStatus>,
    accepted_at: Option<DateTime<Utc>>,
    scheduled: bool,
    with_callback: bool,
    batch: Option<String>,
    first_submit: Option<DateTime<Utc>>,
    last_receipt: Option<DateTime<Utc>>,
    charged: i64,
    refunded: i64,
}

/// The journal, folded as it grows.
#[derive(Debug, Default)]
pub struct Tracker {
    position: Position,
    messages: HashMap<MessageId, Tracked>,
    terminal: u64,
    events: u64,
    unknown_outcomes: u64,
    inbound: u64,
    callbacks_delivered: Vec<(String, String)>,
    callbacks_failed: Vec<MessageId>,
    charges: HashMap<AccountId, i64>,
}

impl Tracker {
    /// Reads what the journal gained since the last call; returns how many records.
    pub async fn step(&mut self, store: &Store) -> anyhow::Result<usize> {
        let mut read = 0;
        loop {
            let records = store.journal().read_from(self.position, READ).await?;
            let Some(last) = records.last() else { return Ok(read) };
            self.position = last.position;
            read += records.len();
            for record in records {
                self.absorb(record.event);
            }
        }
    }

    fn absorb(&mut self, mut event: Event) {
        self.events += 1;
        match &event.kind {
            EventKind::Charged { payer, amount, .. } => {
                *self.charges.entry(*payer).or_default() -= amount;
                self.messages.entry(event.message_id).or_default().charged += amount;
                return;
            }
            EventKind::Refunded { payer, amount, .. } => {
                *self.charges.entry(*payer).or_default() += amount;
                self.messages.entry(event.message_id).or_default().refunded += amount;
                return;
            }
            EventKind::CallbackDelivered { for_event, .. } => {
                self.callbacks_delivered.push((for_event.to_string(), event.message_id.to_string()));
                return;
            }
            EventKind::CallbackFailed { .. } => {
                self.callbacks_failed.push(event.message_id);
                return;
            }
            EventKind::InboundReceived { .. } => {
                self.inbound += 1;
                return;
            }
            EventKind::SmscThrottled { command_status: 0, .. } => self.unknown_outcomes += 1,
            _ => {}
        }
        if !tern_reporting::fold::affects_status(&event.kind) {
            return;
        }
        let tracked = self.messages.entry(event.message_id).or_default();
        match &mut event.kind {
            EventKind::Accepted { body, callback_url, batch_id, .. } => {
                body.clear();
                tracked.accepted_at = Some(event.at);
                tracked.with_callback = callback_url.is_some();
                tracked.batch = batch_id.map(|b| b.to_string());
            }
            EventKind::Scheduled { .. } => tracked.scheduled = true,
            EventKind::SubmittedToSmsc { .. } => {
                tracked.first_submit = Some(tracked.first_submit.map_or(event.at, |t| t.min(event.at)));
            }
            EventKind::DeliveryReport { .. } => {
                tracked.last_receipt = Some(tracked.last_receipt.map_or(event.at, |t| t.max(event.at)));
            }
            _ => {}
        }
        tracked.events.push(event);
        let was_terminal = tracked.status.is_some_and(MessageStatus::is_terminal);
        tracked.status = MessageStatus::fold(&tracked.events);
        let is_terminal = tracked.status.is_some_and(MessageStatus::is_terminal);
        self.terminal = self.terminal + u64::from(is_terminal) - u64::from(was_terminal);
    }

    /// Outbound messages the journal has accepted.
    pub fn accepted(&self) -> u64 {
        self.messages.values().filter(|t| t.accepted_at.is_some()).count() as u64
    }

    /// Accepted messages not yet in a terminal state.
    pub fn unfinished(&self) -> u64 {
        self.accepted().saturating_sub(self.terminal)
    }

    /// Where the tracker has read to.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Journal events read.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Unknown outcomes recorded by connectors.
    pub fn unknown_outcomes(&self) -> u64 {
        self.unknown_outcomes
    }

    /// Inbound messages recorded.
    pub fn inbound(&self) -> u64 {
        self.inbound
    }

    /// Callbacks recorded as given up.
    pub fn callbacks_given_up(&self) -> u64 {
        self.callbacks_failed.len() as u64
    }

    /// Messages by status.
    pub fn by_status(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for tracked in self.messages.values().filter(|t| t.accepted_at.is_some()) {
            let status = tracked.status.map_or("unknown", MessageStatus::as_str);
            *counts.entry(status.to_owned()).or_default() += 1;
        }
        counts
    }

    /// Per-second submits and receipts (from `start`) and the latency
    /// percentiles of accept→submit and accept→receipt. Scheduled messages
    /// are left out of the latencies: they wait on purpose.
    pub fn timings(&self, start: DateTime<Utc>, seconds: usize) -> (Vec<Second>, Percentiles, Percentiles) {
        let mut timeline: Vec<Second> = (0..seconds).map(|t| Second { t: t as u32, ..Second::default() }).collect();
        let mut receipt_samples: Vec<Vec<f64>> = vec![Vec::new(); seconds];
        let (mut to_submit, mut to_receipt) = (Vec::new(), Vec::new());
        let second_of = |at: DateTime<Utc>| usize::try_from((at - start).num_milliseconds() / 1_000).ok();
        for tracked in self.messages.values() {
            let Some(accepted) = tracked.accepted_at else { continue };
            if let Some(submit) = tracked.first_submit {
                if let Some(slot) = second_of(submit).and_then(|s| timeline.get_mut(s)) {
                    slot.submitted += 1;
                }
                if !tracked.scheduled {
                    to_submit.push((submit - accepted).num_microseconds().unwrap_or(0) as f64 / 1_000.0);
                }
            }
            let receipt = tracked.last_receipt.filter(|_| tracked.status.is_some_and(MessageStatus::is_terminal));
            if let Some(receipt) = receipt {
                let latency = (receipt - accepted).num_microseconds().unwrap_or(0) as f64 / 1_000.0;
                if let Some(s) = second_of(receipt).filter(|s| *s < seconds) {
                    timeline[s].receipts += 1;
                    if !tracked.scheduled {
                        receipt_samples[s].push(latency);
                    }
                }
                if !tracked.scheduled {
                    to_receipt.push(latency);
                }
            }
        }
        for (slot, mut samples) in timeline.iter_mut().zip(receipt_samples) {
            slot.receipt_p50_ms = Percentiles::of(&mut samples).p50;
        }
        (timeline, Percentiles::of(&mut to_submit), Percentiles::of(&mut to_receipt))
    }

    /// Messages whose receipt was recorded at or before `until`, among those accepted then.
    pub fn finished_by(&self, until: DateTime<Utc>) -> u64 {
        self.messages
            .values()
            .filter(|t| t.accepted_at.is_some_and(|a| a <= until))
            .filter(|t| t.status.is_some_and(MessageStatus::is_terminal))
            .count() as u64
    }
}

/// What the invariants are checked with, besides the journal.
#[derive(Debug)]
pub struct Evidence<'a> {
    /// Ids of single sends the API accepted.
    pub message_ids: &'a [String],
    /// Batches the API accepted, with their accepted counts.
    pub batches: &'a [(String, u64)],
    /// Messages the clients saw accepted, and those whose requests they gave up.
    pub client_accepted: u64,
    pub abandoned: u64,
    /// Repeats the simulator counted.
    pub duplicates: u64,
    /// How many duplicates the kills of connector-running processes and the store restarts allow
    /// (batches in flight per kill).
    pub kill_allowance: u64,
    /// Balance now and top-ups, per account.
    pub balances: Vec<(AccountId, i64, i64)>,
    /// Callbacks the endpoint took.
    pub received: &'a super::receiver::Received,
}

/// Checks every invariant against the journal (and the reporting store).
pub async fn check(tracker: &Tracker, reports: &ReportStore, evidence: &Evidence<'_>) -> Vec<Invariant> {
    let mut out = vec![
        every_acceptance_is_journaled(tracker, evidence),
        every_message_is_terminal(tracker),
        no_duplicate_beyond_the_window(tracker, evidence),
        balances_add_up(tracker, evidence),
    ];
    out.push(match store_equals_fold(tracker, reports).await {
        Ok(invariant) => invariant,
        Err(e) => Invariant {
            name: "the SQL store equals a fold of the journal".into(),
            held: false,
            detail: format!("cannot read the store: {e:#}"),
        },
    });
    out.push(callbacks_settled(tracker, evidence));
    out
}

fn invariant(name: &str, offenders: &[String], figures: String) -> Invariant {
    let detail = if offenders.is_empty() {
        figures
    } else {
        format!(
            "{figures}; {} offenders, first: {}",
            offenders.len(),
            offenders.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ")
        )
    };
    Invariant { name: name.into(), held: offenders.is_empty(), detail }
}

fn every_acceptance_is_journaled(tracker: &Tracker, evidence: &Evidence<'_>) -> Invariant {
    let mut offenders: Vec<String> = evidence
        .message_ids
        .iter()
        .filter(|id| {
            id.parse::<MessageId>()
                .ok()
                .and_then(|id| tracker.messages.get(&id))
                .is_none_or(|t| t.accepted_at.is_none())
        })
        .map(|id| format!("message {id}"))
        .collect();
    let mut per_batch: HashMap<&str, u64> = HashMap::new();
    for tracked in tracker.messages.values() {
        if let Some(batch) = &tracked.batch {
            *per_batch.entry(batch.as_str()).or_default() += 1;
        }
    }
    for (batch, accepted) in evidence.batches {
        let journaled = per_batch.get(batch.as_str()).copied().unwrap_or(0);
        if journaled != *accepted {
            offenders.push(format!("batch {batch}: {accepted} accepted, {journaled} journaled"));
        }
    }
    let journaled = tracker.accepted();
    let most = evidence.client_accepted + evidence.abandoned;
    if journaled < evidence.client_accepted || journaled > most {
        offenders.push(format!(
            "the journal holds {journaled} accepted messages, outside [{}, {most}]",
            evidence.client_accepted
        ));
    }
    invariant(
        "every message answered 202 is in the journal, exactly once",
        &offenders,
        format!(
            "{} answered 202, {} of abandoned requests, {journaled} journaled",
            evidence.client_accepted, evidence.abandoned
        ),
    )
}

fn every_message_is_terminal(tracker: &Tracker) -> Invariant {
    let offenders: Vec<String> = tracker
        .messages
        .iter()
        .filter(|(_, t)| t.accepted_at.is_some() && !t.status.is_some_and(MessageStatus::is_terminal))
        .map(|(id, t)| format!("{id} ({})", t.status.map_or("unknown", MessageStatus::as_str)))
        .collect();
    invariant(
        "every accepted message reached a terminal state",
        &offenders,
        format!("{} accepted, {} terminal", tracker.accepted(), tracker.terminal),
    )
}

fn no_duplicate_beyond_the_window(tracker: &Tracker, evidence: &Evidence<'_>) -> Invariant {
    let allowed = tracker.unknown_outcomes + evidence.kill_allowance;
    let offenders = if evidence.duplicates > allowed {
        vec![format!("{} duplicates > {allowed} allowed", evidence.duplicates)]
    } else {
        Vec::new()
    };
    invariant(
        "no message submitted more often than the documented window allows",
        &offenders,
        format!(
            "{} repeats seen by the SMSC; allowed: {} unknown outcomes + {} for connector kills and store restarts",
            evidence.duplicates, tracker.unknown_outcomes, evidence.kill_allowance
        ),
    )
}

fn balances_add_up(tracker: &Tracker, evidence: &Evidence<'_>) -> Invariant {
    let mut offenders = Vec::new();
    let mut spent = 0;
    for (account, balance, top_ups) in &evidence.balances {
        let movements = tracker.charges.get(account).copied().unwrap_or(0);
        spent -= movements;
        if *balance != top_ups + movements {
            offenders
                .push(format!("{account}: balance {balance} ≠ {top_ups} topped up {movements:+} charged/refunded"));
        }
    }
    invariant(
        "balances equal top-ups − charges + refunds",
        &offenders,
        format!("{} accounts, {spent} charged net", evidence.balances.len()),
    )
}

async fn store_equals_fold(tracker: &Tracker, reports: &ReportStore) -> anyhow::Result<Invariant> {
    // Cast to text: PostgreSQL keeps ids as UUID, SQLite as TEXT.
    const SQL: &str = "SELECT CAST(message_id AS TEXT), CAST(status AS TEXT), CAST(charged AS TEXT), \
                       CAST(refunded AS TEXT) FROM messages";
    let rows: Vec<(String, Option<String>, String, String)> = match reports {
        ReportStore::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await?,
        ReportStore::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await?,
    };
    let mut offenders = Vec::new();
    let mut seen = 0usize;
    for (id, status, charged, refunded) in &rows {
        let Some(tracked) = id.parse::<MessageId>().ok().and_then(|id| tracker.messages.get(&id)) else {
            offenders.push(format!("{id}: in the store, not in the journal"));
            continue;
        };
        seen += 1;
        let folded = tracked.status.map(MessageStatus::as_str);
        let money = (tracked.charged.to_string(), tracked.refunded.to_string());
        if status.as_deref() != folded || (charged, refunded) != (&money.0, &money.1) {
            offenders.push(format!(
                "{id}: store {status:?} {charged}/{refunded}, journal {folded:?} {}/{}",
                money.0, money.1
            ));
        }
    }
    let outbound = tracker.messages.values().filter(|t| !t.events.is_empty()).count();
    if seen != outbound {
        offenders.push(format!("{outbound} messages in the journal, {seen} in the store"));
    }
    Ok(invariant(
        "the SQL store equals a fold of the journal",
        &offenders,
        format!("{} rows compared (status, charged, refunded)", rows.len()),
    ))
}

fn callbacks_settled(tracker: &Tracker, evidence: &Evidence<'_>) -> Invariant {
    let received = evidence.received;
    let mut offenders: Vec<String> = tracker
        .callbacks_delivered
        .iter()
        .filter(|(event, _)| !received.has_event(event))
        .map(|(event, message)| format!("{message}: callback for event {event} recorded delivered, never received"))
        .collect();
    let given_up: std::collections::HashSet<&MessageId> = tracker.callbacks_failed.iter().collect();
    let mut expected = 0;
    for (id, tracked) in &tracker.messages {
        let Some(status) = tracked.status.filter(|s| s.is_terminal()) else { continue };
        if !tracked.with_callback {
            continue;
        }
        expected += 1;
        if !received.has_status(&id.to_string(), status.as_str()) && !given_up.contains(id) {
            offenders.push(format!("{id}: no `{}` callback delivered or given up", status.as_str()));
        }
    }
    invariant(
        "every callback was delivered or recorded as given up",
        &offenders,
        format!(
            "{} callbacks recorded delivered, {} given up, {} events received; final status of {expected} messages checked",
            tracker.callbacks_delivered.len(),
            tracker.callbacks_failed.len(),
            received.event_count()
        ),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tern_core::{DeliveryState, Encoding};

    use super::super::receiver::Received;
    use super::*;

    fn accepted(message: MessageId, account: AccountId, at: DateTime<Utc>, callback: bool) -> Event {
        Event::new(
            message,
            Some(account),
            at,
            EventKind::Accepted {
                to: "+447400123456".into(),
                country: Some("GB".into()),
                from: "Stress".into(),
                body: "hello".into(),
                encoding: Encoding::Gsm7,
                segments: 1,
                batch_id: None,
                client_ref: None,
                callback_url: callback.then(|| "http://127.0.0.1:1/status".into()),
                priority: 0,
                expires_at: at + chrono::Duration::hours(1),
                price: Some(2),
                currency: Some("EUR".into()),
            },
        )
    }

    fn lifecycle(message: MessageId, account: AccountId, at: DateTime<Utc>) -> Vec<Event> {
        let later = |ms| at + chrono::Duration::milliseconds(ms);
        vec![
            Event::new(
                message,
                Some(account),
                later(1),
                EventKind::Routed { connector: "sim".into(), route: "default".into(), attempt: 1 },
            ),
            Event::new(
                message,
                Some(account),
                later(2),
                EventKind::Charged { payer: account, amount: 2, currency: "EUR".into() },
            ),
            Event::new(
                message,
                Some(account),
                later(3),
                EventKind::SubmittedToSmsc { connector: "sim".into(), segment: 0, smsc_message_id: "1".into() },
            ),
            Event::new(
                message,
                Some(account),
                later(400),
                EventKind::DeliveryReport {
                    segment: 0,
                    smsc_message_id: "1".into(),
                    state: DeliveryState::Delivered,
                    error_code: None,
                },
            ),
        ]
    }

    fn evidence<'a>(ids: &'a [String], received: &'a Received, balance: (AccountId, i64)) -> Evidence<'a> {
        Evidence {
            message_ids: ids,
            batches: &[],
            client_accepted: ids.len() as u64,
            abandoned: 0,
            duplicates: 0,
            kill_allowance: 0,
            balances: vec![(balance.0, balance.1, 100)],
            received,
        }
    }

    #[test]
    fn the_invariants_hold_for_a_finished_message_and_break_for_an_unfinished_one() {
        let (message, account, at) = (MessageId::new(), AccountId::new(), Utc::now());
        let mut tracker = Tracker::default();
        tracker.absorb(accepted(message, account, at, false));
        let ids = [message.to_string()];
        let received = Received::default();
        assert!(every_acceptance_is_journaled(&tracker, &evidence(&ids, &received, (account, 100))).held);
        let unfinished = every_message_is_terminal(&tracker);
        assert!(!unfinished.held);
        assert!(unfinished.detail.contains(&message.to_string()), "{}", unfinished.detail);
        assert_eq!(tracker.unfinished(), 1);

        // Events arrive out of order: the receipt before its submit.
        let mut events = lifecycle(message, account, at);
        events.swap(2, 3);
        for event in events {
            tracker.absorb(event);
        }
        assert_eq!(tracker.unfinished(), 0);
        assert!(every_message_is_terminal(&tracker).held);
        assert_eq!(tracker.by_status().get("delivered"), Some(&1));
        assert!(balances_add_up(&tracker, &evidence(&ids, &received, (account, 98))).held);
        let wrong = balances_add_up(&tracker, &evidence(&ids, &received, (account, 100)));
        assert!(!wrong.held && wrong.detail.contains("balance 100"), "{}", wrong.detail);
        let (timeline, to_submit, to_receipt) = tracker.timings(at, 2);
        assert_eq!((timeline[0].submitted, timeline[0].receipts), (1, 1));
        assert_eq!((to_submit.p50, to_receipt.p50), (3.0, 400.0));
    }

    #[test]
    fn an_acceptance_missing_from_the_journal_and_extra_duplicates_break_invariants() {
        let tracker = Tracker::default();
        let ids = [MessageId::new().to_string()];
        let received = Received::default();
        let mut evidence = evidence(&ids, &received, (AccountId::new(), 100));
        assert!(!every_acceptance_is_journaled(&tracker, &evidence).held);
        evidence.duplicates = 3;
        evidence.kill_allowance = 2;
        assert!(!no_duplicate_beyond_the_window(&tracker, &evidence).held);
        evidence.kill_allowance = 3;
        assert!(no_duplicate_beyond_the_window(&tracker, &evidence).held);
    }

    #[test]
    fn a_callback_recorded_delivered_must_have_arrived_and_the_final_status_must_be_told() {
        let (message, account, at) = (MessageId::new(), AccountId::new(), Utc::now());
        let mut tracker = Tracker::default();
        tracker.absorb(accepted(message, account, at, true));
        let events = lifecycle(message, account, at);
        let receipt = events[3].id;
        for event in events {
            tracker.absorb(event);
        }
        tracker.absorb(Event::new(
            message,
            Some(account),
            at + chrono::Duration::seconds(1),
            EventKind::CallbackDelivered {
                for_event: receipt,
                url: "http://127.0.0.1:1/status".into(),
                http_status: 204,
                attempts: 1,
            },
        ));
        let ids = [message.to_string()];
        let received = Received::default();
        let broken = callbacks_settled(&tracker, &evidence(&ids, &received, (account, 98)));
        assert!(!broken.held);
        assert!(broken.detail.contains("never received"), "{}", broken.detail);
        received.record(&receipt.to_string(), &message.to_string(), "delivered");
        assert!(callbacks_settled(&tracker, &evidence(&ids, &received, (account, 98))).held);
    }
}
