//! The backend conformance suite: one set of tests that every [`Store`]
//! backend must pass unchanged.
//!
//! Each test is a `pub async fn` taking a fresh, empty [`Store`]; the
//! [`store_test_suite!`](crate::store_test_suite) macro turns them into one
//! `#[tokio::test]` per test for a backend, given an async factory that makes
//! a fresh store per call (a new SQLite file, a new MongoDB database):
//!
//! ```ignore
//! async fn sqlite_store() -> tern_queue::Store { /* a store in a fresh temp dir */ }
//! tern_queue::store_test_suite!(sqlite_store);
//! ```
//!
//! Timing-sensitive checks ("not visible before its lease expires") only
//! assert invisibility for claims that *returned* before the earliest instant
//! the entry could legitimately reappear, and only expect visibility from
//! claims *issued* after the latest such instant, so a slow machine makes a
//! test fail loudly ("too slow to check") rather than wrongly.
//!
//! Backends may make an appended event readable through
//! [`Journal::read_from`] a little after `append` returns (a reserved
//! position settling); stream reads here retry for up to 10 s until the
//! expected events show up, then assert exactly what was read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod pipeline;
mod records;
mod smsc;

pub use pipeline::*;
pub use records::*;
pub use smsc::*;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tern_core::{AccountId, Encoding, Event, EventId, EventKind, MessageId};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

use crate::{
    Consumer, ConsumerOptions, Deliveries, Depth, Journal, JournalRecord, NackOutcome, NewEntry, Position,
    PublishReceipt, QueueError, Store,
};

/// A lease no test outlives.
const LONG: Duration = Duration::from_secs(60);
/// Slack added after an instant before expecting an entry to be visible
/// (covers millisecond truncation of stored times).
const MARGIN: Duration = Duration::from_millis(100);

/// Generates one `#[tokio::test]` per conformance test, each on a fresh
/// store from `$factory` (a path to an `async fn() -> tern_queue::Store`).
///
/// Expands to a module named `store_test_suite` in the calling module; the
/// calling crate needs `tokio` (with `macros` and `rt-multi-thread`).
#[macro_export]
macro_rules! store_test_suite {
    ($factory:path) => {
        $crate::store_test_suite!(@tests $factory;
            publish_and_claim_in_fifo_order,
            publish_is_idempotent_per_id,
            ack_settles_for_good_and_needs_the_current_lease,
            expired_leases_are_redelivered_and_extended_ones_are_not,
            nacked_entries_come_back_after_their_delay,
            nack_dead_letters_after_max_attempts,
            claim_dead_letters_entries_whose_consumers_keep_crashing,
            not_before_hides_entries_until_then,
            depth_counts_each_state_and_purge_removes_only_acked,
            journal_append_is_idempotent,
            journal_reads_in_append_order,
            journal_tail_never_skips_concurrent_appends,
            accept_writes_events_and_entries_together,
            concurrent_consumers_get_each_entry_exactly_once,
            settled_leases_cannot_be_extended,
            accounts_are_created_listed_and_suspended,
            top_ups_apply_once_per_reference,
            api_keys_are_found_listed_and_revoked,
            idempotency_records_replay_and_expire,
            accepted_messages_are_indexed_and_record_refreshes_their_status,
            charges_apply_once_per_message,
            a_charge_is_all_or_nothing_across_payers,
            debits_may_reach_minus_the_credit_limit_and_no_further,
            charges_in_one_call_see_the_earlier_ones,
            charging_an_unknown_account_changes_nothing,
            refunds_give_each_debit_back_once,
            a_charge_naming_one_payer_twice_is_refused,
            account_updates_change_only_what_they_name,
            opt_outs_are_per_account_and_reversible,
            the_latest_conversation_per_sender_and_handset_wins,
            inbound_messages_list_newest_first_by_cursor,
            a_lease_is_taken_over_only_after_it_expires,
            settings_count_their_versions,
            statuses_are_read_per_owner,
            expirable_messages_wait_for_the_grace_of_submitted_ones,
            messages_events_reads_several_messages_in_journal_order,
            racing_charges_debit_once_and_never_overdraw,
            racing_records_leave_the_index_at_the_fold_of_the_journal,
            smsc_ids_are_found_per_connector_and_the_latest_write_wins,
            old_smsc_ids_are_purged,
            inbound_parts_gather_until_deleted,
            stale_inbound_parts_are_purged,
        );
    };
    (@tests $factory:path; $($test:ident),* $(,)?) => {
        mod store_test_suite {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let store: $crate::Store = $factory().await;
                    $crate::test_suite::$test(&store).await;
                }
            )*
        }
    };
}

// ---------------------------------------------------------------- helpers

fn options(lease: Duration, max_attempts: u32) -> ConsumerOptions {
    ConsumerOptions { lease, max_attempts }
}

fn ids(claim: &Deliveries) -> Vec<String> {
    claim.deliveries.iter().map(|d| d.id().to_owned()).collect()
}

fn attempts(claim: &Deliveries) -> Vec<u32> {
    claim.deliveries.iter().map(|d| d.attempts()).collect()
}

fn receipt(inserted: usize, duplicates: usize) -> PublishReceipt {
    PublishReceipt { inserted, duplicates }
}

/// Now, truncated to the millisecond (what every backend can store exactly).
pub(crate) fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap()
}

fn routed(message: MessageId, attempt: u32) -> Event {
    Event::new(
        message,
        None,
        now_ms(),
        EventKind::Routed { connector: "smsc-a".into(), route: "default".into(), attempt },
    )
}

