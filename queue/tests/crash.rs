//! Crash tests: a child process works the store (publish, claim, ack,
//! append) and reports each step on stdout once it returned; the test kills
//! it with SIGKILL mid-work, opens the store again and checks that every
//! step the child saw complete survived, and that nothing it left unsettled
//! was lost:
//!
//! * every published entry is still there (claimable once the child's leases
//!   expired, or acked), and nothing appears that was never published;
//! * every entry claimed but not acked is delivered again;
//! * no acked entry is delivered again;
//! * every appended event is in the journal, once.
//!
//! The child is the ignored test [`crash_child`] of this same binary, run as
//! `<this test binary> --exact crash_child --include-ignored` with the store
//! configuration (JSON) in `TERN_CRASH_CHILD_STORE`; without that variable it
//! returns at once. This works under both nextest and `cargo test`.
//!
//! Each step is announced before it starts (`PUBLISHING`, `ACKING`,
//! `APPENDING`) and after it returned (`PUBLISHED`, `ACKED`, `APPENDED`);
//! ids whose step was under way when the child died may or may not have
//! taken effect, and the checks allow both.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tern_core::{Event, EventKind, MessageId};
use tern_queue::{ConsumerOptions, Depth, NewEntry, Position, Store, StoreConfig};

/// Name of the child test, run with `--exact`.
const CHILD_TEST: &str = "crash_child";
/// The store configuration, as JSON, for the child.
const STORE_ENV: &str = "TERN_CRASH_CHILD_STORE";
/// The round number, which keeps entry ids unique across rounds.
const ROUND_ENV: &str = "TERN_CRASH_CHILD_ROUND";
/// Marks the child's protocol lines (libtest may print on the same line).
const MARK: &str = "#crash# ";
const TOPIC: &str = "crash";
/// The child's lease: after it has been dead this long, nothing is leased.
const CHILD_LEASE: Duration = Duration::from_secs(1);
/// Large enough that nothing is dead-lettered here.
const MAX_ATTEMPTS: u32 = 1_000;
/// How long the child runs if nobody kills it (its parent died).
const CHILD_MAX_RUN: Duration = Duration::from_secs(120);

#[test]
fn sqlite_store_keeps_every_completed_step_across_kill_9() {
    let dir = tempfile::Builder::new().prefix("tern-crash-").tempdir().unwrap();
    let config = json!({ "backend": "sqlite", "path": dir.path().join("crash.db") });
    crash_rounds(&config);
}

#[test]
fn mongodb_store_keeps_every_completed_step_across_kill_9() {
    let uri = match std::env::var("TERN_TEST_MONGODB_URI") {
        Ok(uri) if !uri.trim().is_empty() => uri,
        _ => panic!(
            "TERN_TEST_MONGODB_URI is not set: run the suite through scripts/test.sh, which starts the MongoDB stand-in"
        ),
    };
    let config = json!({
        "backend": "mongodb",
        "uri": uri,
        "database": format!("crash_{}", uuid::Uuid::new_v4().simple()),
        "journal_settle_ms": 300,
        "outbox_settle_ms": 500,
        "server_selection_timeout_ms": 2_000,
    });
    crash_rounds(&config);
}

/// The child process of the crash tests; a no-op unless they started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the crash tests, which run it themselves"]
async fn crash_child() {
    let Ok(config) = std::env::var(STORE_ENV) else { return };
    let config: StoreConfig = serde_json::from_str(&config).expect("the store configuration from the parent");
    let round: u32 = std::env::var(ROUND_ENV).ok().and_then(|r| r.parse().ok()).unwrap_or(0);
    let store = config.connect().await.expect("the child connects to the store");
    child_work(&store, round).await;
}

// ---------------------------------------------------------------- child

/// Writes one protocol line and flushes it; `false` if the parent is gone.
fn say(tag: &str, ids: &[String]) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{tag} {}", ids.join(",")).and_then(|()| out.flush()).is_ok()
}

