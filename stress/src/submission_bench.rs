//! `tern bench submission`: the real HTTP server over a real store, driven
//! by concurrent HTTP clients in the same process (so client and server
//! share the machine, as they would in a one-box deployment). Prints
//! accepted messages/s and latency percentiles for single sends and for
//! batches.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tern_queue::Store;
use tern_submission::{Submission, SubmissionConfig};

/// What to measure.
#[derive(Debug, Clone)]
pub struct SubmissionBenchPlan {
    /// How long each phase sends.
    pub duration: Duration,
    /// Concurrent clients sending single messages.
    pub single_clients: usize,
    /// Concurrent clients sending batches.
    pub batch_clients: usize,
    /// Recipients per batch.
    pub batch_size: usize,
    /// HTTP worker threads of the server (0: one per core).
    pub server_workers: usize,
}

impl Default for SubmissionBenchPlan {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(10),
            single_clients: 64,
            batch_clients: 4,
            batch_size: 1_000,
            server_workers: 0,
        }
    }
}

/// The figures of one phase.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    /// Phase name.
    pub name: String,
    /// Requests answered 202.
    pub requests: usize,
    /// Messages accepted.
    pub messages: usize,
    /// Requests answered otherwise.
    pub failures: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Request latencies, sorted.
    pub latencies: Vec<Duration>,
}

impl PhaseResult {
    /// Messages accepted per second.
    pub fn messages_per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of request latency.
    pub fn percentile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }
}

async fn checked(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        bail!("{what} answered {status}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// Starts the server over `store`, creates an account with a key, and runs
/// both phases; returns their results (and prints them).
pub async fn run(store: Store, plan: &SubmissionBenchPlan) -> anyhow::Result<Vec<PhaseResult>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let admin = "bench-admin-token";
    let config = SubmissionConfig {
        admin_token: Some(admin.into()),
        workers: plan.server_workers,
        max_batch_bytes: 64 * 1024 * 1024,
        ..SubmissionConfig::default()
    };
    let backend = store.backend_name();
    let server = Submission::new(store, config, listener)?;
    let url = format!("http://127.0.0.1:{}", server.port());
    let handle = server.run()?;
    let stop = handle.handle();
    tokio::spawn(handle);

    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let account = client
        .post(format!("{url}/admin/v1/accounts"))
        .bearer_auth(admin)
        .json(&json!({ "name": "bench", "requests_per_second": 1_000_000, "messages_per_second": 10_000_000,
                       "price_plan": { "default": 5 } }))
        .send()
        .await?;
    let account = checked(account, "create account").await?;
    let id = account["id"].as_str().context("account id")?;
    let key = client.post(format!("{url}/admin/v1/accounts/{id}/keys")).bearer_auth(admin).send().await?;
    let key = checked(key, "create key").await?["key"].as_str().context("key")?.to_owned();

    println!("submission benchmark on {backend}: {:?} per phase, durable commits", plan.duration);
    let single = phase(&client, &url, &key, "single sends", plan.single_clients, 1, plan.duration).await?;
    print(&single, plan.single_clients);
    let batches = phase(&client, &url, &key, "batches", plan.batch_clients, plan.batch_size, plan.duration).await?;
    print(&batches, plan.batch_clients);
    stop.stop(true).await;
    Ok(vec![single, batches])
}

fn print(r: &PhaseResult, clients: usize) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:<14} {clients:>3} clients  {:>8} msgs in {:>6.2} s  {:>9.0} msgs/s  {:>7.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  failures {}",
        r.name,
        r.messages,
        r.elapsed.as_secs_f64(),
        r.messages_per_second(),
        r.requests as f64 / r.elapsed.as_secs_f64(),
        ms(r.percentile(0.50)),
        ms(r.percentile(0.99)),
        ms(r.latencies.last().copied().unwrap_or_default()),
        r.failures,
    );
}

async fn phase(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    name: &str,
    clients: usize,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<PhaseResult> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let (client, key) = (client.clone(), key.to_owned());
        let endpoint = if batch == 1 { format!("{url}/v1/messages") } else { format!("{url}/v1/batches") };
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut messages, mut failures) = (0usize, 0usize);
            // Bodies are made once: the load generator shares the machine
            // with the server, and should spend its CPU sending, not building.
            let bodies: Vec<String> = if batch == 1 {
                (0..1_000)
                    .map(|n| {
                        json!({ "to": format!("+4474{:04}{:04}", c, n), "from": "Bench", "body": "Your code is 123456" })
                            .to_string()
                    })
                    .collect()
            } else {
                let recipients: Vec<Value> = (0..batch)
                    .map(|i| json!({ "to": format!("+4474{:02}{:06}", c % 100, i), "variables": { "n": i.to_string() } }))
                    .collect();
                vec![json!({ "from": "Bench", "body": "Hello {n}, your code is 123456", "recipients": recipients }).to_string()]
            };
            let mut n = 0usize;
            while Instant::now() < deadline {
                n += 1;
                let body = bodies[n % bodies.len()].clone();
                let sent = Instant::now();
                let response = client
                    .post(&endpoint)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().as_u16() == 202 => {
                        let _ = r.bytes().await;
                        latencies.push(sent.elapsed());
                        messages += batch;
                    }
                    Ok(r) => {
                        failures += 1;
                        if failures <= 3 {
                            eprintln!("request failed: {} {}", r.status(), r.text().await.unwrap_or_default());
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        if failures <= 3 {
                            eprintln!("request failed: {e}");
                        }
                    }
                }
            }
            (latencies, messages, failures)
        }));
    }
    let mut result = PhaseResult {
        name: name.to_owned(),
        requests: 0,
        messages: 0,
        failures: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (latencies, messages, failures) = task.await?;
        result.requests += latencies.len();
        result.latencies.extend(latencies);
        result.messages += messages;
        result.failures += failures;
    }
    result.elapsed = started.elapsed();
    result.latencies.sort_unstable();
    Ok(result)
}