pub(crate) fn accepted(message: MessageId, account: AccountId) -> Event {
    Event::new(
        message,
        Some(account),
        now_ms(),
        EventKind::Accepted {
            to: "+447700900123".into(),
            country: Some("GB".into()),
            from: "Tern".into(),
            body: "Your code is 123456".into(),
            encoding: Encoding::Gsm7,
            segments: 1,
            batch_id: None,
            client_ref: Some("ref-1".into()),
            callback_url: None,
            priority: 0,
            expires_at: now_ms() + TimeDelta::days(1),
            price: None,
            currency: None,
        },
    )
}

/// Awaits a task, re-raising its panic (with its message) if it panicked.
async fn join<T>(task: JoinHandle<T>) -> T {
    match task.await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("task failed: {e}"),
    }
}

/// Claims on `consumer` and asserts nothing is visible. Valid only if the
/// claim returned before `deadline` (the earliest instant anything hidden
/// could legitimately reappear); fails loudly if the machine was too slow.
async fn assert_hidden_until(consumer: &Consumer, deadline: Instant, what: &str) {
    let claim = consumer.claim(100).await.unwrap();
    let returned = Instant::now();
    assert!(
        returned < deadline,
        "{what}: the claim returned {:?} after the deadline, too slow to check invisibility",
        returned - deadline
    );
    assert!(claim.deliveries.is_empty(), "{what}: claimed {:?} while it should be hidden", ids(&claim));
    assert!(claim.dead_lettered.is_empty(), "{what}: dead-lettered {:?}", claim.dead_lettered);
}

/// Reads `journal` from the start in pages of `page`, asserting that pages
/// respect the limit and positions strictly increase. Reads again (for up to
/// 10 s) until at least `expected` records are visible; returns the last read.
async fn read_journal(journal: &Journal, page: usize, expected: usize) -> Vec<JournalRecord> {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let mut records = Vec::new();
        let mut checkpoint = Position::START;
        loop {
            let batch = journal.read_from(checkpoint, page).await.unwrap();
            assert!(batch.len() <= page, "read_from returned {} records for a limit of {page}", batch.len());
            if batch.is_empty() {
                break;
            }
            for record in batch {
                assert!(
                    record.position > checkpoint,
                    "positions must strictly increase: {} came after {checkpoint}",
                    record.position
                );
                checkpoint = record.position;
                records.push(record);
            }
        }
        if records.len() >= expected || Instant::now() >= give_up {
            return records;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

fn events_of(records: &[JournalRecord]) -> Vec<Event> {
    records.iter().map(|r| r.event.clone()).collect()
}

// ---------------------------------------------------------------- queue

/// Claims hand out entries oldest first, at most `max` per claim, with
/// `attempts == 1` and the payload bytes exactly as published; topics are
/// independent (the same id in two topics is two entries).
pub async fn publish_and_claim_in_fifo_order(store: &Store) {
    let queue = store.queue();
    let sms = queue.producer("sms");
    let not_utf8: Vec<u8> = (0..=255u8).rev().chain([0, 0xc3, 0x28, 0xff]).collect();
    let big: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let first_batch = vec![
        NewEntry::new("e1", "one"),
        NewEntry::new("e2", not_utf8.clone()),
        NewEntry::new("e3", Vec::new()),
        NewEntry::new("e4", big.clone()),
    ];
    assert_eq!(sms.publish(first_batch).await.unwrap(), receipt(4, 0));
    let second_batch = vec![NewEntry::new("e5", "five"), NewEntry::new("e6", "six")];
    assert_eq!(sms.publish(second_batch).await.unwrap(), receipt(2, 0));
    let other = queue.producer("other");
    let other_batch = vec![NewEntry::new("o1", "x"), NewEntry::new("e1", "the other topic's e1")];
    assert_eq!(other.publish(other_batch).await.unwrap(), receipt(2, 0), "ids are per topic");

    let consumer = queue.consumer("sms", options(LONG, 10));
    let claim = consumer.claim(3).await.unwrap();
    assert_eq!(ids(&claim), ["e1", "e2", "e3"], "a claim of 3 takes the 3 oldest, oldest first");
    assert_eq!(attempts(&claim), [1, 1, 1]);
    assert!(claim.dead_lettered.is_empty());
    assert_eq!(claim.deliveries[0].payload(), b"one");
    assert_eq!(claim.deliveries[1].payload(), not_utf8.as_slice());
    assert_eq!(claim.deliveries[2].payload(), b"");
    for d in &claim.deliveries {
        assert_eq!(d.lease().topic, "sms");
        assert_eq!(d.lease().id, d.id());
    }

    let rest = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&rest), ["e4", "e5", "e6"], "the next claim continues in order, across publishes");
    assert_eq!(attempts(&rest), [1, 1, 1]);
    assert_eq!(rest.deliveries[0].payload(), big.as_slice());
    assert_eq!(rest.deliveries[1].payload(), b"five");
    assert!(consumer.claim(10).await.unwrap().deliveries.is_empty(), "everything is leased");

    let other_consumer = queue.consumer("other", options(LONG, 10));
    let others = other_consumer.claim(10).await.unwrap();
    assert_eq!(ids(&others), ["o1", "e1"], "claims on one topic leave the others alone");
    assert_eq!(others.deliveries[1].payload(), b"the other topic's e1");
    assert_eq!(others.deliveries[1].lease().topic, "other");
    assert_eq!(attempts(&others), [1, 1]);

    assert_eq!(queue.depth("sms").await.unwrap(), Depth { leased: 6, ..Depth::default() });
    assert_eq!(queue.depth("other").await.unwrap(), Depth { leased: 2, ..Depth::default() });
}