async fn child_work(store: &Store, round: u32) {
    let queue = store.queue();
    let producer = queue.producer(TOPIC);
    let consumer = queue.consumer(TOPIC, ConsumerOptions { lease: CHILD_LEASE, max_attempts: MAX_ATTEMPTS });
    let journal = store.journal();
    let stop = Instant::now() + CHILD_MAX_RUN;
    let mut next = 0u64;
    while Instant::now() < stop {
        let ids: Vec<String> = (0..50)
            .map(|_| {
                next += 1;
                format!("r{round}-{next}")
            })
            .collect();
        if !say("PUBLISHING", &ids) {
            return;
        }
        let entries = ids.iter().map(|id| NewEntry::new(id.clone(), format!("payload {id}"))).collect();
        let receipt = producer.publish(entries).await.expect("publish");
        assert_eq!(receipt.inserted, ids.len());
        if !say("PUBLISHED", &ids) {
            return;
        }

        let claim = consumer.claim(30).await.expect("claim");
        let claimed: Vec<String> = claim.deliveries.iter().map(|d| d.id().to_owned()).collect();
        if !say("CLAIMED", &claimed) {
            return;
        }
        // Ack every other delivery; leave the rest for their leases to expire.
        let (ack, _unsettled): (Vec<_>, Vec<_>) =
            claim.deliveries.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let ack: Vec<_> = ack.into_iter().map(|(_, d)| d).collect();
        let acking: Vec<String> = ack.iter().map(|d| d.id().to_owned()).collect();
        if !say("ACKING", &acking) {
            return;
        }
        let lost: HashSet<String> = consumer.ack_all(ack).await.expect("ack").into_iter().map(|l| l.id).collect();
        let acked: Vec<String> = acking.into_iter().filter(|id| !lost.contains(id)).collect();
        if !say("ACKED", &acked) {
            return;
        }

        let message = MessageId::new();
        let events: Vec<Event> = (1..=5)
            .map(|attempt| {
                let kind = EventKind::Retried {
                    stage: "crash-test".into(),
                    attempt,
                    reason: "the test kills this process".into(),
                    retry_at: Utc::now(),
                };
                Event::new(message, None, Utc::now(), kind)
            })
            .collect();
        let event_ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        if !say("APPENDING", &event_ids) {
            return;
        }
        journal.append(&events).await.expect("append");
        if !say("APPENDED", &event_ids) {
            return;
        }
    }
}

// ---------------------------------------------------------------- parent

/// What the child reported in one round.
#[derive(Debug, Default)]
struct Log {
    lines: usize,
    publishing: HashSet<String>,
    published: HashSet<String>,
    claimed: HashSet<String>,
    acking: HashSet<String>,
    acked: HashSet<String>,
    appending: HashSet<String>,
    appended: HashSet<String>,
}

impl Log {
    /// Records a protocol line; false for anything else (libtest's output).
    fn record(&mut self, line: &str) -> bool {
        let Some(at) = line.find(MARK) else { return false };
        let body = &line[at + MARK.len()..];
        let (tag, ids) = body.split_once(' ').unwrap_or((body, ""));
        let set = match tag {
            "PUBLISHING" => &mut self.publishing,
            "PUBLISHED" => &mut self.published,
            "CLAIMED" => &mut self.claimed,
            "ACKING" => &mut self.acking,
            "ACKED" => &mut self.acked,
            "APPENDING" => &mut self.appending,
            "APPENDED" => &mut self.appended,
            other => panic!("unknown line from the child: {other:?} in {line:?}"),
        };
        set.extend(ids.split(',').filter(|id| !id.is_empty()).map(str::to_owned));
        self.lines += 1;
        true
    }
}

