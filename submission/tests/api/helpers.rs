//! `spawn_app()`: the real server on port 0 over a fresh store (a new SQLite
//! file, or a new database on the MongoDB stand-in), as zero2prod does.
//! Tracing output only when `TEST_LOG` is set.

use std::sync::LazyLock;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tern_queue::{MongoConfig, SqliteConfig, Store, StoreConfig};
use tern_submission::{Submission, SubmissionConfig};

pub const ADMIN_TOKEN: &str = "test-admin-token";

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter("info").with_test_writer().init();
    }
});

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Mongodb,
}

pub struct TestApp {
    pub url: String,
    pub store: Store,
    pub client: reqwest::Client,
    /// The reporting store `/v1/reports` reads, when the app has one.
    pub reports: Option<tern_reporting::ReportStore>,
    /// The SQLite store's directory, removed when the test ends.
    _dir: Option<tempfile::TempDir>,
    /// Drops the reporting database when the test ends.
    _reports_guard: Option<tern_reporting::test_suite::Guard>,
}

async fn store_for(backend: Backend) -> (Store, Option<tempfile::TempDir>) {
    let mut dir = None;
    let config = match backend {
        Backend::Sqlite => {
            let temp = tempfile::Builder::new().prefix("tern-api-").tempdir().unwrap();
            let path = temp.path().join("tern.db");
            dir = Some(temp);
            StoreConfig::Sqlite(SqliteConfig { path })
        }
        Backend::Mongodb => {
            let uri = std::env::var("TERN_TEST_MONGODB_URI")
                .ok()
                .filter(|u| !u.trim().is_empty())
                .expect("TERN_TEST_MONGODB_URI is not set: run the tests through scripts/test.sh");
            let database = format!("api_{}", uuid::Uuid::new_v4().simple());
            StoreConfig::Mongodb(MongoConfig { server_selection_timeout_ms: 5_000, ..MongoConfig::new(uri, database) })
        }
    };
    (config.connect().await.expect("connect to the test store"), dir)
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(backend, SubmissionConfig::default()).await
}

pub async fn spawn_with(backend: Backend, config: SubmissionConfig) -> TestApp {
    spawn_full(backend, config, None).await
}

/// The app with a reporting store for `/v1/reports`.
pub async fn spawn_with_reports(
    backend: Backend,
    reports: (tern_reporting::ReportStore, tern_reporting::test_suite::Guard),
) -> TestApp {
    spawn_full(backend, SubmissionConfig::default(), Some(reports)).await
}

async fn spawn_full(
    backend: Backend,
    config: SubmissionConfig,
    reports: Option<(tern_reporting::ReportStore, tern_reporting::test_suite::Guard)>,
) -> TestApp {
    LazyLock::force(&TRACING);
    let (store, dir) = store_for(backend).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = SubmissionConfig { admin_token: Some(ADMIN_TOKEN.into()), workers: 2, ..config };
    let mut app = Submission::new(store.clone(), config, listener).unwrap();
    let (reports, guard) = reports.map_or((None, None), |(r, g)| (Some(r), Some(g)));
    if let Some(reports) = &reports {
        app = app.with_reports(reports.clone());
    }
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run().unwrap());
    TestApp { url, store, client: reqwest::Client::new(), reports, _dir: dir, _reports_guard: guard }
}

impl TestApp {
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(format!("{}{path}", self.url))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(format!("{}{path}", self.url))
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.client.delete(format!("{}{path}", self.url))
    }

    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.client.patch(format!("{}{path}", self.url))
    }

    pub fn put(&self, path: &str) -> RequestBuilder {
        self.client.put(format!("{}{path}", self.url))
    }

    pub fn admin(&self, builder: RequestBuilder) -> RequestBuilder {
        builder.bearer_auth(ADMIN_TOKEN)
    }

    /// Creates an account from `body` (admin API); returns its JSON.
    pub async fn account(&self, body: Value) -> Value {
        let response = self.admin(self.post("/admin/v1/accounts")).json(&body).send().await.unwrap();
        expect(response, StatusCode::CREATED).await
    }

    /// An account with a price plan and a balance, and a key for it.
    pub async fn customer(&self, extra: Value) -> Customer {
        let mut body = json!({ "name": "Acme", "price_plan": { "default": 5, "prefixes": { "44": 3 } } });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let account = self.account(body).await;
        let id = account["id"].as_str().unwrap().to_owned();
        let key = self.key(&id).await;
        Customer { id, key }
    }

    pub async fn key(&self, account: &str) -> String {
        let response = self
            .admin(self.post(&format!("/admin/v1/accounts/{account}/keys")))
            .json(&json!({ "name": "test" }))
            .send()
            .await
            .unwrap();
        expect(response, StatusCode::CREATED).await["key"].as_str().unwrap().to_owned()
    }

    /// Sends one message as `key`.
    pub async fn send(&self, key: &str, body: Value) -> Response {
        self.post("/v1/messages").bearer_auth(key).json(&body).send().await.unwrap()
    }

    /// Messages indexed for `account`, whatever their status.
    pub async fn message_count(&self, account: &str) -> usize {
        let query = tern_queue::MessageQuery::new(account.parse().unwrap(), 1_000_000);
        self.store.messages().list(&query).await.unwrap().rows.len()
    }
}

pub struct Customer {
    pub id: String,
    pub key: String,
}

/// Asserts the status (showing the body if it differs) and returns the JSON body.
pub async fn expect(response: Response, status: StatusCode) -> Value {
    let got = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

/// Asserts a problem document with this status; returns it.
pub async fn expect_problem(response: Response, status: StatusCode) -> Value {
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let problem = expect(response, status).await;
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{problem}");
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    assert!(problem["type"].as_str().unwrap().starts_with("https://"), "{problem}");
    assert!(!problem["detail"].as_str().unwrap().is_empty(), "{problem}");
    problem
}

/// Generates one test per backend for each listed `async fn(TestApp)`.
#[macro_export]
macro_rules! api_suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::helpers::spawn_app($crate::helpers::Backend::Mongodb).await).await;
                }
            )*
        }
    };
}
