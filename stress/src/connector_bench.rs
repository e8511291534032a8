//! `tern bench connector`: messages/s from a connector's queue to an SMSC
//! and back, durable commits on.
//!
//! Messages are accepted and queued on `smsc.bench` first (not timed). Then
//! a connector and the SMSC simulator start, in this process but talking
//! SMPP over loopback TCP, and the clock runs until every message has its
//! `submit_sm_resp` recorded (submit_sm/s) and its delivery receipt
//! recorded in the journal (receipts/s: the end-to-end rate). Each window
//! size gets a fresh store.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{TimeDelta, Utc};
use tern_core::{AccountId, Encoding, Event, EventKind, MessageId};
use tern_handlers::Dispatch;
use tern_queue::{NewEntry, Position, Store, StoreConfig};
use tern_smsc_connector::ConnectorConfig;
use tern_smsc_connector::sim::{Outcomes, SimConfig, Simulator};
use tern_workers::Shutdown;

const CONNECTOR: &str = "bench";

/// What to measure.
#[derive(Debug, Clone)]
pub struct ConnectorBenchPlan {
    /// Messages per run with each window (smaller windows are slower: they get a tenth).
    pub messages: usize,
    /// Window sizes to run with.
    pub windows: Vec<usize>,
    /// Binds (transceivers).
    pub binds: usize,
    /// Queue entries claimed per batch.
    pub batch_size: usize,
    /// Batches in flight.
    pub concurrency: usize,
}

impl Default for ConnectorBenchPlan {
    fn default() -> Self {
        Self { messages: 100_000, windows: vec![1, 10, 100], binds: 1, batch_size: 500, concurrency: 4 }
    }
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct ConnectorRun {
    /// Window per bind.
    pub window: usize,
    /// Messages sent.
    pub messages: usize,
    /// Until every `submit_sm_resp` was recorded.
    pub submitted: Duration,
    /// Until every receipt was recorded.
    pub receipted: Duration,
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(f64::EPSILON)
}

async fn prepare(store: &Store, messages: usize) -> anyhow::Result<()> {
    let account = AccountId::new();
    let expires_at = Utc::now() + TimeDelta::hours(6);
    for start in (0..messages).step_by(1_000) {
        let mut events = Vec::with_capacity(1_000);
        let mut entries = Vec::with_capacity(1_000);
        for i in start..messages.min(start + 1_000) {
            let id = MessageId::new();
            let kind = EventKind::Accepted {
                to: format!("+4474{:08}", i % 100_000_000),
                country: Some("GB".into()),
                from: "BENCH".into(),
                body: format!("Your code is {i:06}"),
                encoding: Encoding::Gsm7,
                segments: 1,
                batch_id: None,
                client_ref: None,
                callback_url: None,
                priority: 0,
                expires_at,
                price: None,
                currency: None,
            };
            let accepted = Event::new(id, Some(account), Utc::now(), kind);
            let dispatch = Dispatch {
                accepted: accepted.clone(),
                connector: CONNECTOR.into(),
                route: "bench".into(),
                route_attempt: 1,
            };
            entries.push(NewEntry::new(format!("{id}:1"), serde_json::to_vec(&dispatch)?));
            events.push(accepted);
        }
        store.accept(&events, &Dispatch::topic(CONNECTOR), entries).await?;
    }
    Ok(())
}

/// Counts events of two kinds in the journal from `after` on.
async fn tally(store: &Store, after: &mut Position, submitted: &mut usize, receipts: &mut usize) -> anyhow::Result<()> {
    loop {
        let records = store.journal().read_from(*after, 10_000).await?;
        let Some(last) = records.last() else { return Ok(()) };
        *after = last.position;
        for record in &records {
            match record.event.kind {
                EventKind::SubmittedToSmsc { .. } => *submitted += 1,
                EventKind::DeliveryReport { .. } => *receipts += 1,
                _ => {}
            }
        }
        if records.len() < 10_000 {
            return Ok(());
        }
    }
}

/// One run on a fresh store from `config`.
pub async fn run_once(config: &StoreConfig, plan: &ConnectorBenchPlan, window: usize) -> anyhow::Result<ConnectorRun> {
    let messages = if window < 10 { plan.messages / 10 } else { plan.messages }.max(1);
    let store = config.connect().await.context("cannot open the bench store")?;
    prepare(&store, messages).await?;
    let mut position = store.journal().head().await?;
    let mut sim_config = SimConfig {
        listen: "127.0.0.1:0".parse()?,
        receipt_delay_ms: (0, 0),
        outcomes: Outcomes::all_delivered(),
        ..SimConfig::default()
    };
    sim_config.window = window.max(100);
    let sim = Simulator::start(sim_config).await?;
    let connector_config = ConnectorConfig {
        port: sim.local_addr().port(),
        window,
        binds: plan.binds,
        batch_size: plan.batch_size,
        concurrency: plan.concurrency,
        ..ConnectorConfig::default()
    };
    let (shutdown, stop) = Shutdown::new();
    let started = Instant::now();
    let running = tern_smsc_connector::start(CONNECTOR, &connector_config, store.clone(), stop)?;
    let (mut submitted, mut receipts) = (0, 0);
    let mut submitted_at = None;
    let limit = Duration::from_secs(600);
    while receipts < messages {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tally(&store, &mut position, &mut submitted, &mut receipts).await?;
        if submitted >= messages && submitted_at.is_none() {
            submitted_at = Some(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("run incomplete after {limit:?}: {submitted} submitted, {receipts} receipts of {messages}");
        }
    }
    let receipted = started.elapsed();
    shutdown.trigger();
    let _ = running.done.await;
    let stats = sim.stats();
    sim.stop().await;
    if stats.duplicates != 0 {
        bail!("the simulator saw {} duplicates", stats.duplicates);
    }
    Ok(ConnectorRun { window, messages, submitted: submitted_at.unwrap_or(receipted), receipted })
}

/// Runs every window size, each on a fresh store from `fresh`, and prints the table.
pub async fn run(
    backend: &str,
    fresh: impl Fn() -> StoreConfig,
    plan: &ConnectorBenchPlan,
) -> anyhow::Result<Vec<ConnectorRun>> {
    println!(
        "connector bench ({backend}): queue → submit_sm → SMSC simulator → receipt → journal, {} bind(s), batches of {}, {} in flight",
        plan.binds, plan.batch_size, plan.concurrency
    );
    println!("{:>7} {:>9} {:>13} {:>11} {:>13}", "window", "messages", "submit_sm/s", "receipts/s", "end-to-end s");
    let mut runs = Vec::new();
    for &window in &plan.windows {
        let run = run_once(&fresh(), plan, window).await?;
        println!(
            "{:>7} {:>9} {:>13.0} {:>11.0} {:>13.2}",
            run.window,
            run.messages,
            rate(run.messages, run.submitted),
            rate(run.messages, run.receipted),
            run.receipted.as_secs_f64()
        );
        runs.push(run);
    }
    Ok(runs)
}
