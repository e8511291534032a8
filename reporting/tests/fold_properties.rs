//! Property: for random journals over many messages (every lifecycle path,
//! retries, stray late facts, duplicates, out-of-order arrival) applied in
//! random batches, some of them twice or overlapping, the projected
//! `messages`, `daily_stats`, `batches` and `inbound_messages` equal what
//! `MessageStatus::fold` and the events give directly
//! (`test_suite::expected`, which shares no code with the projector).
//!
//! On SQLite and on PostgreSQL (`TERN_TEST_POSTGRES_URL`; fails without it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::TimeDelta;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tern_core::{DeliveryState, Event, EventKind};
use tern_queue::{JournalRecord, Position};
use tern_reporting::ReportStore;
use tern_reporting::sample::{SampleOptions, journal};
use tern_reporting::test_suite::{assert_matches_fold, postgres_reports, sqlite_reports};

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap());

/// A journal: the sample, plus stray facts with arbitrary times, shuffled
/// locally, each event id once (as the journal keeps it).
fn events(seed: u64, messages: usize, disorder: f64, strays: usize) -> Vec<Event> {
    let mut events = journal(&SampleOptions { messages, accounts: 3, days: 3, disorder, seed });
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    for _ in 0..strays {
        let Some(base) = events.get(rng.random_range(0..events.len().max(1))).cloned() else { break };
        let at = base.at + TimeDelta::milliseconds(rng.random_range(-5_000..5_000));
        let kind = match rng.random_range(0..6) {
            0 => EventKind::Expired,
            1 => EventKind::DeliveryReport {
                segment: rng.random_range(1..=3),
                smsc_message_id: "stray".into(),
                state: DeliveryState::Delivered,
                error_code: None,
            },
            2 => {
                EventKind::Routed { connector: "smsc-z".into(), route: "stray".into(), attempt: rng.random_range(1..5) }
            }
            3 => EventKind::SubmittedToSmsc {
                connector: "smsc-z".into(),
                segment: rng.random_range(1..=3),
                smsc_message_id: "stray".into(),
            },
            4 => EventKind::Released,
            _ => EventKind::Failed { code: "stray".into(), detail: "late".into(), smpp_status: None },
        };
        let at_index = rng.random_range(0..=events.len());
        events.insert(at_index, Event::new(base.message_id, base.account_id, at, kind));
    }
    for _ in 0..events.len() / 4 {
        let i = rng.random_range(0..events.len());
        let j = (i + rng.random_range(0..30)).min(events.len() - 1);
        events.swap(i, j);
    }
    let mut seen = HashSet::new();
    events.retain(|e| seen.insert(e.id));
    events
}

async fn project(store: &ReportStore, events: &[Event], splits: &[usize], overlaps: &[usize]) {
    store.reset().await.unwrap();
    let records: Vec<JournalRecord> = events
        .iter()
        .enumerate()
        .map(|(i, e)| JournalRecord { position: Position(i as u64 + 1), event: e.clone() })
        .collect();
    let mut start = 0;
    let mut turn = 0;
    while start < records.len() {
        let end = (start + splits[turn % splits.len()]).min(records.len());
        // Sometimes the batch starts before the checkpoint: those records were applied already.
        let from = start.saturating_sub(overlaps[turn % overlaps.len()]);
        let outcome = store.apply(&records[from..end]).await.unwrap();
        assert_eq!(outcome.applied, end - start);
        assert_eq!(outcome.checkpoint, records[end - 1].position);
        start = end;
        turn += 1;
    }
    assert_matches_fold(store, events).await;
}

fn journals() -> impl Strategy<Value = Vec<Event>> {
    (any::<u64>(), 1usize..80, 0.0f64..0.6, 0usize..40)
        .prop_map(|(seed, n, disorder, strays)| events(seed, n, disorder, strays))
}

/// Runs the property on one store (reset before each case).
fn property_holds_on(store: &ReportStore) {
    let batches = prop::collection::vec(1usize..200, 1..6);
    let overlaps = prop::collection::vec(prop_oneof![Just(0usize), 1usize..50], 1..4);
    let mut runner = TestRunner::new(ProptestConfig { cases: 48, ..ProptestConfig::default() });
    runner
        .run(&(journals(), batches, overlaps), |(events, batches, overlaps)| {
            RUNTIME.block_on(project(store, &events, &batches, &overlaps));
            Ok(())
        })
        .unwrap();
}

#[test]
fn sqlite_projection_equals_the_fold() {
    let (store, _guard) = RUNTIME.block_on(sqlite_reports());
    property_holds_on(&store);
}

#[test]
fn postgres_projection_equals_the_fold() {
    let (store, _guard) = RUNTIME.block_on(postgres_reports());
    property_holds_on(&store);
    RUNTIME.block_on(store.close());
}