/// Runs three rounds on the store `config` (JSON of a [`StoreConfig`]): each
/// starts a child, kills it after a random-ish number of its lines, and
/// checks the store.
fn crash_rounds(config: &serde_json::Value) {
    let store_config: StoreConfig = serde_json::from_value(config.clone()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut journal_known: HashSet<String> = HashSet::new();
    let mut journal_appended: HashSet<String> = HashSet::new();
    let mut redelivery_checked = 0;
    let kill_points =
        [rand::random_range(9..16usize), rand::random_range(30..50usize), rand::random_range(80..120usize)];
    for (round, kill_after) in kill_points.into_iter().enumerate() {
        let log = run_child(config, round, kill_after);
        assert!(
            !log.published.is_empty() && !log.acked.is_empty() && !log.appended.is_empty(),
            "round {round}: the child did too little to test anything: {log:?}"
        );
        journal_known.extend(log.appending.iter().cloned());
        journal_known.extend(log.appended.iter().cloned());
        journal_appended.extend(log.appended.iter().cloned());
        redelivery_checked +=
            runtime.block_on(check_store(&store_config, round, &log, &journal_known, &journal_appended));
    }
    assert!(redelivery_checked > 0, "no claimed-but-unacked entry was ever checked for redelivery");
}

/// Starts the child, reads its lines until `kill_after` protocol lines,
/// kills it with SIGKILL, and returns everything it reported (including
/// lines still in the pipe when it died).
fn run_child(config: &serde_json::Value, round: usize, kill_after: usize) -> Log {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored", "--test-threads", "1"])
        .env(STORE_ENV, config.to_string())
        .env(ROUND_ENV, round.to_string())
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match stdout.read_line(&mut line) {
                // A line cut short by the kill is not a report.
                Ok(0) | Err(_) => return,
                Ok(_) if !line.ends_with('\n') => return,
                Ok(_) => {
                    if lines_tx.send(line.trim_end().to_owned()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut log = Log::default();
    let mut other_output = Vec::new();
    while log.lines < kill_after {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                if !log.record(&line) {
                    other_output.push(line);
                }
            }
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                let stderr = errors.join().unwrap_or_default();
                panic!(
                    "round {round}: the child stopped reporting after {} lines ({e:?}, {status}); \
                     other output: {other_output:#?}\nstderr:\n{stderr}",
                    log.lines
                );
            }
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "round {round}: the child was still working when killed ({status})");
    reader.join().unwrap();
    for line in lines.try_iter() {
        log.record(&line);
    }
    let _ = errors.join();
    log
}

fn sorted(mut ids: Vec<&String>) -> Vec<&String> {
    ids.sort();
    ids
}

/// Opens the store after a kill and checks it against the child's reports;
/// then settles every entry so the next round starts clean. Returns how many
/// claimed-but-unacked entries it checked were delivered again.
async fn check_store(
    config: &StoreConfig,
    round: usize,
    log: &Log,
    journal_known: &HashSet<String>,
    journal_appended: &HashSet<String>,
) -> usize {
    // Past every lease the child could hold (and any write still in flight).
    tokio::time::sleep(CHILD_LEASE + Duration::from_millis(500)).await;
    let store = config.connect().await.expect("the store opens again after the kill");
    let queue = store.queue();
    let consumer =
        queue.consumer(TOPIC, ConsumerOptions { lease: Duration::from_secs(60), max_attempts: MAX_ATTEMPTS });
    let mut present = HashSet::new();
    let mut deliveries = Vec::new();
    loop {
        let claim = consumer.claim(500).await.unwrap();
        assert!(claim.dead_lettered.is_empty(), "round {round}: dead-lettered {:?}", claim.dead_lettered);
        if claim.deliveries.is_empty() {
            break;
        }
        for d in &claim.deliveries {
            assert!(present.insert(d.id().to_owned()), "round {round}: {} claimed twice", d.id());
            assert_eq!(d.payload(), format!("payload {}", d.id()).as_bytes());
        }
        deliveries.extend(claim.deliveries);
    }

    let lost = sorted(
        log.published
            .iter()
            .filter(|id| !present.contains(*id) && !log.acked.contains(*id) && !log.acking.contains(*id))
            .collect(),
    );
    assert!(lost.is_empty(), "round {round}: published entries lost: {lost:?}");
    let phantom =
        sorted(present.iter().filter(|id| !log.published.contains(*id) && !log.publishing.contains(*id)).collect());
    assert!(phantom.is_empty(), "round {round}: entries never published: {phantom:?}");
    let revived = sorted(log.acked.iter().filter(|id| present.contains(*id)).collect());
    assert!(revived.is_empty(), "round {round}: acked entries delivered again: {revived:?}");
    let unsettled: Vec<&String> =
        log.claimed.iter().filter(|id| !log.acked.contains(*id) && !log.acking.contains(*id)).collect();
    let dropped = sorted(unsettled.iter().copied().filter(|id| !present.contains(*id)).collect());
    assert!(dropped.is_empty(), "round {round}: claimed, never acked, not delivered again: {dropped:?}");

    let lost_leases = consumer.ack_all(deliveries).await.unwrap();
    assert!(lost_leases.is_empty(), "round {round}: {lost_leases:?}");
    assert_eq!(queue.depth(TOPIC).await.unwrap(), Depth::default(), "round {round}");

    // The journal: every appended event, once, in strictly increasing positions.
    let give_up = Instant::now() + Duration::from_secs(15);
    let seen = loop {
        let mut seen = HashSet::new();
        let mut checkpoint = Position::START;
        loop {
            let page = store.journal().read_from(checkpoint, 500).await.unwrap();
            if page.is_empty() {
                break;
            }
            for record in page {
                assert!(record.position > checkpoint, "round {round}: position {} after {checkpoint}", record.position);
                checkpoint = record.position;
                assert!(seen.insert(record.event.id.to_string()), "round {round}: event {} twice", record.event.id);
            }
        }
        if journal_appended.is_subset(&seen) || Instant::now() >= give_up {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let missing = sorted(journal_appended.iter().filter(|id| !seen.contains(*id)).collect());
    assert!(missing.is_empty(), "round {round}: appended events missing from the journal: {missing:?}");
    let unknown = sorted(seen.iter().filter(|id| !journal_known.contains(*id)).collect());
    assert!(unknown.is_empty(), "round {round}: events in the journal never appended: {unknown:?}");
    unsettled.len()
}
