//! The load: concurrent REST clients sending a mix of single sends
//! (GSM and unicode, short and long, now and scheduled) and batches from
//! several accounts, at a target rate or flat out. Every request carries an
//! `Idempotency-Key` and is retried with it while the API is down (chaos),
//! so each message is accepted exactly once or counted as abandoned.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use serde_json::{Value, json};

/// Relative weights of the kinds of request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// Short GSM single sends.
    pub single: u32,
    /// Short unicode (UCS-2) single sends.
    pub unicode: u32,
    /// Three-segment single sends.
    pub long: u32,
    /// Single sends scheduled a few seconds ahead.
    pub scheduled: u32,
    /// Batches of `batch_size` recipients.
    pub batch: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Self { single: 70, unicode: 10, long: 10, scheduled: 5, batch: 5 }
    }
}

impl Mix {
    /// Parses `single=70,unicode=10,long=10,scheduled=5,batch=5` (kinds left out weigh 0).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut mix = Self { single: 0, unicode: 0, long: 0, scheduled: 0, batch: 0 };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part.split_once('=').ok_or_else(|| format!("`{part}` is not kind=weight"))?;
            let weight: u32 = weight.trim().parse().map_err(|_| format!("`{weight}` is not a whole number"))?;
            let slot = match kind.trim() {
                "single" => &mut mix.single,
                "unicode" => &mut mix.unicode,
                "long" => &mut mix.long,
                "scheduled" => &mut mix.scheduled,
                "batch" => &mut mix.batch,
                other => return Err(format!("unknown kind `{other}` (single, unicode, long, scheduled, batch)")),
            };
            *slot = weight;
        }
        if mix.total() == 0 {
            return Err("every weight is 0".into());
        }
        Ok(mix)
    }

    fn total(&self) -> u32 {
        self.single + self.unicode + self.long + self.scheduled + self.batch
    }

    fn pick(&self, roll: u32) -> Kind {
        let mut roll = roll % self.total();
        for (kind, weight) in [
            (Kind::Single, self.single),
            (Kind::Unicode, self.unicode),
            (Kind::Long, self.long),
            (Kind::Scheduled, self.scheduled),
        ] {
            if roll < weight {
                return kind;
            }
            roll -= weight;
        }
        Kind::Batch
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Single,
    Unicode,
    Long,
    Scheduled,
    Batch,
}

/// An account the load sends from.
#[derive(Debug, Clone)]
pub struct Sender {
    /// Its id.
    pub account_id: String,
    /// Its API key.
    pub api_key: String,
}

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The API.
    pub api_url: String,
    /// How long to send.
    pub duration: Duration,
    /// Messages per second across all clients; `None` is flat out.
    pub rate: Option<f64>,
    /// Concurrent clients.
    pub clients: usize,
    /// Kinds of request.
    pub mix: Mix,
    /// Recipients per batch.
    pub batch_size: usize,
    /// Share of messages sent with a `callback_url`.
    pub callback_share: f64,
    /// Where those callbacks go.
    pub callback_url: String,
    /// Makes every message text of this run unique (the simulator spots repeats by content).
    pub tag: String,
    /// How long a request keeps being retried after the load ends.
    pub retry_grace: Duration,
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// Requests sent (first attempts).
    pub requests: u64,
    /// Messages accepted (202).
    pub accepted: u64,
    /// Messages of requests given up after retries (their fate is unknown to the client).
    pub abandoned: u64,
    /// Failed attempts by kind.
    pub errors: BTreeMap<String, u64>,
    /// Ids of accepted single sends.
    pub message_ids: Vec<String>,
    /// Accepted batches: id and messages accepted.
    pub batches: Vec<(String, u64)>,
    /// (second of the answer, latency ms) of every accepted request.
    pub latencies: Vec<(u32, f32)>,
    /// Messages accepted in each second of the load.
    pub accepted_per_second: Vec<u64>,
}

/// Counters shown while the load runs.
#[derive(Debug, Default)]
pub struct Live {
    /// Messages accepted so far.
    pub accepted: AtomicU64,
    /// Failed attempts so far.
    pub errors: AtomicU64,
}

struct Shared {
    plan: LoadPlan,
    senders: Vec<Sender>,
    limiter: Option<DefaultDirectRateLimiter>,
    http: reqwest::Client,
    start: Instant,
    next: AtomicU64,
    live: Arc<Live>,
    outcome: Mutex<LoadOutcome>,
}