/// Publishing an id the topic already holds is a no-op, counted as a
/// duplicate (also within one batch); the first payload stays; an id
/// published again after it was acked is not delivered again.
pub async fn publish_is_idempotent_per_id(store: &Store) {
    let queue = store.queue();
    let sms = queue.producer("sms");
    let publish = |entries: Vec<(&str, &str)>| {
        let sms = sms.clone();
        let entries: Vec<NewEntry> = entries.into_iter().map(|(id, p)| NewEntry::new(id, p)).collect();
        async move { sms.publish(entries).await.unwrap() }
    };
    assert_eq!(publish(vec![("a", "a-first"), ("b", "b-first")]).await, receipt(2, 0));
    assert_eq!(publish(vec![("a", "a-second"), ("c", "c-first")]).await, receipt(1, 1));
    assert_eq!(publish(vec![("d", "d-first"), ("d", "d-second")]).await, receipt(1, 1), "duplicate within a batch");
    assert_eq!(publish(vec![("a", "a-third"), ("b", "b-second")]).await, receipt(0, 2));
    assert_eq!(queue.depth("sms").await.unwrap(), Depth { ready: 4, ..Depth::default() });

    let consumer = queue.consumer("sms", options(LONG, 10));
    let claim = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&claim), ["a", "b", "c", "d"], "each id delivered once");
    let payloads: Vec<&[u8]> = claim.deliveries.iter().map(|d| d.payload()).collect();
    assert_eq!(payloads, [&b"a-first"[..], b"b-first", b"c-first", b"d-first"], "the first payload stays");
    assert!(consumer.ack_all(claim.deliveries).await.unwrap().is_empty());

    assert_eq!(publish(vec![("a", "a-again"), ("d", "d-again")]).await, receipt(0, 2), "acked ids are still known");
    assert!(consumer.claim(10).await.unwrap().deliveries.is_empty(), "acked ids are not delivered again");
    assert_eq!(queue.depth("sms").await.unwrap(), Depth::default());
}

/// Acked entries never come back; settling with a lease that expired and
/// was re-claimed fails with `LeaseLost` (or lists it as lost) and leaves
/// the new holder's lease alone; `ack_all` settles a whole claim.
pub async fn ack_settles_for_good_and_needs_the_current_lease(store: &Store) {
    let queue = store.queue();
    let sms = queue.producer("sms");
    let consumer = queue.consumer("sms", options(LONG, 10));

    let entries = vec![NewEntry::new("a1", "1"), NewEntry::new("a2", "2"), NewEntry::new("a3", "3")];
    sms.publish(entries).await.unwrap();
    let mut claim = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&claim), ["a1", "a2", "a3"]);
    claim.deliveries.remove(0).ack().await.unwrap();
    assert!(consumer.ack_all(claim.deliveries).await.unwrap().is_empty(), "ack_all of held leases loses none");
    assert!(consumer.claim(10).await.unwrap().deliveries.is_empty(), "acked entries never come back");
    assert_eq!(queue.depth("sms").await.unwrap(), Depth::default());

    // Stale leases: claimed with a short lease, expired, re-claimed by another consumer.
    let short_lease = Duration::from_millis(500);
    let short = queue.consumer("sms", options(short_lease, 10));
    let stale_ids = ["s1", "s2", "s3", "s4", "s5"];
    sms.publish(stale_ids.iter().map(|id| NewEntry::new(*id, *id)).collect()).await.unwrap();
    let stale = short.claim(10).await.unwrap();
    let claimed = Instant::now();
    assert_eq!(ids(&stale), stale_ids);
    sleep_until(claimed + short_lease + MARGIN).await;
    let holder = queue.consumer("sms", options(LONG, 10));
    let fresh = holder.claim(10).await.unwrap();
    assert_eq!(ids(&fresh), stale_ids, "expired leases are claimable again");
    assert_eq!(attempts(&fresh), [2, 2, 2, 2, 2]);
    for (old, new) in stale.deliveries.iter().zip(&fresh.deliveries) {
        assert_ne!(old.lease().token, new.lease().token, "a new lease has a new token");
    }

    let [s1, s2, s3, s4, s5]: [_; 5] = stale.deliveries.try_into().unwrap();
    match s1.ack().await {
        Err(QueueError::LeaseLost { topic, id }) => assert_eq!((topic.as_str(), id.as_str()), ("sms", "s1")),
        other => panic!("acking a stale lease must fail with LeaseLost, got {other:?}"),
    }
    let s2_lease = s2.lease().clone();
    assert_eq!(short.ack_all(vec![s2]).await.unwrap(), vec![s2_lease], "ack_all lists the stale lease as lost");
    match s3.nack(Duration::ZERO).await {
        Err(QueueError::LeaseLost { id, .. }) => assert_eq!(id, "s3"),
        other => panic!("nacking a stale lease must fail with LeaseLost, got {other:?}"),
    }
    match s4.extend_lease().await {
        Err(QueueError::LeaseLost { id, .. }) => assert_eq!(id, "s4"),
        other => panic!("extending a stale lease must fail with LeaseLost, got {other:?}"),
    }
    assert_eq!(short.extend_all(&[&s5]).await.unwrap(), vec![s5.lease().clone()]);

    // The new holder is undisturbed: its leases are live and it can settle them.
    assert_eq!(queue.depth("sms").await.unwrap(), Depth { leased: 5, ..Depth::default() });
    let third = queue.consumer("sms", options(LONG, 10));
    assert!(third.claim(10).await.unwrap().deliveries.is_empty(), "stale settles released nothing");
    assert!(holder.extend_all(&fresh.deliveries.iter().collect::<Vec<_>>()).await.unwrap().is_empty());
    assert!(holder.ack_all(fresh.deliveries).await.unwrap().is_empty(), "the new holder still holds every lease");
    assert!(third.claim(10).await.unwrap().deliveries.is_empty());
    assert_eq!(queue.depth("sms").await.unwrap(), Depth::default());
}

