//! `tern bench pipeline`: messages/s through the `mt` stage's opt-out →
//! routing → billing chain, durable commits on, with 1 and more workers.
//!
//! The messages are accepted first (not timed), then the workers start and
//! the clock runs until the `mt` queue is empty: every message routed,
//! charged, journaled, indexed, forwarded to its connector's queue and
//! acked. Each worker has its own store connection, as separate `tern
//! worker` processes would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{TimeDelta, Utc};
use tern_core::{AccountId, Encoding, Event, EventKind, MessageId, PricePlan};
use tern_handlers::billing::Billing;
use tern_handlers::optout::OptOutCheck;
use tern_handlers::routing::{Action, Routing, RoutingTable};
use tern_handlers::{Dispatch, Mt, Registry};
use tern_queue::{Account, NewEntry, RateLimits, Store, StoreConfig};
use tern_workers::Shutdown;
use tern_workers::config::StageConfig;
use tern_workers::mt::{MT_TOPIC, MtStage};
use tern_workers::runtime::Runner;

/// What to measure.
#[derive(Debug, Clone)]
pub struct PipelineBenchPlan {
    /// Messages per run.
    pub messages: usize,
    /// Worker counts to run with.
    pub workers: Vec<usize>,
    /// How each worker consumes `mt`.
    pub stage: StageConfig,
}

impl Default for PipelineBenchPlan {
    fn default() -> Self {
        Self {
            messages: 100_000,
            workers: vec![1, 2],
            stage: StageConfig { concurrency: 4, batch_size: 500, lease_ms: 60_000, max_attempts: 10 },
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct PipelineRun {
    /// Workers.
    pub workers: usize,
    /// Messages through the chain.
    pub messages: usize,
    /// Wall time until `mt` was empty.
    pub elapsed: Duration,
}

impl PipelineRun {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

const PRICE: i64 = 5;

async fn prepare(store: &Store, messages: usize) -> anyhow::Result<Account> {
    let account = Account {
        id: AccountId::new(),
        name: "bench".into(),
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
    store.accounts().create_account(&account).await?;
    store.accounts().top_up(account.id, i64::MAX / 4, "bench", Utc::now()).await?;
    let expires_at = Utc::now() + TimeDelta::hours(6);
    for start in (0..messages).step_by(1_000) {
        let mut events = Vec::with_capacity(1_000);
        let mut entries = Vec::with_capacity(1_000);
        for i in start..messages.min(start + 1_000) {
            let id = MessageId::new();
            let kind = EventKind::Accepted {
                // Spread over many recipients, as a bulk send is.
                to: format!("+4474{:08}", i % 100_000_000),
                country: Some("GB".into()),
                from: "BENCH".into(),
                body: "Your code is 123456".into(),
                encoding: Encoding::Gsm7,
                segments: 1,
                batch_id: None,
                client_ref: None,
                callback_url: None,
                priority: 0,
                expires_at,
                price: Some(PRICE),
                currency: Some("EUR".into()),
            };
            let event = Event::new(id, Some(account.id), Utc::now(), kind);
            entries.push(NewEntry::new(id.to_string(), serde_json::to_vec(&event)?));
            events.push(event);
        }
        store.accept(&events, MT_TOPIC, entries).await?;
    }
    Ok(account)
}

async fn worker(
    store: Store,
    stage_config: StageConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let table = RoutingTable { routes: Vec::new(), default: Some(Action::Connector("bench".into())) };
    let routing = Routing::new(store.clone(), table).await?;
    let mut registry = Registry::<Mt>::default();
    registry
        .register("optout", Arc::new(OptOutCheck::new(store.clone())))
        .register("routing", Arc::new(routing))
        .register("billing", Arc::new(Billing::new(store.clone())));
    let chain = registry.chain(&["optout".into(), "routing".into(), "billing".into()])?;
    let stage = Arc::new(MtStage::new(store.clone(), chain));
    let consumer = store.queue().consumer(MT_TOPIC, stage_config.consumer());
    Runner::new(stage, consumer, stage_config, Duration::from_secs(30)).run(shutdown).await;
    Ok(())
}

/// One run on a fresh store from `config`.
pub async fn run_once(config: &StoreConfig, plan: &PipelineBenchPlan, workers: usize) -> anyhow::Result<PipelineRun> {
    let store = config.connect().await.context("cannot open the bench store")?;
    let account = prepare(&store, plan.messages).await?;
    let (shutdown, stop) = Shutdown::new();
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..workers {
        let own = config.connect().await?;
        tasks.push(tokio::spawn(worker(own, plan.stage, stop.clone())));
    }
    loop {
        if store.queue().depth(MT_TOPIC).await?.pending() == 0 {
            break;
        }
        // Counting a deep queue is itself work for the store: look rarely.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();
    shutdown.trigger();
    for task in tasks {
        task.await??;
    }
    let forwarded = store.queue().depth(&Dispatch::topic("bench")).await?.pending();
    let balance = store.accounts().account(account.id).await?.map_or(0, |a| a.balance);
    let charged = i64::MAX / 4 - balance;
    if forwarded != plan.messages as u64 || charged != PRICE * plan.messages as i64 {
        bail!("run incomplete: {forwarded} forwarded and {charged} charged for {} messages", plan.messages);
    }
    Ok(PipelineRun { workers, messages: plan.messages, elapsed })
}

/// Runs every worker count, each on a fresh store from `fresh`, and prints the table.
pub async fn run(
    backend: &str,
    fresh: impl Fn() -> StoreConfig,
    plan: &PipelineBenchPlan,
) -> anyhow::Result<Vec<PipelineRun>> {
    println!(
        "pipeline bench ({backend}): opt-out → routing → billing, {} messages, batches of {}, {} in flight per worker",
        plan.messages, plan.stage.batch_size, plan.stage.concurrency
    );
    println!("{:>8} {:>10} {:>10} {:>12}", "workers", "messages", "seconds", "messages/s");
    let mut runs = Vec::new();
    for &workers in &plan.workers {
        let run = run_once(&fresh(), plan, workers).await?;
        println!("{:>8} {:>10} {:>10.2} {:>12.0}", run.workers, run.messages, run.elapsed.as_secs_f64(), run.rate());
        runs.push(run);
    }
    Ok(runs)
}