/// Sends until the duration is over; returns what the clients saw.
pub async fn run(plan: LoadPlan, senders: Vec<Sender>, live: Arc<Live>) -> anyhow::Result<LoadOutcome> {
    anyhow::ensure!(!senders.is_empty(), "no account to send from");
    let limiter = match plan.rate {
        Some(rate) => {
            let per_second = NonZeroU32::new(rate.round().max(1.0) as u32).unwrap_or(NonZeroU32::MIN);
            // A batch takes as many cells as it has recipients, so the burst
            // must hold one whole batch.
            let burst = NonZeroU32::new(plan.batch_size.max(1) as u32).unwrap_or(NonZeroU32::MIN);
            Some(RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)))
        }
        None => None,
    };
    let http = reqwest::Client::builder().pool_max_idle_per_host(plan.clients).build()?;
    let clients = plan.clients.max(1);
    let shared = Arc::new(Shared {
        plan,
        senders,
        limiter,
        http,
        start: Instant::now(),
        next: AtomicU64::new(0),
        live,
        outcome: Mutex::new(LoadOutcome::default()),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        tasks.spawn(client(Arc::clone(&shared)));
    }
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    let shared = Arc::into_inner(shared).ok_or_else(|| anyhow::anyhow!("a client outlived the load"))?;
    Ok(shared.outcome.into_inner().unwrap_or_else(PoisonError::into_inner))
}

async fn client(shared: Arc<Shared>) {
    let plan = &shared.plan;
    while shared.start.elapsed() < plan.duration {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        let (kind, callback) = {
            let mut rng = rand::rng();
            (plan.mix.pick(rng.random()), rng.random_bool(plan.callback_share.clamp(0.0, 1.0)))
        };
        let messages = if kind == Kind::Batch { plan.batch_size.max(1) } else { 1 };
        if let Some(limiter) = &shared.limiter {
            let cells = NonZeroU32::new(messages as u32).unwrap_or(NonZeroU32::MIN);
            // Clients queue at the limiter; when the load ends, those still
            // queued leave rather than take their turns one by one.
            let left = plan.duration.saturating_sub(shared.start.elapsed());
            match tokio::time::timeout(left, limiter.until_n_ready(cells)).await {
                Ok(Ok(())) => {}
                // More than the burst: never the case (the burst is a batch).
                Ok(Err(_)) => continue,
                Err(_) => break,
            }
        }
        let sender = &shared.senders[(n as usize) % shared.senders.len()];
        let (path, body) = request(plan, kind, n, callback.then_some(plan.callback_url.as_str()));
        send(&shared, sender, path, body, n, messages as u64).await;
    }
}

/// The path and JSON of request `n`.
fn request(plan: &LoadPlan, kind: Kind, n: u64, callback_url: Option<&str>) -> (&'static str, Value) {
    let to = format!("+447400{:06}", n % 1_000_000);
    let tag = &plan.tag;
    let mut body = match kind {
        Kind::Single => {
            json!({"to": to, "from": "Stress", "body": format!("Stress {tag} #{n}: your code is {:06}", n % 999_983)})
        }
        Kind::Unicode => {
            json!({"to": to, "from": "Stress", "body": format!("Привет {tag} #{n}: ваш код {} ✓", n % 9_973)})
        }
        Kind::Long => {
            let filler = "The quick brown fox jumps over the lazy dog. ".repeat(8);
            json!({"to": to, "from": "Stress", "body": format!("Stress {tag} #{n} (long): {filler}")})
        }
        Kind::Scheduled => {
            let ahead = 2 + (n % 8) as i64;
            let send_at = (chrono::Utc::now() + chrono::Duration::seconds(ahead))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            json!({"to": to, "from": "Stress", "body": format!("Stress {tag} #{n} (scheduled)"), "send_at": send_at})
        }
        Kind::Batch => {
            let recipients: Vec<Value> = (0..plan.batch_size.max(1))
                .map(|row| {
                    json!({"to": format!("+447401{:06}", (n * 1_000 + row as u64) % 1_000_000),
                           "variables": {"name": format!("R{row}"), "row": row.to_string()}})
                })
                .collect();
            return (
                "/v1/batches",
                json!({"from": "Stress", "body": format!("Hi {{name}}, stress {tag} batch {n} row {{row}}"), "recipients": recipients}),
            );
        }
    };
    if let (Some(url), Some(object)) = (callback_url, body.as_object_mut()) {
        object.insert("callback_url".into(), Value::String(url.to_owned()));
    }
    ("/v1/messages", body)
}