/// An unsettled entry is invisible while leased and redelivered (attempts 2)
/// once the lease expires; extending the lease keeps it invisible past the
/// original expiry.
pub async fn expired_leases_are_redelivered_and_extended_ones_are_not(store: &Store) {
    let lease = Duration::from_secs(1);
    let queue = store.queue();
    let sms = queue.producer("sms");
    let consumer = queue.consumer("sms", options(lease, 10));

    sms.publish(vec![NewEntry::new("e", "payload-e")]).await.unwrap();
    let before = Instant::now();
    let first = consumer.claim(10).await.unwrap();
    let after = Instant::now();
    assert_eq!(ids(&first), ["e"]);
    assert_eq!(attempts(&first), [1]);
    assert_hidden_until(&consumer, before + lease, "a leased entry").await;
    let depth = queue.depth("sms").await.unwrap();
    assert!(Instant::now() < before + lease, "too slow to check depth during the lease");
    assert_eq!(depth, Depth { leased: 1, ..Depth::default() });

    sleep_until(after + lease + MARGIN).await;
    let again = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&again), ["e"], "redelivered after the lease expired");
    assert_eq!(attempts(&again), [2]);
    assert_eq!(again.deliveries[0].payload(), b"payload-e");
    assert!(again.dead_lettered.is_empty());
    assert!(consumer.ack_all(again.deliveries).await.unwrap().is_empty());

    // Extending: both leases are extended half-way through; they must stay
    // hidden past the original expiry, until the extended one.
    sms.publish(vec![NewEntry::new("f", "f"), NewEntry::new("g", "g")]).await.unwrap();
    let claim = consumer.claim(10).await.unwrap();
    let claimed = Instant::now();
    assert_eq!(ids(&claim), ["f", "g"]);
    sleep(lease / 2).await;
    let extend_started = Instant::now();
    claim.deliveries[0].extend_lease().await.unwrap();
    assert!(consumer.extend_all(&[&claim.deliveries[1]]).await.unwrap().is_empty());
    let extended = Instant::now();
    sleep_until(claimed + lease + MARGIN).await;
    let other = queue.consumer("sms", options(LONG, 10));
    assert_hidden_until(&other, extend_started + lease, "an entry whose lease was extended").await;
    sleep_until(extended + lease + MARGIN).await;
    let later = other.claim(10).await.unwrap();
    assert_eq!(ids(&later), ["f", "g"], "redelivered after the extended lease expired");
    assert_eq!(attempts(&later), [2, 2]);
}

/// A nacked entry is hidden for its delay (`Retrying { at }` is about
/// now + delay, and depth counts it as delayed), then delivered again; a
/// nack without delay makes it visible at once.
pub async fn nacked_entries_come_back_after_their_delay(store: &Store) {
    let delay = Duration::from_secs(1);
    let slack = TimeDelta::milliseconds(100);
    let queue = store.queue();
    queue.producer("sms").publish(vec![NewEntry::new("e", "payload-e")]).await.unwrap();
    let consumer = queue.consumer("sms", options(LONG, 10));

    let mut first = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&first), ["e"]);
    let (wall_before, before) = (Utc::now(), Instant::now());
    let outcome = first.deliveries.remove(0).nack(delay).await.unwrap();
    let (wall_after, after) = (Utc::now(), Instant::now());
    let NackOutcome::Retrying { at } = outcome else { panic!("expected Retrying, got {outcome:?}") };
    assert!(
        at >= wall_before + delta(delay) - slack && at <= wall_after + delta(delay) + slack,
        "Retrying at {at}, expected about now + {delay:?} (between {wall_before} and {wall_after} + delay)"
    );
    assert_hidden_until(&consumer, before + delay, "a nacked entry during its delay").await;
    let depth = queue.depth("sms").await.unwrap();
    assert!(Instant::now() < before + delay, "too slow to check depth during the delay");
    assert_eq!(depth, Depth { delayed: 1, ..Depth::default() });

    sleep_until(after + delay + MARGIN).await;
    assert_eq!(queue.depth("sms").await.unwrap(), Depth { ready: 1, ..Depth::default() });
    let mut second = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&second), ["e"], "visible again after the delay");
    assert_eq!(attempts(&second), [2]);
    assert_eq!(second.deliveries[0].payload(), b"payload-e");

    let wall_before = Utc::now();
    let outcome = second.deliveries.remove(0).nack(Duration::ZERO).await.unwrap();
    let wall_after = Utc::now();
    let NackOutcome::Retrying { at } = outcome else { panic!("expected Retrying, got {outcome:?}") };
    assert!(at >= wall_before - slack && at <= wall_after + slack, "Retrying at {at}, expected about now");
    let third = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&third), ["e"], "a nack without delay is visible at once");
    assert_eq!(attempts(&third), [3]);
    assert!(consumer.ack_all(third.deliveries).await.unwrap().is_empty());
    assert_eq!(queue.depth("sms").await.unwrap(), Depth::default());
}

