//! POSTs queued webhooks, signed with the account's secret. A failure is
//! retried with exponential backoff (with jitter) until `give_up_after_secs`
//! past the event; then a `callback_failed` event records that it was given up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use tern_core::{AccountId, Event, EventKind};
use tern_handlers::webhook::{self, CALLBACKS_TOPIC, EVENT_ID_HEADER, SIGNATURE_HEADER, WebhookEntry};
use tern_queue::{ClaimedEntry, Consumer, Delivery, Store};

use crate::config::CallbackConfig;
use crate::runtime::Stage;
use crate::{WorkerError, metrics};

/// How long an account's secret is trusted before it is read again (rotation takes this long).
const SECRET_TTL: Duration = Duration::from_secs(10);

/// The webhook sender stage.
#[derive(Debug)]
pub struct Sender {
    store: Store,
    http: reqwest::Client,
    config: CallbackConfig,
    secrets: Mutex<HashMap<AccountId, (Option<String>, Instant)>>,
}

enum Attempt {
    Delivered(u16),
    Failed(String),
}

impl Sender {
    /// A sender with its own HTTP client.
    pub fn new(store: Store, config: CallbackConfig) -> Result<Self, WorkerError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(config.timeout_ms.clamp(1, 5_000)))
            .user_agent(concat!("Tern-Webhooks/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WorkerError::Config(format!("cannot build the webhook HTTP client: {e}")))?;
        Ok(Self { store, http, config, secrets: Mutex::default() })
    }

    async fn secret(&self, account: AccountId) -> Result<Option<String>, WorkerError> {
        if let Ok(cache) = self.secrets.lock()
            && let Some((secret, at)) = cache.get(&account)
            && at.elapsed() < SECRET_TTL
        {
            return Ok(secret.clone());
        }
        let secret = self.store.accounts().account(account).await?.and_then(|a| a.webhook_secret);
        if let Ok(mut cache) = self.secrets.lock() {
            cache.insert(account, (secret.clone(), Instant::now()));
        }
        Ok(secret)
    }

    async fn post(&self, entry: &WebhookEntry) -> Result<Attempt, WorkerError> {
        let mut request = self
            .http
            .post(&entry.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_ID_HEADER, entry.event_id.to_string());
        match self.secret(entry.account_id).await? {
            Some(secret) => {
                let signature = webhook::sign(&secret, Utc::now().timestamp(), entry.body.as_bytes());
                request = request.header(SIGNATURE_HEADER, signature);
            }
            None => tracing::warn!(account = %entry.account_id, "account has no webhook secret; sending unsigned"),
        }
        Ok(match request.body(entry.body.clone()).send().await {
            Ok(response) if response.status().is_success() => Attempt::Delivered(response.status().as_u16()),
            Ok(response) => Attempt::Failed(format!("the endpoint answered {}", response.status())),
            Err(e) if e.is_timeout() => Attempt::Failed(format!("no answer within {} ms", self.config.timeout_ms)),
            Err(e) => Attempt::Failed(format!("cannot reach the endpoint: {}", without_url(&e))),
        })
    }

    /// Delay before retry number `attempt` (1-based): doubling from the minimum, capped, jittered.
    fn delay(&self, attempt: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.config.min_delay_ms.max(1)))
            .with_max_delay(Duration::from_secs(self.config.max_delay_secs.max(1)))
            .with_jitter()
            .without_max_times()
            .build()
            .nth(usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX).min(64))
            .unwrap_or(Duration::from_secs(self.config.max_delay_secs.max(1)))
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Option<Event>, WorkerError> {
        let Ok(entry) = delivery.payload_json::<WebhookEntry>() else {
            tracing::error!(entry = delivery.id(), "unreadable webhook entry; dropped");
            delivery.ack().await?;
            return Ok(None);
        };
        let attempts = delivery.attempts();
        let now = Utc::now();
        let (event, settle) = match self.post(&entry).await? {
            Attempt::Delivered(http_status) => {
                ::metrics::counter!(metrics::WEBHOOKS, "result" => "delivered").increment(1);
                let kind = EventKind::CallbackDelivered {
                    for_event: entry.event_id,
                    url: entry.url.clone(),
                    http_status,
                    attempts,
                };
                (Some(kind), None)
            }
            Attempt::Failed(last_error) => {
                let deadline = entry.first_at
                    + chrono::TimeDelta::seconds(i64::try_from(self.config.give_up_after_secs).unwrap_or(i64::MAX));
                let delay = self.delay(attempts);
                if now + chrono::TimeDelta::from_std(delay).unwrap_or_default() > deadline {
                    ::metrics::counter!(metrics::WEBHOOKS, "result" => "given_up").increment(1);
                    let kind = EventKind::CallbackFailed {
                        for_event: entry.event_id,
                        url: entry.url.clone(),
                        attempts,
                        last_error,
                    };
                    (Some(kind), None)
                } else {
                    ::metrics::counter!(metrics::WEBHOOKS, "result" => "retry").increment(1);
                    tracing::debug!(url = %entry.url, attempts, %last_error, retry_in = ?delay, "webhook failed");
                    (None, Some(delay))
                }
            }
        };
        match settle {
            Some(delay) => {
                delivery.nack(delay).await?;
                Ok(None)
            }
            None => {
                let event = event.map(|kind| Event::new(entry.message_id, Some(entry.account_id), now, kind));
                if let Some(event) = &event {
                    // Journal first: a crash before the ack resends, and the event id dedupes.
                    self.store.record(std::slice::from_ref(event)).await?;
                }
                delivery.ack().await?;
                Ok(event)
            }
        }
    }
}

/// reqwest errors print the URL, which may hold a customer's credentials.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

#[async_trait]
impl Stage for Sender {
    fn name(&self) -> &str {
        CALLBACKS_TOPIC
    }

    async fn process(&self, _consumer: &Consumer, deliveries: Vec<Delivery>) -> Result<(), WorkerError> {
        let results = futures::future::join_all(deliveries.into_iter().map(|d| self.deliver(d))).await;
        results.into_iter().find_map(Result::err).map_or(Ok(()), Err)
    }

    async fn dead_lettered(&self, entries: Vec<ClaimedEntry>) -> Result<(), WorkerError> {
        let now = Utc::now();
        let events: Vec<Event> = entries
            .iter()
            .filter_map(|e| serde_json::from_slice::<WebhookEntry>(&e.payload).ok().map(|w| (w, e.attempts)))
            .map(|(w, attempts)| {
                let kind = EventKind::CallbackFailed {
                    for_event: w.event_id,
                    url: w.url.clone(),
                    attempts,
                    last_error: "its worker stopped before finishing it, every time".into(),
                };
                Event::new(w.message_id, Some(w.account_id), now, kind)
            })
            .collect();
        self.store.record(&events).await?;
        Ok(())
    }
}
