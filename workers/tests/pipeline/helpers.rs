//! Fresh stores, accounts, accepted messages, a webhook receiver, and the
//! macro that runs each test on both backends.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tern_core::{AccountId, Encoding, Event, EventKind, MessageId, PricePlan};
use tern_handlers::optout::OptOutConfig;
use tern_handlers::routing::{Action, Routing, RoutingTable};
use tern_handlers::{Handler, HandlerError, Mt, Outcome, Registry};
use tern_queue::{Account, ConsumerOptions, MongoConfig, NewEntry, RateLimits, SqliteConfig, Store, StoreConfig};
use tern_workers::mt::{MT_TOPIC, MtStage};
use tern_workers::runtime::Stage;

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter("info").with_test_writer().init();
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
    pub backend: Backend,
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
            let temp = tempfile::Builder::new().prefix("tern-pipeline-").tempdir().unwrap();
            let path = temp.path().join("tern.db");
            dir = Some(temp);
            StoreConfig::Sqlite(SqliteConfig { path })
        }
        Backend::Mongodb => mongodb_config(mongodb_uri()),
    };
    TestStore { store: config.connect().await.unwrap(), backend, _dir: dir }
}

fn mongodb_uri() -> String {
    std::env::var("TERN_TEST_MONGODB_URI")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .expect("TERN_TEST_MONGODB_URI is not set: run the tests through scripts/test.sh")
}

fn mongodb_config(uri: String) -> StoreConfig {
    let database = format!("pipeline_{}", uuid::Uuid::new_v4().simple());
    StoreConfig::Mongodb(MongoConfig { server_selection_timeout_ms: 5_000, ..MongoConfig::new(uri, database) })
}

/// A store of the same backend on a single connection: on MongoDB a fresh
/// database behind a pool of one, so every store call of a process takes
/// turns on it; SQLite as it is.
pub async fn one_connection(store: &TestStore) -> Store {
    match store.backend {
        Backend::Sqlite => store.store.clone(),
        Backend::Mongodb => {
            let uri = mongodb_uri();
            let separator = match uri.split_once("://").map(|(_, rest)| rest) {
                _ if uri.contains('?') => "&",
                Some(rest) if rest.contains('/') => "?",
                _ => "/?",
            };
            mongodb_config(format!("{uri}{separator}maxPoolSize=1")).connect().await.unwrap()
        }
    }
}

#[macro_export]
macro_rules! pipeline_suite {
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

pub struct NewAccount {
    pub balance: i64,
    pub credit_limit: i64,
    pub plan: Option<PricePlan>,
    pub parent: Option<AccountId>,
    pub callback_url: Option<String>,
    pub inbound_url: Option<String>,
}

impl Default for NewAccount {
    fn default() -> Self {
        Self {
            balance: 1_000_000,
            credit_limit: 0,
            plan: Some(flat(10)),
            parent: None,
            callback_url: None,
            inbound_url: None,
        }
    }
}

pub fn flat(price: i64) -> PricePlan {
    PricePlan { default: Some(price), ..PricePlan::default() }
}

pub const SECRET: &str = "whsec_test";

pub async fn account(store: &Store, new: NewAccount) -> Account {
    let account = Account {
        id: AccountId::new(),
        name: "test".into(),
        parent_id: new.parent,
        currency: "EUR".into(),
        balance: 0,
        credit_limit: new.credit_limit,
        price_plan: new.plan,
        limits: RateLimits::default(),
        callback_url: new.callback_url,
        inbound_url: new.inbound_url,
        webhook_secret: Some(SECRET.into()),
        suspended: false,
        created_at: Utc::now(),
    };
    store.accounts().create_account(&account).await.unwrap();
    if new.balance != 0 {
        store.accounts().top_up(account.id, new.balance, &format!("initial-{}", account.id), Utc::now()).await.unwrap();
    }
    store.accounts().account(account.id).await.unwrap().unwrap()
}

pub struct Send<'a> {
    pub to: &'a str,
    pub from: &'a str,
    pub segments: u16,
    pub expires_at: DateTime<Utc>,
    pub callback_url: Option<&'a str>,
}

impl Default for Send<'_> {
    fn default() -> Self {
        Self {
            to: "+447400123456",
            from: "ACME",
            segments: 1,
            expires_at: Utc::now() + TimeDelta::hours(1),
            callback_url: None,
        }
    }
}

/// Accepts a message as submission does (priced from the account's plan) onto `mt`.
pub async fn send(store: &Store, account: &Account, send: Send<'_>) -> MessageId {
    let id = MessageId::new();
    let to = tern_core::Msisdn::parse(send.to).unwrap();
    let price = account.price_plan.as_ref().and_then(|p| p.price(&to, send.segments));
    let kind = EventKind::Accepted {
        to: to.as_str().to_owned(),
        country: to.country().map(str::to_owned),
        from: send.from.into(),
        body: "hello".into(),
        encoding: Encoding::Gsm7,
        segments: send.segments,
        batch_id: None,
        client_ref: Some("ref-1".into()),
        callback_url: send.callback_url.map(str::to_owned),
        priority: 0,
        expires_at: send.expires_at,
        price,
        currency: price.map(|_| account.currency.clone()),
    };
    let accepted = Event::new(id, Some(account.id), Utc::now(), kind);
    let entry = NewEntry::new(id.to_string(), serde_json::to_vec(&accepted).unwrap());
    store.accept(&[accepted], MT_TOPIC, vec![entry]).await.unwrap();
    id
}

