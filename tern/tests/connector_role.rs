//! `tern connector` and `tern smsc-sim` as processes.
//!
//! * The PyPI `smpplib` client binds to `tern smsc-sim`, submits and gets
//!   its receipts: the simulator speaks standard SMPP.
//! * `tern worker` routes accepted messages to `tern connector`, which sends
//!   them to `tern smsc-sim`; the connector is SIGKILLed mid-stream and
//!   restarted; every message is delivered, recorded as submitted once,
//!   and the simulator saw no more duplicates than the documented window
//!   allows. SIGTERM unbinds and exits cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use tern_core::{AccountId, Encoding, Event, EventKind, MessageId, MessageStatus};
use tern_queue::{Account, NewEntry, RateLimits, SqliteConfig, Store, StoreConfig};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tern(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
    command.args(args).env("RUST_LOG", "warn");
    command
}

/// A child process killed when dropped, so a failing test leaves none behind.
struct Process(Option<Child>);

impl Process {
    fn spawn(command: &mut Command) -> Self {
        Self(Some(command.spawn().unwrap()))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    fn kill(&mut self) {
        let child = self.child();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `tern smsc-sim` on `port` and waits until it listens.
fn simulator(port: u16, extra: &[&str]) -> Process {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["smsc-sim", "--listen", &listen, "--stats-every", "0"];
    args.extend_from_slice(extra);
    let mut process = Process::spawn(tern(&args).stdout(Stdio::piped()).stderr(Stdio::inherit()));
    let mut line = String::new();
    BufReader::new(process.child().stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("SMSC simulator listening on"), "{line}");
    process
}

/// SIGTERM; the process must exit 0 within 30 s. Returns what it printed last.
fn terminate(mut process: Process) -> String {
    let child = process.child();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exits cleanly on SIGTERM: {status}");
            let mut rest = String::new();
            if let Some(out) = child.stdout.as_mut() {
                let _ = std::io::Read::read_to_string(out, &mut rest);
            }
            return rest.lines().last().unwrap_or_default().to_owned();
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn smpplib_binds_to_tern_smsc_sim_and_gets_its_receipts() {
    let python = std::env::var("TERN_TEST_SMPPLIB_PYTHON")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .expect("TERN_TEST_SMPPLIB_PYTHON is not set: run the tests through scripts/test.sh (it installs smpplib)");
    let port = free_port();
    let sim = simulator(port, &["--receipt-delay-ms", "0,20", "--outcomes", "1,0,0"]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../smsc-connector/tests/interop/python/client.py");
    let output = Command::new(python).arg(script).args(["--port", &port.to_string()]).output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "smpplib: {report}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    let submits = report["submits"].as_u64().unwrap();
    assert_eq!(submits, 4, "a short, a Latin-1 and a two-part concatenated message: {report}");
    let stats: serde_json::Value = serde_json::from_str(&terminate(sim)).unwrap();
    assert_eq!(stats["submit_sm"], submits, "{stats}");
    assert_eq!(stats["bind_refused"], 1, "{stats}");
    assert_eq!(stats["receipts_acked"], submits, "{stats}");
}

async fn account(store: &Store) -> Account {
    let account = Account {
        id: AccountId::new(),
        name: "load".into(),
        parent_id: None,
        currency: "EUR".into(),
        balance: 0,
        credit_limit: 0,
        price_plan: None,
        limits: RateLimits::default(),
        callback_url: None,
        inbound_url: None,
        webhook_secret: None,
        suspended: false,
        created_at: Utc::now(),
    };
    store.accounts().create_account(&account).await.unwrap();
    account
}

/// Accepts `n` messages onto `mt`, as submission does.
async fn accept(store: &Store, account: &Account, n: usize) -> Vec<MessageId> {
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(500) {
        let (mut events, mut entries) = (Vec::new(), Vec::new());
        for i in start..n.min(start + 500) {
            let id = MessageId::new();
            let kind = EventKind::Accepted {
                to: format!("+4474{i:08}"),
                country: Some("GB".into()),
                from: "ACME".into(),
                body: format!("message {i}"),
                encoding: Encoding::Gsm7,
                segments: 1,
                batch_id: None,
                client_ref: None,
                callback_url: None,
                priority: 0,
                expires_at: Utc::now() + TimeDelta::hours(1),
                price: None,
                currency: None,
            };
            let event = Event::new(id, Some(account.id), Utc::now(), kind);
            entries.push(NewEntry::new(id.to_string(), serde_json::to_vec(&event).unwrap()));
            events.push(event);
            ids.push(id);
        }
        store.accept(&events, "mt", entries).await.unwrap();
    }
    ids
}

fn write_config(dir: &Path, db: &Path, port: u16) -> PathBuf {
    let file = dir.join("tern.toml");
    let text = format!(
        "[store]\nbackend = \"sqlite\"\npath = \"{}\"\n\n[worker]\nstages = [\"mt\"]\n\n[routing]\ndefault = {{ connector = \"c1\" }}\n\n\
         [connectors.c1]\nport = {port}\nwindow = 50\nbatch_size = 100\nconcurrency = 2\nresponse_timeout_ms = 2000\n\
         lease_ms = 6000\nreconnect_min_ms = 100\nretry_min_ms = 200\n",
        db.display()
    );
    std::fs::write(&file, text).unwrap();
    file
}

async fn count_submitted(store: &Store, ids: &[MessageId]) -> (usize, usize, usize) {
    let (mut submitted, mut delivered, mut unknown) = (0, 0, 0);
    for event in store.journal().messages_events(ids).await.unwrap() {
        match event.kind {
            EventKind::SubmittedToSmsc { .. } => submitted += 1,
            EventKind::SmscThrottled { command_status: 0, .. } => unknown += 1,
            _ => {}
        }
    }
    for chunk in ids.chunks(500) {
        let events = store.journal().messages_events(chunk).await.unwrap();
        for id in chunk {
            let mine: Vec<&Event> = events.iter().filter(|e| e.message_id == *id).collect();
            if MessageStatus::fold(mine) == Some(MessageStatus::Delivered) {
                delivered += 1;
            }
        }
    }
    (submitted, delivered, unknown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_killed_mid_stream_loses_nothing_and_resends_only_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tern.db");
    let store = StoreConfig::Sqlite(SqliteConfig { path: db.clone() }).connect().await.unwrap();
    let account = account(&store).await;
    let ids = accept(&store, &account, 2_000).await;
    let port = free_port();
    let sim = simulator(port, &["--receipt-delay-ms", "0,50", "--outcomes", "1,0,0"]);
    let config = write_config(dir.path(), &db, port);
    let config_arg = config.to_str().unwrap();
    let worker = Process::spawn(tern(&["worker", "--config", config_arg]).stderr(Stdio::inherit()));
    let mut first = Process::spawn(tern(&["connector", "--config", config_arg]).stderr(Stdio::inherit()));

    let deadline = Instant::now() + Duration::from_secs(120);
    while count_submitted(&store, &ids).await.0 < 400 {
        assert!(Instant::now() < deadline, "the connector never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill();
    let at_kill = count_submitted(&store, &ids).await.0;
    assert!(at_kill < ids.len(), "killed before it finished ({at_kill} submitted)");

    let metrics = format!("127.0.0.1:{}", free_port());
    let second =
        Process::spawn(tern(&["connector", "--config", config_arg, "--metrics", &metrics]).stderr(Stdio::inherit()));
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, delivered, _) = count_submitted(&store, &ids).await;
        if delivered == ids.len() {
            break;
        }
        assert!(Instant::now() < deadline, "only {delivered} of {} delivered", ids.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (submitted, _, unknown) = count_submitted(&store, &ids).await;
    assert_eq!(submitted, ids.len(), "each message recorded as submitted exactly once");
    // `--metrics` serves the connector's own figures.
    let scraped = reqwest::get(format!("http://{metrics}/metrics")).await.unwrap().text().await.unwrap();
    for series in
        ["tern_connector_binds_up{", "tern_connector_receipts_total{", "tern_connector_response_seconds_bucket{"]
    {
        assert!(scraped.contains(series), "{series} missing from /metrics:\n{scraped}");
    }
    assert!(scraped.contains("connector=\"c1\""), "{scraped}");
    terminate(second);
    terminate(worker);
    let stats: serde_json::Value = serde_json::from_str(&terminate(sim)).unwrap();
    let duplicates = stats["duplicates"].as_u64().unwrap();
    // The window: what the killed process had sent without recording (its
    // claimed batches, 2 × 100) plus every response that was lost.
    assert!(duplicates <= 200 + unknown as u64, "{duplicates} duplicates, {unknown} unknown outcomes: {stats}");
    assert!(stats["unbinds"].as_u64().unwrap() >= 1, "SIGTERM unbinds: {stats}");
}
