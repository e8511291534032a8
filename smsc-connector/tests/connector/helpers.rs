//! Fresh stores, accounts, routed messages, a simulator and a running
//! connector; the macro that runs each test on both backends.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tern_core::{AccountId, Event, EventKind, MessageId, MessageStatus, PricePlan};
use tern_handlers::Dispatch;
use tern_queue::{Account, Charge, Debit, MongoConfig, NewEntry, RateLimits, SqliteConfig, Store, StoreConfig};
use tern_smsc_connector::sim::{Outcomes, SimConfig, SimHandle, Simulator};
use tern_smsc_connector::{ConnectorConfig, Running};
use tern_workers::Shutdown;

pub const CONNECTOR: &str = "c1";
pub const PRICE: i64 = 10;

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter("info,tern_smsc_connector=debug").with_test_writer().init();
    }
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Mongodb,
}

/// A fresh store; the SQLite file's directory lives as long as this.
pub struct TestStore {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

pub async fn fresh(backend: Backend) -> TestStore {
    LazyLock::force(&TRACING);
    let mut dir = None;
    let config = match backend {
        Backend::Sqlite => {
            let temp = tempfile::Builder::new().prefix("tern-connector-").tempdir().unwrap();
            let path = temp.path().join("tern.db");
            dir = Some(temp);
            StoreConfig::Sqlite(SqliteConfig { path })
        }
        Backend::Mongodb => {
            let uri = std::env::var("TERN_TEST_MONGODB_URI")
                .ok()
                .filter(|u| !u.trim().is_empty())
                .expect("TERN_TEST_MONGODB_URI is not set: run the tests through scripts/test.sh");
            let database = format!("connector_{}", uuid::Uuid::new_v4().simple());
            StoreConfig::Mongodb(MongoConfig { server_selection_timeout_ms: 5_000, ..MongoConfig::new(uri, database) })
        }
    };
    TestStore { store: config.connect().await.unwrap(), _dir: dir }
}

#[macro_export]
macro_rules! connector_suite {
    ($($module:ident :: $test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let store = $crate::helpers::fresh($crate::helpers::Backend::Sqlite).await;
                    $crate::$module::$test(&store).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let store = $crate::helpers::fresh($crate::helpers::Backend::Mongodb).await;
                    $crate::$module::$test(&store).await;
                }
            )*
        }
    };
}

pub async fn account(store: &Store, balance: i64) -> Account {
    let account = Account {
        id: AccountId::new(),
        name: "test".into(),
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
    if balance != 0 {
        store.accounts().top_up(account.id, balance, &format!("initial-{}", account.id), Utc::now()).await.unwrap();
    }
    store.accounts().account(account.id).await.unwrap().unwrap()
}

pub struct Send<'a> {
    pub to: String,
    pub from: &'a str,
    pub body: String,
    pub expires_at: DateTime<Utc>,
}

impl Default for Send<'_> {
    fn default() -> Self {
        Self {
            to: "+447400123456".into(),
            from: "ACME",
            body: "hello".into(),
            expires_at: Utc::now() + TimeDelta::hours(1),
        }
    }
}

/// A message as the pipeline leaves it for a connector: accepted, routed to
/// `CONNECTOR` and charged, its `Dispatch` entry on `smsc.c1`.
pub async fn routed(store: &Store, account: &Account, send: Send<'_>) -> MessageId {
    let id = MessageId::new();
    let info = tern_core::encoding::analyze(&send.body);
    let segments = u16::try_from(info.segments).unwrap();
    let price = PRICE * i64::from(segments);
    let now = Utc::now();
    let accepted = Event::new(
        id,
        Some(account.id),
        now,
        EventKind::Accepted {
            to: send.to.clone(),
            country: Some("GB".into()),
            from: send.from.into(),
            body: send.body.clone(),
            encoding: info.encoding,
            segments,
            batch_id: None,
            client_ref: None,
            callback_url: None,
            priority: 0,
            expires_at: send.expires_at,
            price: Some(price),
            currency: Some("EUR".into()),
        },
    );
    store.accept(std::slice::from_ref(&accepted), "accepted-only", Vec::new()).await.unwrap();
    let debits = vec![Debit { account_id: account.id, amount: price, currency: "EUR".into() }];
    store.accounts().charge(&[Charge { message_id: id, debits, at: now }]).await.unwrap();
    let facts = [
        EventKind::Routed { connector: CONNECTOR.into(), route: "default".into(), attempt: 1 },
        EventKind::Charged { payer: account.id, amount: price, currency: "EUR".into() },
    ];
    let events: Vec<Event> = facts.into_iter().map(|kind| Event::new(id, Some(account.id), now, kind)).collect();
    store.record(&events).await.unwrap();
    let dispatch = Dispatch { accepted, connector: CONNECTOR.into(), route: "default".into(), route_attempt: 1 };
    let entry = NewEntry::new(format!("{id}:1"), serde_json::to_vec(&dispatch).unwrap());
    store.queue().producer(Dispatch::topic(CONNECTOR)).publish(vec![entry]).await.unwrap();
    id
}