/// Sends one request, retrying with the same idempotency key until the
/// load's grace period ends.
async fn send(shared: &Shared, sender: &Sender, path: &str, body: Value, n: u64, messages: u64) {
    let plan = &shared.plan;
    let key = format!("stress-{}-{n}", plan.tag);
    let give_up = plan.duration + plan.retry_grace;
    let mut backoff = Duration::from_millis(100);
    let first = Instant::now();
    shared.outcome.lock().unwrap_or_else(PoisonError::into_inner).requests += 1;
    loop {
        let sent = Instant::now();
        let attempt = shared
            .http
            .post(format!("{}{path}", plan.api_url))
            .bearer_auth(&sender.api_key)
            .header("Idempotency-Key", &key)
            .timeout(Duration::from_secs(30))
            .json(&body)
            .send()
            .await;
        let failure = match attempt {
            Ok(response) if response.status().as_u16() == 202 || response.status().as_u16() == 200 => {
                match response.json::<Value>().await {
                    Ok(answer) => {
                        accepted(shared, path, &answer, first);
                        return;
                    }
                    Err(_) => "unreadable_answer".to_owned(),
                }
            }
            Ok(response) => {
                let status = response.status();
                if status.as_u16() == 429 {
                    let wait = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(1);
                    backoff = Duration::from_secs(wait.clamp(1, 5));
                }
                if status.is_client_error() && status.as_u16() != 429 {
                    // A refused request is a fault of the harness or of the API, never retried.
                    let detail = response.text().await.unwrap_or_default();
                    tracing::warn!(%status, %detail, "the API refused a stress request");
                    error(shared, format!("http_{}", status.as_u16()));
                    shared.outcome.lock().unwrap_or_else(PoisonError::into_inner).abandoned += messages;
                    return;
                }
                format!("http_{}", status.as_u16())
            }
            Err(e) if e.is_timeout() => "timeout".to_owned(),
            Err(e) if e.is_connect() => "connect".to_owned(),
            Err(_) => "connection_lost".to_owned(),
        };
        if sent.elapsed() > Duration::from_secs(5) {
            tracing::warn!(secs = sent.elapsed().as_secs_f64(), failure, "a stress request hung");
        }
        error(shared, failure);
        if shared.start.elapsed() + backoff > give_up {
            shared.outcome.lock().unwrap_or_else(PoisonError::into_inner).abandoned += messages;
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn error(shared: &Shared, kind: String) {
    shared.live.errors.fetch_add(1, Ordering::Relaxed);
    *shared.outcome.lock().unwrap_or_else(PoisonError::into_inner).errors.entry(kind).or_default() += 1;
}

fn accepted(shared: &Shared, path: &str, answer: &Value, first: Instant) {
    let second = shared.start.elapsed().as_secs() as usize;
    let latency = first.elapsed().as_secs_f32() * 1_000.0;
    let mut outcome = shared.outcome.lock().unwrap_or_else(PoisonError::into_inner);
    let count = if path == "/v1/batches" {
        let count = answer["accepted"].as_u64().unwrap_or(0);
        if let Some(id) = answer["batch_id"].as_str() {
            outcome.batches.push((id.to_owned(), count));
        }
        count
    } else {
        if let Some(id) = answer["id"].as_str() {
            outcome.message_ids.push(id.to_owned());
        }
        1
    };
    outcome.accepted += count;
    outcome.latencies.push((second as u32, latency));
    if outcome.accepted_per_second.len() <= second {
        outcome.accepted_per_second.resize(second + 1, 0);
    }
    outcome.accepted_per_second[second] += count;
    shared.live.accepted.fetch_add(count, Ordering::Relaxed);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_parses_and_picks_by_weight() {
        let mix = Mix::parse("single=2, batch=1").unwrap();
        let picks: Vec<Kind> = (0..3).map(|roll| mix.pick(roll)).collect();
        assert_eq!(picks, [Kind::Single, Kind::Single, Kind::Batch]);
        assert!(Mix::parse("single=0").unwrap_err().contains("every weight is 0"));
        assert!(Mix::parse("sms=1").unwrap_err().contains("unknown kind"));
        assert!(Mix::parse("single").unwrap_err().contains("kind=weight"));
    }

    #[test]
    fn every_request_of_a_run_has_its_own_text() {
        let plan = LoadPlan {
            api_url: String::new(),
            duration: Duration::ZERO,
            rate: None,
            clients: 1,
            mix: Mix::default(),
            batch_size: 3,
            callback_share: 0.0,
            callback_url: "http://127.0.0.1:1/cb".into(),
            tag: "t".into(),
            retry_grace: Duration::ZERO,
        };
        let mut texts = std::collections::HashSet::new();
        for (n, kind) in [Kind::Single, Kind::Unicode, Kind::Long, Kind::Scheduled].into_iter().enumerate() {
            let (path, body) = request(&plan, kind, n as u64, Some("http://x/cb"));
            assert_eq!(path, "/v1/messages");
            assert_eq!(body["callback_url"], "http://x/cb");
            assert!(texts.insert(body["body"].as_str().unwrap().to_owned()));
        }
        let (path, batch) = request(&plan, Kind::Batch, 9, None);
        assert_eq!(path, "/v1/batches");
        assert_eq!(batch["recipients"].as_array().unwrap().len(), 3);
        assert!(batch["body"].as_str().unwrap().contains("{row}"));
    }
}