/// With `max_attempts: 3`, the third nack dead-letters the entry: it is
/// never delivered again (not even when re-published), depth counts it as
/// dead, and `dead_letters` lists it with its payload.
pub async fn nack_dead_letters_after_max_attempts(store: &Store) {
    let queue = store.queue();
    let sms = queue.producer("sms");
    sms.publish(vec![NewEntry::new("poison", "poison-payload")]).await.unwrap();
    let consumer = queue.consumer("sms", options(LONG, 3));

    for attempt in 1..=3 {
        let mut claim = consumer.claim(10).await.unwrap();
        assert_eq!(ids(&claim), ["poison"], "attempt {attempt}");
        assert_eq!(attempts(&claim), [attempt]);
        let outcome = claim.deliveries.remove(0).nack(Duration::ZERO).await.unwrap();
        if attempt < 3 {
            assert!(matches!(outcome, NackOutcome::Retrying { .. }), "nack {attempt} of 3: {outcome:?}");
        } else {
            assert_eq!(outcome, NackOutcome::DeadLettered, "nack 3 of 3");
        }
    }
    sms.publish(vec![NewEntry::new("fine", "ok")]).await.unwrap();
    assert_eq!(queue.depth("sms").await.unwrap(), Depth { ready: 1, dead: 1, ..Depth::default() });
    let rest = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&rest), ["fine"], "a dead letter is not delivered");
    assert!(rest.dead_lettered.is_empty());
    assert!(consumer.ack_all(rest.deliveries).await.unwrap().is_empty());

    let dead = queue.dead_letters("sms", 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].lease.topic.as_str(), dead[0].lease.id.as_str()), ("sms", "poison"));
    assert_eq!(dead[0].payload, b"poison-payload");
    assert_eq!(dead[0].attempts, 3);
    assert!(queue.dead_letters("other", 10).await.unwrap().is_empty());

    assert_eq!(sms.publish(vec![NewEntry::new("poison", "again")]).await.unwrap(), receipt(0, 1));
    assert!(consumer.claim(10).await.unwrap().deliveries.is_empty(), "re-publishing does not revive a dead letter");
    assert_eq!(queue.depth("sms").await.unwrap(), Depth { dead: 1, ..Depth::default() });
}

/// An entry delivered `max_attempts` times whose leases all expired unsettled
/// (its consumers crashed) is dead-lettered by the next claim, reported in
/// `Deliveries::dead_lettered` instead of delivered, while the claim still
/// delivers the other entries.
pub async fn claim_dead_letters_entries_whose_consumers_keep_crashing(store: &Store) {
    let lease = Duration::from_millis(400);
    let max_attempts = 2;
    let queue = store.queue();
    let sms = queue.producer("sms");
    sms.publish(vec![NewEntry::new("crashy", "crashy-payload")]).await.unwrap();
    let consumer = queue.consumer("sms", options(lease, max_attempts));

    for attempt in 1..=max_attempts {
        let claim = consumer.claim(10).await.unwrap();
        let claimed = Instant::now();
        assert_eq!(ids(&claim), ["crashy"], "attempt {attempt}");
        assert_eq!(attempts(&claim), [attempt]);
        assert!(claim.dead_lettered.is_empty());
        drop(claim); // the consumer "crashes": never settled
        sleep_until(claimed + lease + MARGIN).await;
    }
    sms.publish(vec![NewEntry::new("next", "next-payload")]).await.unwrap();
    let claim = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&claim), ["next"], "the exhausted entry is not delivered, the others are");
    assert_eq!(attempts(&claim), [1]);
    assert_eq!(claim.dead_lettered.len(), 1, "{:?}", claim.dead_lettered);
    let dead = &claim.dead_lettered[0];
    assert_eq!((dead.lease.topic.as_str(), dead.lease.id.as_str()), ("sms", "crashy"));
    assert_eq!(dead.payload, b"crashy-payload");

    let listed = queue.dead_letters("sms", 10).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].lease.id, "crashy");
    assert_eq!(listed[0].payload, b"crashy-payload");
    assert_eq!(queue.depth("sms").await.unwrap(), Depth { leased: 1, dead: 1, ..Depth::default() });
    assert!(consumer.ack_all(claim.deliveries).await.unwrap().is_empty());
    let after = consumer.claim(10).await.unwrap();
    assert!(after.deliveries.is_empty() && after.dead_lettered.is_empty(), "dead-lettered once: {after:?}");

    // Deliveries so far: max_attempts, as for an entry dead-lettered by nack.
    assert_eq!(dead.attempts, max_attempts, "attempts reported by the claim that dead-lettered it");
    assert_eq!(listed[0].attempts, max_attempts, "attempts listed by dead_letters");
}

/// An entry published with `not_before` in the future is invisible (counted
/// as delayed) until then, and delivered afterwards; one in the past is
/// visible at once.
pub async fn not_before_hides_entries_until_then(store: &Store) {
    let wait = Duration::from_secs(1);
    let queue = store.queue();
    let start = Instant::now();
    let at = Utc::now() + delta(wait);
    let visible_from = Instant::now() + wait;
    let entries = vec![
        NewEntry::new("later", "later-payload").not_before(at),
        NewEntry::new("now", "now-payload"),
        NewEntry::new("past", "past-payload").not_before(Utc::now() - TimeDelta::hours(1)),
    ];
    assert_eq!(entries[0].not_before, Some(at));
    assert_eq!(queue.producer("sms").publish(entries).await.unwrap(), receipt(3, 0));

    let depth = queue.depth("sms").await.unwrap();
    assert!(Instant::now() < start + wait, "too slow to check depth before not_before");
    assert_eq!(depth, Depth { ready: 2, delayed: 1, ..Depth::default() });
    let consumer = queue.consumer("sms", options(LONG, 10));
    let claim = consumer.claim(10).await.unwrap();
    let mut got = ids(&claim);
    got.sort();
    assert!(Instant::now() < start + wait, "too slow to check visibility before not_before");
    assert_eq!(got, ["now", "past"], "only the entries already due are visible");
    assert_hidden_until(&consumer, start + wait, "an entry before its not_before").await;

    sleep_until(visible_from + MARGIN).await;
    assert_eq!(queue.depth("sms").await.unwrap(), Depth { ready: 1, leased: 2, ..Depth::default() });
    let due = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&due), ["later"], "visible once not_before has passed");
    assert_eq!(attempts(&due), [1]);
    assert_eq!(due.deliveries[0].payload(), b"later-payload");
}

