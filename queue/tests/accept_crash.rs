//! Accepting a message is atomic with respect to crashes: a child process
//! accepts messages (journal events + queue entry) in a loop and is killed
//! with SIGKILL; after the store's repair pass, every message whose accept
//! returned has both its events and its entry, and every accept the kill
//! interrupted has both or neither — never an event without its entry (a
//! message that would never end) or an entry without its events.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tern_core::{Encoding, Event, EventKind, MessageId};
use tern_queue::{ConsumerOptions, NewEntry, Store, StoreConfig};

const CHILD_TEST: &str = "accept_child";
const STORE_ENV: &str = "TERN_ACCEPT_CHILD_STORE";
const MARK: &str = "#accept# ";
const TOPIC: &str = "mt";
/// The repair settle window used here; the parent waits it out.
const SETTLE_MS: u64 = 300;

#[test]
fn sqlite_accepts_are_atomic_across_kill_9() {
    let dir = tempfile::Builder::new().prefix("tern-accept-crash-").tempdir().unwrap();
    accept_rounds(&json!({ "backend": "sqlite", "path": dir.path().join("accept.db") }));
}

#[test]
fn mongodb_accepts_are_atomic_across_kill_9() {
    let uri = match std::env::var("TERN_TEST_MONGODB_URI") {
        Ok(uri) if !uri.trim().is_empty() => uri,
        _ => panic!("TERN_TEST_MONGODB_URI is not set: run the suite through scripts/test.sh"),
    };
    accept_rounds(&json!({
        "backend": "mongodb",
        "uri": uri,
        "database": format!("t_{}", uuid::Uuid::new_v4().simple()),
        "outbox_settle_ms": SETTLE_MS,
    }));
}

/// The child: accepts one message at a time until killed.
#[tokio::test]
#[ignore = "run by the crash tests as a child process"]
async fn accept_child() {
    let Ok(config) = std::env::var(STORE_ENV) else { return };
    let config: StoreConfig = serde_json::from_str(&config).unwrap();
    let store = config.connect().await.unwrap();
    for _ in 0..100_000 {
        let message = MessageId::new();
        let accepted = EventKind::Accepted {
            to: "+447400123456".into(),
            country: Some("GB".into()),
            from: "Tern".into(),
            body: "crash test".into(),
            encoding: Encoding::Gsm7,
            segments: 1,
            batch_id: None,
            client_ref: None,
            callback_url: None,
            priority: 0,
            expires_at: Utc::now() + chrono::Duration::days(1),
            price: None,
            currency: None,
        };
        let events = [Event::new(message, None, Utc::now(), accepted)];
        let id = message.to_string();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{MARK}ACCEPTING {id}").and_then(|()| out.flush()).unwrap();
        store.accept(&events, TOPIC, vec![NewEntry::new(id.clone(), id.clone())]).await.unwrap();
        writeln!(out, "{MARK}ACCEPTED {id}").and_then(|()| out.flush()).unwrap();
    }
}

fn accept_rounds(config: &serde_json::Value) {
    let store_config: StoreConfig = serde_json::from_value(config.clone()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let kill_points = [20..60usize, 60..120, 120..200, 200..300].map(rand::random_range);
    for (round, kill_after) in kill_points.into_iter().enumerate() {
        let (accepting, accepted) = run_child(config, kill_after);
        assert!(!accepted.is_empty(), "round {round}: the child accepted nothing");
        runtime.block_on(check(&store_config, round, &accepting, &accepted));
    }
}

/// Runs the child until it reported `kill_after` lines, kills it, and returns
/// the ids it started and finished accepting.
fn run_child(config: &serde_json::Value, kill_after: usize) -> (HashSet<String>, HashSet<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored", "--test-threads", "1"])
        .env(STORE_ENV, config.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut accepting, mut accepted) = (HashSet::new(), HashSet::new());
    let mut lines = 0;
    let mut line = String::new();
    while lines < kill_after {
        line.clear();
        let read = stdout.read_line(&mut line).unwrap();
        assert!(read > 0, "the child stopped after {lines} lines");
        let Some(report) = report(&line) else { continue };
        lines += 1;
        match report.split_once(' ') {
            Some(("ACCEPTING", id)) => accepting.insert(id.to_owned()),
            Some(("ACCEPTED", id)) => accepted.insert(id.to_owned()),
            _ => panic!("unexpected report {report:?}"),
        };
    }
    // Land the kill at a random point inside the accept under way.
    std::thread::sleep(Duration::from_micros(rand::random_range(0..4_000)));
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9), "the child was still working when killed");
    // Reports written before the kill but not yet read.
    line.clear();
    while stdout.read_line(&mut line).is_ok_and(|n| n > 0) {
        match report(&line).and_then(|r| r.split_once(' ')) {
            Some(("ACCEPTING", id)) => accepting.insert(id.to_owned()),
            Some(("ACCEPTED", id)) => accepted.insert(id.to_owned()),
            _ => false,
        };
        line.clear();
    }
    (accepting, accepted)
}

/// The protocol part of a line: libtest may print its own text first on the same line.
fn report(line: &str) -> Option<&str> {
    line.find(MARK).map(|at| line[at + MARK.len()..].trim_end())
}

async fn check(config: &StoreConfig, round: usize, accepting: &HashSet<String>, accepted: &HashSet<String>) {
    tokio::time::sleep(Duration::from_millis(SETTLE_MS * 2)).await;
    let store: Store = config.connect().await.unwrap();
    let repaired = store.repair().await.unwrap();
    let consumer = store.queue().consumer(TOPIC, ConsumerOptions { lease: Duration::from_secs(60), max_attempts: 5 });
    let mut queued = HashSet::new();
    loop {
        let claim = consumer.claim(500).await.unwrap();
        if claim.deliveries.is_empty() {
            break;
        }
        for d in &claim.deliveries {
            assert!(queued.insert(d.id().to_owned()), "round {round}: {} queued twice", d.id());
        }
        assert!(consumer.ack_all(claim.deliveries).await.unwrap().is_empty());
    }
    for id in accepting {
        let message: MessageId = id.parse().unwrap();
        let journaled = !store.journal().message_events(message).await.unwrap().is_empty();
        let enqueued = queued.contains(id);
        assert_eq!(journaled, enqueued, "round {round}: message {id} journaled={journaled} but queued={enqueued}");
        if accepted.contains(id) {
            assert!(journaled && enqueued, "round {round}: acknowledged accept of {id} is incomplete");
        }
    }
    let unknown: Vec<&String> = queued.iter().filter(|id| !accepting.contains(*id)).collect();
    assert!(unknown.is_empty(), "round {round}: entries never accepted: {unknown:?}");
    eprintln!("round {round}: {} accepts checked, {} finished by repair", accepting.len(), repaired);
}