pub fn table(default: &str) -> RoutingTable {
    RoutingTable { routes: Vec::new(), default: Some(Action::Connector(default.into())) }
}

/// A handler that fails the whole batch the first `n` times it runs (a crash mid-chain).
#[derive(Debug)]
pub struct FailFirst(pub Mutex<u32>);

#[async_trait::async_trait]
impl Handler<Mt> for FailFirst {
    async fn handle(&self, batch: &mut [&mut Mt]) -> Result<Vec<Outcome>, HandlerError> {
        let mut left = self.0.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            return Err(HandlerError::Unexpected(anyhow::anyhow!("injected failure")));
        }
        Ok(vec![Outcome::Continue; batch.len()])
    }
}

/// The built-in `mt` handlers over `store`, routing with `table`.
pub async fn mt_registry(store: &Store, table: RoutingTable) -> (Registry<Mt>, Routing) {
    let routing = Routing::new(store.clone(), table).await.unwrap();
    let mut registry = Registry::<Mt>::default();
    registry
        .register("optout", Arc::new(tern_handlers::optout::OptOutCheck::new(store.clone())))
        .register("routing", Arc::new(routing.clone()))
        .register("billing", Arc::new(tern_handlers::billing::Billing::new(store.clone())))
        .register("conversations", Arc::new(tern_handlers::conversations::Conversations::new(store.clone())));
    (registry, routing)
}

pub fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

pub const DEFAULT_CHAIN: &[&str] = &["optout", "routing", "billing", "conversations"];

/// Claims and processes `mt` until nothing is ready; a failed batch's leases are
/// given back, as the runner does.
pub async fn drain(store: &Store, stage: &MtStage) {
    drain_topic(store, stage, MT_TOPIC, ConsumerOptions { lease: Duration::from_secs(30), max_attempts: 5 }).await;
}

pub async fn drain_topic(store: &Store, stage: &dyn Stage, topic: &str, options: ConsumerOptions) {
    let consumer = store.queue().consumer(topic, options);
    for _ in 0..1_000 {
        let claimed = consumer.claim(500).await.unwrap();
        if !claimed.dead_lettered.is_empty() {
            stage.dead_lettered(claimed.dead_lettered).await.unwrap();
        }
        if claimed.deliveries.is_empty() {
            return;
        }
        let leases: Vec<_> = claimed.deliveries.iter().map(|d| d.lease().clone()).collect();
        if stage.process(&consumer, claimed.deliveries).await.is_err() {
            consumer.release_leases(&leases).await.unwrap();
        }
    }
    panic!("{topic} never drained");
}

pub async fn history(store: &Store, id: MessageId) -> Vec<EventKind> {
    store.journal().message_events(id).await.unwrap().into_iter().map(|e| e.kind).collect()
}

pub async fn status(store: &Store, id: MessageId) -> tern_core::MessageStatus {
    tern_core::MessageStatus::fold(&store.journal().message_events(id).await.unwrap()).unwrap()
}

pub async fn balance(store: &Store, account: AccountId) -> i64 {
    store.accounts().account(account).await.unwrap().unwrap().balance
}

pub fn rejected_code(kinds: &[EventKind]) -> Option<String> {
    kinds.iter().find_map(|k| match k {
        EventKind::Rejected { code, .. } | EventKind::Failed { code, .. } => Some(code.clone()),
        _ => None,
    })
}

pub fn default_optout() -> OptOutConfig {
    OptOutConfig::default()
}

/// What the webhook receiver saw.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: String,
    pub signature: Option<String>,
    pub event_id: Option<String>,
}

/// A local HTTP server that answers 500 to its first `fail_first` requests, then 200.
pub struct Receiver {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Received>>>,
    _server: tokio::task::JoinHandle<()>,
}

pub async fn receiver(fail_first: usize) -> Receiver {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let state = web::Data::new((seen.clone(), fail_first));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).default_service(web::to(
            |req: HttpRequest, body: web::Bytes, state: web::Data<(Arc<Mutex<Vec<Received>>>, usize)>| async move {
                let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let mut seen = state.0.lock().unwrap();
                seen.push(Received {
                    body: String::from_utf8_lossy(&body).into_owned(),
                    signature: header("Tern-Signature"),
                    event_id: header("Tern-Event-Id"),
                });
                if seen.len() <= state.1 {
                    HttpResponse::InternalServerError().finish()
                } else {
                    HttpResponse::Ok().finish()
                }
            },
        ))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = tokio::spawn(async move {
        let _ = server.await;
    });
    Receiver { url: format!("http://127.0.0.1:{port}/hooks"), seen, _server: handle }
}

/// Counts each event type in a history.
pub fn counts(kinds: &[EventKind]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for kind in kinds {
        *counts.entry(kind.type_name()).or_default() += 1;
    }
    counts
}