/// Depth tells ready, leased, delayed (retry delay or not-before) and dead
/// entries apart; `purge_acked(0)` deletes only acked entries (returning how
/// many), which ends their idempotency window, and leaves the rest alone.
pub async fn depth_counts_each_state_and_purge_removes_only_acked(store: &Store) {
    let queue = store.queue();
    let sms = queue.producer("sms");
    let consumer = queue.consumer("sms", options(LONG, 5));
    let publish = |names: &[&str]| {
        let sms = sms.clone();
        let entries: Vec<NewEntry> = names.iter().map(|n| NewEntry::new(*n, *n)).collect();
        async move { sms.publish(entries).await.unwrap() }
    };
    assert_eq!(queue.depth("sms").await.unwrap(), Depth::default());

    publish(&["a1", "a2"]).await;
    let acked = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&acked), ["a1", "a2"]);
    assert!(consumer.ack_all(acked.deliveries).await.unwrap().is_empty());

    publish(&["l1", "l2", "l3"]).await;
    let held = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&held), ["l1", "l2", "l3"]);

    publish(&["n1"]).await;
    let mut nacked = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&nacked), ["n1"]);
    let outcome = nacked.deliveries.remove(0).nack(LONG).await.unwrap();
    assert!(matches!(outcome, NackOutcome::Retrying { .. }), "{outcome:?}");

    publish(&["d1"]).await;
    let once = queue.consumer("sms", options(LONG, 1));
    let mut dead = once.claim(10).await.unwrap();
    assert_eq!(ids(&dead), ["d1"]);
    assert_eq!(dead.deliveries.remove(0).nack(Duration::ZERO).await.unwrap(), NackOutcome::DeadLettered);

    publish(&["r1", "r2", "r3", "r4"]).await;
    sms.publish(vec![NewEntry::new("t1", "t1").not_before(Utc::now() + TimeDelta::hours(1))]).await.unwrap();

    let mixed = Depth { ready: 4, leased: 3, delayed: 2, dead: 1 };
    assert_eq!(queue.depth("sms").await.unwrap(), mixed);
    assert_eq!(mixed.pending(), 9);
    assert_eq!(queue.depth("elsewhere").await.unwrap(), Depth::default());

    assert_eq!(queue.purge_acked(Duration::from_secs(3600)).await.unwrap(), 0, "nothing was acked an hour ago");
    sleep(Duration::from_millis(20)).await;
    assert_eq!(queue.purge_acked(Duration::ZERO).await.unwrap(), 2, "the two acked entries");
    assert_eq!(queue.purge_acked(Duration::ZERO).await.unwrap(), 0, "already purged");
    assert_eq!(queue.depth("sms").await.unwrap(), mixed, "purging touches no pending or dead entry");
    let dead_letters = queue.dead_letters("sms", 10).await.unwrap();
    assert_eq!(dead_letters.iter().map(|d| d.lease.id.as_str()).collect::<Vec<_>>(), ["d1"]);

    assert_eq!(publish(&["a1", "l1", "n1", "d1", "r1"]).await, receipt(1, 4), "only purged ids are new again");
    let rest = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&rest), ["r1", "r2", "r3", "r4", "a1"]);
    assert_eq!(queue.depth("sms").await.unwrap(), Depth { ready: 0, leased: 8, delayed: 2, dead: 1 });
}

// ---------------------------------------------------------------- journal

/// Re-appending events (all old, or old mixed with new, or an id twice in
/// one batch) stores only the new ones, returns how many were new, and never
/// duplicates an event in `message_events` or `read_from`.
pub async fn journal_append_is_idempotent(store: &Store) {
    let journal = store.journal();
    let message = MessageId::new();
    let events: Vec<Event> = (1..=8).map(|n| routed(message, n)).collect();

    assert_eq!(journal.append(&events[..5]).await.unwrap(), 5);
    assert_eq!(journal.append(&events[..5]).await.unwrap(), 0, "all already there");
    assert_eq!(journal.append(&events[3..]).await.unwrap(), 3, "2 old + 3 new");
    let retried = Event::new(
        message,
        None,
        now_ms() + TimeDelta::seconds(5),
        EventKind::Routed { connector: "smsc-b".into(), route: "fallback".into(), attempt: 1 },
    );
    assert_eq!(retried.id, events[0].id, "the same fact has the same id");
    assert_eq!(journal.append(&[retried]).await.unwrap(), 0, "a re-recorded fact keeps its first copy");
    let ninth = routed(message, 9);
    assert_eq!(journal.append(&[ninth.clone(), ninth.clone()]).await.unwrap(), 1, "an id twice in one batch");

    let mut expected = events;
    expected.push(ninth);
    assert_eq!(journal.message_events(message).await.unwrap(), expected);
    let records = read_journal(journal, 100, expected.len()).await;
    assert_eq!(events_of(&records), expected);
    assert_eq!(journal.head().await.unwrap(), records.last().unwrap().position);
}

