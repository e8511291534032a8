//! `tern worker` as a process: SIGKILL mid-batch and a restart lose nothing
//! and charge nothing twice; the store going away and coming back neither
//! stops the worker nor loses work; SIGTERM drains and exits cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use tern_core::{AccountId, Encoding, Event, EventKind, MessageId, PricePlan};
use tern_queue::{Account, MongoConfig, NewEntry, RateLimits, SqliteConfig, Store, StoreConfig};

const PRICE: i64 = 7;
const START_BALANCE: i64 = 1_000_000_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

enum Where {
    Sqlite(PathBuf),
    Mongo { uri: String, database: String },
}

impl Where {
    fn config(&self) -> StoreConfig {
        match self {
            Self::Sqlite(path) => StoreConfig::Sqlite(SqliteConfig { path: path.clone() }),
            Self::Mongo { uri, database } => StoreConfig::Mongodb(MongoConfig {
                server_selection_timeout_ms: 5_000,
                ..MongoConfig::new(uri.clone(), database.clone())
            }),
        }
    }

    fn toml(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("[store]\nbackend = \"sqlite\"\npath = \"{}\"\n", path.display()),
            Self::Mongo { uri, database } => {
                format!("[store]\nbackend = \"mongodb\"\nuri = \"{uri}\"\ndatabase = \"{database}\"\n")
            }
        }
    }
}

fn write_config(dir: &Path, store: &Where) -> PathBuf {
    let file = dir.join("tern.toml");
    let text = format!(
        "{}\n[worker]\nstages = [\"mt\"]\ndrain_timeout_ms = 10000\n[worker.mt]\nbatch_size = 200\nconcurrency = 2\nlease_ms = 2000\n\n[routing]\nreload_ms = 500\ndefault = {{ connector = \"sim\" }}\n",
        store.toml()
    );
    std::fs::write(&file, text).unwrap();
    file
}