/// `n` messages to distinct handsets, each with its own text.
pub async fn routed_many(store: &Store, account: &Account, n: usize, tag: &str) -> Vec<MessageId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let send = Send { to: format!("+4474{:08}", i), body: format!("{tag} message {i}"), ..Send::default() };
        ids.push(routed(store, account, send).await);
    }
    ids
}

/// A simulator on a free port, answering at once unless configured otherwise.
pub async fn simulator(change: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut config = SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        receipt_delay_ms: (0, 5),
        outcomes: Outcomes::all_delivered(),
        ..SimConfig::default()
    };
    change(&mut config);
    Simulator::start(config).await.unwrap()
}

/// A connector configuration pointing at `port`, with test-sized timings.
pub fn connector_config(port: u16) -> ConnectorConfig {
    ConnectorConfig {
        port,
        window: 10,
        response_timeout_ms: 1_000,
        lease_ms: 10_000,
        reconnect_min_ms: 50,
        reconnect_max_ms: 500,
        retry_min_ms: 100,
        retry_max_ms: 1_000,
        down_after_ms: 300,
        drain_timeout_ms: 5_000,
        batch_size: 50,
        ..ConnectorConfig::default()
    }
}

/// A running connector and the switch that stops it.
pub struct Connector {
    pub running: Running,
    shutdown: Shutdown,
}

impl Connector {
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(30), self.running.done).await.expect("the connector stopped").unwrap();
    }
}

pub fn start(store: &Store, config: &ConnectorConfig) -> Connector {
    let (shutdown, stop) = Shutdown::new();
    let running = tern_smsc_connector::start(CONNECTOR, config, store.clone(), stop).unwrap();
    Connector { running, shutdown }
}

pub async fn status(store: &Store, id: MessageId) -> MessageStatus {
    MessageStatus::fold(&store.journal().message_events(id).await.unwrap()).unwrap()
}

pub async fn history(store: &Store, id: MessageId) -> Vec<EventKind> {
    store.journal().message_events(id).await.unwrap().into_iter().map(|e| e.kind).collect()
}

/// Waits (up to a generous limit, so a slow machine only waits longer)
/// until every message has reached `want`.
pub async fn wait_for(store: &Store, ids: &[MessageId], want: MessageStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut missing = Vec::new();
        for id in ids {
            let status = status(store, *id).await;
            if status != want {
                missing.push((*id, status));
            }
        }
        if missing.is_empty() {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{} of {} messages never became {want:?}; e.g. {:?}",
                missing.len(),
                ids.len(),
                &missing[..missing.len().min(3)]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn balance(store: &Store, account: AccountId) -> i64 {
    store.accounts().account(account).await.unwrap().unwrap().balance
}

/// Counts each event type in a history.
pub fn counts(kinds: &[EventKind]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for kind in kinds {
        *counts.entry(kind.type_name()).or_default() += 1;
    }
    counts
}

/// Messages whose history shows a submit with an unknown outcome (no response).
pub async fn unknown_outcomes(store: &Store, ids: &[MessageId]) -> usize {
    let mut n = 0;
    for id in ids {
        n += history(store, *id)
            .await
            .iter()
            .filter(|k| matches!(k, EventKind::SmscThrottled { command_status: 0, .. }))
            .count();
    }
    n
}