/// `message_events` returns one message's events in append order;
/// `read_from` pages through everything in append order with strictly
/// increasing positions, each event exactly once whatever the page size and
/// checkpoint; `head` is the last position.
pub async fn journal_reads_in_append_order(store: &Store) {
    let journal = store.journal();
    assert_eq!(journal.head().await.unwrap(), Position::START, "an empty journal");
    assert!(journal.read_from(Position::START, 10).await.unwrap().is_empty());

    let (a, b) = (MessageId::new(), MessageId::new());
    let ev_a: Vec<Event> = (1..=6).map(|n| routed(a, n)).collect();
    let ev_b: Vec<Event> = (1..=3).map(|n| routed(b, n)).collect();
    let appends = [
        vec![ev_a[0].clone(), ev_a[1].clone()],
        vec![ev_b[0].clone()],
        vec![ev_a[2].clone(), ev_b[1].clone(), ev_a[3].clone()],
        vec![ev_b[2].clone()],
        vec![ev_a[4].clone(), ev_a[5].clone()],
    ];
    for batch in &appends {
        assert_eq!(journal.append(batch).await.unwrap(), batch.len());
    }
    let all: Vec<Event> = appends.concat();

    assert_eq!(journal.message_events(a).await.unwrap(), ev_a);
    assert_eq!(journal.message_events(b).await.unwrap(), ev_b);
    assert!(journal.message_events(MessageId::new()).await.unwrap().is_empty());

    let records = read_journal(journal, 4, all.len()).await;
    assert_eq!(events_of(&records), all, "pages of 4 give every event once, in append order");
    for page in [1, 3, 100] {
        let again = read_journal(journal, page, all.len()).await;
        assert_eq!(again, records, "pages of {page} read the same stream");
    }
    let head = journal.head().await.unwrap();
    assert_eq!(head, records.last().unwrap().position);
    assert!(journal.read_from(head, 10).await.unwrap().is_empty(), "nothing after head");
    let mid = records[3].position;
    assert_eq!(journal.read_from(mid, 100).await.unwrap(), records[4..], "a checkpoint resumes right after it");
    assert_eq!(journal.read_from(mid, 2).await.unwrap(), records[4..6]);
}

/// 8 tasks append 200 batches of 5 events each while a tailer follows the
/// stream with `read_from(checkpoint, 100)`: the tailer sees every event
/// exactly once, with strictly increasing positions, i.e. it never skips an
/// event that commits after one with a later position was read.
pub async fn journal_tail_never_skips_concurrent_appends(store: &Store) {
    const APPENDERS: usize = 8;
    const BATCHES: u32 = 200;
    const PER_BATCH: u32 = 5;
    const TOTAL: usize = APPENDERS * (BATCHES * PER_BATCH) as usize;

    let done = Arc::new(AtomicBool::new(false));
    let tailer = tokio::spawn({
        let journal = store.journal().clone();
        let done = done.clone();
        async move {
            let mut checkpoint = Position::START;
            let mut seen: HashSet<EventId> = HashSet::with_capacity(TOTAL);
            let mut give_up = None;
            loop {
                let finished = done.load(Ordering::Acquire);
                let page = journal.read_from(checkpoint, 100).await.unwrap();
                assert!(page.len() <= 100);
                for record in &page {
                    assert!(record.position > checkpoint, "position {} read after {checkpoint}", record.position);
                    checkpoint = record.position;
                    assert!(seen.insert(record.event.id), "event {} read twice", record.event.id);
                }
                if !page.is_empty() {
                    continue;
                }
                if finished {
                    if seen.len() >= TOTAL && checkpoint >= journal.head().await.unwrap() {
                        break;
                    }
                    let give_up = *give_up.get_or_insert_with(|| Instant::now() + Duration::from_secs(20));
                    if Instant::now() >= give_up {
                        break;
                    }
                }
                sleep(Duration::from_millis(2)).await;
            }
            (seen, checkpoint)
        }
    });

    let appenders: Vec<JoinHandle<Vec<EventId>>> = (0..APPENDERS)
        .map(|_| {
            let journal = store.journal().clone();
            tokio::spawn(async move {
                let message = MessageId::new();
                let mut appended = Vec::with_capacity((BATCHES * PER_BATCH) as usize);
                for batch in 0..BATCHES {
                    let events: Vec<Event> = (0..PER_BATCH).map(|i| routed(message, batch * PER_BATCH + i)).collect();
                    assert_eq!(journal.append(&events).await.unwrap(), events.len());
                    appended.extend(events.iter().map(|e| e.id));
                }
                appended
            })
        })
        .collect();
    let mut appended = HashSet::with_capacity(TOTAL);
    for task in appenders {
        appended.extend(join(task).await);
    }
    done.store(true, Ordering::Release);
    assert_eq!(appended.len(), TOTAL);

    let (seen, checkpoint) = join(tailer).await;
    let missing = appended.difference(&seen).count();
    let unknown = seen.difference(&appended).count();
    assert_eq!((missing, unknown), (0, 0), "the tailer skipped {missing} events and saw {unknown} never appended");
    assert_eq!(seen.len(), TOTAL);
    assert_eq!(store.journal().head().await.unwrap(), checkpoint, "head is the last position read");
}

// ---------------------------------------------------------------- accept