fn spawn_worker(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["worker", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn setup(store: &Store) -> Account {
    let account = Account {
        id: AccountId::new(),
        name: "load".into(),
        parent_id: None,
        currency: "EUR".into(),
        balance: 0,
        credit_limit: 0,
        price_plan: Some(PricePlan { default: Some(PRICE), ..PricePlan::default() }),
        limits: RateLimits::default(),
        callback_url: None,
        inbound_url: None,
        webhook_secret: None,
        suspended: false,
        created_at: Utc::now(),
    };
    store.accounts().create_account(&account).await.unwrap();
    store.accounts().top_up(account.id, START_BALANCE, "start", Utc::now()).await.unwrap();
    account
}

async fn accept(store: &Store, account: &Account, n: usize) -> Vec<MessageId> {
    let mut ids = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(500) {
        let mut events = Vec::new();
        let mut entries = Vec::new();
        for _ in 0..500.min(n - chunk * 500) {
            let id = MessageId::new();
            let kind = EventKind::Accepted {
                to: "+447400123456".into(),
                country: Some("GB".into()),
                from: "ACME".into(),
                body: "hello".into(),
                encoding: Encoding::Gsm7,
                segments: 1,
                batch_id: None,
                client_ref: None,
                callback_url: None,
                priority: 0,
                expires_at: Utc::now() + TimeDelta::hours(1),
                price: Some(PRICE),
                currency: Some("EUR".into()),
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

async fn dispatched(store: &Store) -> u64 {
    store.queue().depth("smsc.sim").await.map(|d| d.pending()).unwrap_or(0)
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every message routed and charged exactly once, and forwarded once.
async fn assert_exactly_once(store: &Store, account: &Account, ids: &[MessageId]) {
    let mut charged: HashMap<MessageId, usize> = HashMap::new();
    let mut routed: HashMap<MessageId, usize> = HashMap::new();
    let mut kinds: HashMap<MessageId, Vec<&'static str>> = HashMap::new();
    for chunk in ids.chunks(500) {
        for event in store.journal().messages_events(chunk).await.unwrap() {
            kinds.entry(event.message_id).or_default().push(event.kind.type_name());
            match event.kind {
                EventKind::Charged { .. } => *charged.entry(event.message_id).or_default() += 1,
                EventKind::Routed { .. } => *routed.entry(event.message_id).or_default() += 1,
                _ => {}
            }
        }
    }
    let depth = store.queue().depth("mt").await.unwrap();
    for id in ids {
        let why = format!("message {id}: history {:?}, mt queue {depth:?}", kinds.get(id));
        assert_eq!(charged.get(id), Some(&1), "charged once; {why}");
        assert_eq!(routed.get(id), Some(&1), "routed once; {why}");
    }
    let balance = store.accounts().account(account.id).await.unwrap().unwrap().balance;
    assert_eq!(balance, START_BALANCE - PRICE * ids.len() as i64, "balance = top-ups − charges");
    assert_eq!(dispatched(store).await, ids.len() as u64, "one connector entry per message");
    assert_eq!(store.queue().depth("mt").await.unwrap().pending(), 0);
}

fn terminate(mut child: Child) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "tern worker exits cleanly on SIGTERM: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "tern worker did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn sigkill_mid_batch(place: Where) {
    let dir = tempfile::tempdir().unwrap();
    let store = place.config().connect().await.unwrap();
    let account = setup(&store).await;
    let ids = accept(&store, &account, 6_000).await;
    let config = write_config(dir.path(), &place);
    let mut first = spawn_worker(&config);
    wait_for("the first worker to make progress", Duration::from_secs(120), async || dispatched(&store).await >= 500)
        .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let at_kill = dispatched(&store).await;
    assert!(at_kill < ids.len() as u64, "killed before it finished ({at_kill} dispatched)");
    let second = spawn_worker(&config);
    wait_for("the restarted worker to finish", Duration::from_secs(300), async || {
        store.queue().depth("mt").await.unwrap().pending() == 0
    })
    .await;
    terminate(second);
    assert_exactly_once(&store, &account, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_worker_killed_mid_batch_loses_nothing_and_charges_once() {
    let dir = tempfile::tempdir().unwrap();
    sigkill_mid_batch(Where::Sqlite(dir.path().join("tern.db"))).await;
}

fn mongo_uri() -> String {
    std::env::var("TERN_TEST_MONGODB_URI")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .expect("TERN_TEST_MONGODB_URI is not set: run the tests through scripts/test.sh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_worker_killed_mid_batch_loses_nothing_and_charges_once() {
    let database = format!("worker_{}", uuid::Uuid::new_v4().simple());
    sigkill_mid_batch(Where::Mongo { uri: mongo_uri(), database }).await;
}

/// A stand-in of our own, which the test stops and restarts on the same port and data.
struct StandIn {
    binary: String,
    port: u16,
    data: PathBuf,
    child: Option<Child>,
}

impl StandIn {
    fn start(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--storage-path"])
            .arg(&self.data)
            .args(["--sync-on-commit", "--log-file-max", "16MB"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "stand-in did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_rides_out_the_store_going_away() {
    let binary = std::env::var("TERN_TEST_SECANTUSD")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .expect("TERN_TEST_SECANTUSD is not set: run the tests through scripts/test.sh");
    let dir = tempfile::tempdir().unwrap();
    let mut standin = StandIn { binary, port: free_port(), data: dir.path().join("data"), child: None };
    standin.start();
    let place = Where::Mongo { uri: format!("mongodb://127.0.0.1:{}/", standin.port), database: "outage".into() };
    let store = place.config().connect().await.unwrap();
    let account = setup(&store).await;
    let mut ids = accept(&store, &account, 1_000).await;
    let config = write_config(dir.path(), &place);
    let mut worker = spawn_worker(&config);
    wait_for("the first messages", Duration::from_secs(120), async || dispatched(&store).await >= 1_000).await;

    standin.kill();
    std::thread::sleep(Duration::from_secs(4));
    assert!(worker.try_wait().unwrap().is_none(), "the worker must not exit while the store is away");
    standin.start();
    ids.extend(accept(&store, &account, 1_000).await);
    wait_for("the messages sent after the outage", Duration::from_secs(180), async || {
        dispatched(&store).await >= 2_000
    })
    .await;
    assert!(worker.try_wait().unwrap().is_none());
    terminate(worker);
    assert_exactly_once(&store, &account, &ids).await;
}