/// `accept` makes the events readable and the entries claimable; accepting
/// the same again (before or after the entries were consumed) adds no event
/// and delivers nothing twice.
pub async fn accept_writes_events_and_entries_together(store: &Store) {
    let (account, m1, m2) = (AccountId::new(), MessageId::new(), MessageId::new());
    let events = vec![accepted(m1, account), routed(m1, 1), accepted(m2, account)];
    let entries = vec![NewEntry::new(m1.to_string(), "job-1"), NewEntry::new(m2.to_string(), "job-2")];
    store.accept(&events, "mt", entries.clone()).await.unwrap();

    let journal = store.journal();
    assert_eq!(journal.message_events(m1).await.unwrap(), events[..2]);
    assert_eq!(journal.message_events(m2).await.unwrap(), events[2..]);
    assert_eq!(events_of(&read_journal(journal, 100, events.len()).await), events);
    let queue = store.queue();
    let consumer = queue.consumer("mt", options(LONG, 10));
    let claim = consumer.claim(10).await.unwrap();
    assert_eq!(ids(&claim), [m1.to_string(), m2.to_string()]);
    assert_eq!(attempts(&claim), [1, 1]);
    assert_eq!(claim.deliveries[0].payload(), b"job-1");
    assert_eq!(claim.deliveries[1].payload(), b"job-2");

    store.accept(&events, "mt", entries.clone()).await.unwrap();
    assert_eq!(journal.message_events(m1).await.unwrap(), events[..2], "no duplicate events");
    assert!(consumer.claim(10).await.unwrap().deliveries.is_empty(), "no second entry");
    assert!(consumer.ack_all(claim.deliveries).await.unwrap().is_empty());

    store.accept(&events, "mt", entries).await.unwrap();
    assert!(consumer.claim(10).await.unwrap().deliveries.is_empty(), "acked entries are not redelivered");
    assert_eq!(store.repair().await.unwrap(), 0, "nothing to repair after accepts that completed");
    assert!(consumer.claim(10).await.unwrap().deliveries.is_empty(), "repair delivered nothing again");
    assert_eq!(queue.depth("mt").await.unwrap(), Depth::default());
    assert_eq!(journal.message_events(m1).await.unwrap(), events[..2]);
    assert_eq!(journal.message_events(m2).await.unwrap(), events[2..]);
    let records = read_journal(journal, 100, events.len()).await;
    assert_eq!(events_of(&records), events, "the stream holds each event once");
}

// ---------------------------------------------------------------- concurrency

/// 10,000 entries published in batches of 500 while 4 consumers claim
/// batches of 100 and ack them: every entry is delivered exactly once (leases
/// never expire here), each on its first attempt, and nothing is left.
pub async fn concurrent_consumers_get_each_entry_exactly_once(store: &Store) {
    const TOTAL: usize = 10_000;
    const BATCH: usize = 500;
    const CONSUMERS: usize = 4;

    let published = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let producer = store.queue().producer("load");
        let published = published.clone();
        async move {
            for start in (0..TOTAL).step_by(BATCH) {
                let entries: Vec<NewEntry> = (start..start + BATCH)
                    .map(|i| NewEntry::new(format!("m{i:05}"), format!("payload-m{i:05}")))
                    .collect();
                assert_eq!(producer.publish(entries).await.unwrap(), receipt(BATCH, 0));
            }
            published.store(true, Ordering::Release);
        }
    });
    let consumers: Vec<JoinHandle<Vec<(String, u32)>>> = (0..CONSUMERS)
        .map(|_| {
            let consumer = store.queue().consumer("load", options(LONG, 10));
            let published = published.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let finished = published.load(Ordering::Acquire);
                    let claim = consumer.claim(100).await.unwrap();
                    assert!(claim.deliveries.len() <= 100);
                    assert!(claim.dead_lettered.is_empty(), "{:?}", claim.dead_lettered);
                    if claim.deliveries.is_empty() {
                        if finished {
                            return got;
                        }
                        sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    for d in &claim.deliveries {
                        assert_eq!(d.payload(), format!("payload-{}", d.id()).as_bytes());
                        got.push((d.id().to_owned(), d.attempts()));
                    }
                    let lost = consumer.ack_all(claim.deliveries).await.unwrap();
                    assert!(lost.is_empty(), "lost leases of 60 s: {lost:?}");
                }
            })
        })
        .collect();
    join(publisher).await;
    let mut deliveries: HashMap<String, Vec<u32>> = HashMap::with_capacity(TOTAL);
    for consumer in consumers {
        for (id, attempt) in join(consumer).await {
            deliveries.entry(id).or_default().push(attempt);
        }
    }
    let twice: Vec<_> = deliveries.iter().filter(|(_, a)| a.len() > 1).take(10).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(deliveries.len(), TOTAL, "every entry delivered");
    assert!(deliveries.values().all(|a| a == &[1]), "every delivery was a first attempt");
    assert_eq!(store.queue().depth("load").await.unwrap(), Depth::default());
}

/// A lease ends when its entry is acked: extending it afterwards reports it
/// lost, so a worker never believes it still holds a settled entry.
pub async fn settled_leases_cannot_be_extended(store: &Store) {
    let queue = store.queue();
    queue.producer("sms").publish(vec![NewEntry::new("a", "x"), NewEntry::new("b", "y")]).await.unwrap();
    let consumer = queue.consumer("sms", options(LONG, 5));
    let mut claim = consumer.claim(2).await.unwrap();
    assert_eq!(claim.deliveries.len(), 2);
    let kept = claim.deliveries.pop().unwrap();
    let acked = claim.deliveries.pop().unwrap();
    let acked_lease = acked.lease().clone();
    acked.ack().await.unwrap();
    assert!(consumer.extend_all(&[&kept]).await.unwrap().is_empty(), "the live lease extends");
    let lost = consumer.extend_leases(&[acked_lease.clone(), kept.lease().clone()]).await.unwrap();
    assert_eq!(lost, vec![acked_lease], "the acked lease is not held any more; the live one is");
    kept.ack().await.unwrap();
}
