//! `tern stress`: the nightly stress run of the seeds. Starts a deployment
//! (`tern up`, or each role as its own process) against the SMSC simulator,
//! drives the REST API with a mix of sends from several accounts, injects
//! faults, waits for everything to settle, checks the brief's invariants
//! against the journal, and writes a JSON and an HTML report.

pub mod deploy;
pub mod html;
pub mod load;
mod receiver;
pub mod report;
mod setup;
pub mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use tern_queue::{MongoConfig, SqliteConfig, StoreConfig};
use tern_reporting::ReportStore;
use tern_smsc_connector::sim::{Outcomes, SimConfig, SimHandle, Simulator};
use tokio::sync::Mutex;

pub use deploy::{Mode, StoreChoice};
pub use load::Mix;
use report::{ChaosEvent, Counts, Latencies, Percentiles, Report, Throughput};

/// Everything a run is told.
#[derive(Debug, Clone)]
pub struct StressPlan {
    /// The `tern` binary the roles run from.
    pub binary: PathBuf,
    /// Where the run's data, logs and reports go.
    pub out: PathBuf,
    /// One process or one per role.
    pub mode: Mode,
    /// The store.
    pub store: StoreChoice,
    /// A PostgreSQL server to make the reporting database on (a scratch
    /// database is created); `None` for SQLite.
    pub postgres: Option<String>,
    /// Accounts sending.
    pub accounts: usize,
    /// Messages/s; `None` is flat out.
    pub rate: Option<f64>,
    /// How long the load runs.
    pub duration: Duration,
    /// Longest wait after the load for everything to settle.
    pub drain: Duration,
    /// Concurrent HTTP clients.
    pub clients: usize,
    /// Kinds of request.
    pub mix: Mix,
    /// Recipients per batch.
    pub batch_size: usize,
    /// Share of messages with a status callback.
    pub callback_share: f64,
    /// Share of delivered messages the handset answers.
    pub mo_share: f64,
    /// Receipt delay range, ms.
    pub receipt_delay_ms: (u64, u64),
    /// What receipts report.
    pub outcomes: Outcomes,
    /// A fault every this often; `None` for none.
    pub chaos_every: Option<Duration>,
    /// A baseline report to compare with.
    pub baseline: Option<PathBuf>,
    /// Lease of claimed work (how soon a killed process's work is redone).
    pub lease_ms: u64,
}

/// The connector's batches in flight at its defaults (`batch_size` ×
/// `concurrency`): what one kill may resend (docs/architecture.md, "Duplicates").
const CONNECTOR_IN_FLIGHT: u64 = 500 * 4;
/// Tolerance of the baseline comparison.
const TOLERANCE: f64 = 0.10;

/// Runs the whole thing; the report says whether the invariants held.
pub async fn run(plan: StressPlan) -> anyhow::Result<Report> {
    let tag: String = rand::random::<[u8; 4]>().iter().map(|b| format!("{b:02x}")).collect();
    let dir = plan.out.join(format!("run-{tag}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let sim = Simulator::start(SimConfig {
        listen: "127.0.0.1:0".parse()?,
        receipt_delay_ms: plan.receipt_delay_ms,
        outcomes: plan.outcomes.clone(),
        mo_share: plan.mo_share,
        max_recorded: 0,
        ..SimConfig::default()
    })
    .await
    .context("cannot start the SMSC simulator")?;
    let receiver = receiver::Receiver::start()?;
    let reports_url = match &plan.postgres {
        Some(server) => setup::scratch_postgres(server, &tag).await?,
        None if plan.mode == Mode::Up => format!("sqlite://{}", dir.join("data").join("reports.db").display()),
        None => format!("sqlite://{}", dir.join("reports.db").display()),
    };
    let admin_token = format!("stress-admin-{tag}");
    let deploy_plan = deploy::DeployPlan {
        binary: plan.binary.clone(),
        dir: dir.clone(),
        mode: plan.mode,
        store: plan.store.clone(),
        reports_url: reports_url.clone(),
        smsc: sim.local_addr(),
        http: setup::free_address()?,
        admin_token: admin_token.clone(),
        lease_ms: plan.lease_ms,
    };
    println!("stress run {tag}: starting the deployment ({:?}) in {}", plan.mode, dir.display());
    let deployment = deploy::Deployment::start(deploy_plan).await?;
    let api_url = deployment.api_url().to_owned();
    let store = store_config(&plan, &dir).connect().await.context("cannot open the store")?;
    let reports = ReportStore::connect(&reports_url).await.context("cannot open the reporting store")?;
    let senders = setup::accounts(&api_url, &admin_token, plan.accounts, &receiver.inbound_url).await?;
    println!("{} accounts ready; sending for {:?}", senders.len(), plan.duration);

    let deployment = Arc::new(Mutex::new(deployment));
    let live = Arc::new(load::Live::default());
    let started_at = chrono::Utc::now();
    let start = Instant::now();
    let load = tokio::spawn(load::run(
        load::LoadPlan {
            api_url: api_url.clone(),
            duration: plan.duration,
            rate: plan.rate,
            clients: plan.clients,
            mix: plan.mix,
            batch_size: plan.batch_size,
            callback_share: plan.callback_share,
            callback_url: receiver.callback_url.clone(),
            tag: tag.clone(),
            retry_grace: plan.drain / 2,
        },
        senders.iter().map(|s| s.sender.clone()).collect(),
        Arc::clone(&live),
    ));
    let chaos =
        plan.chaos_every.map(|every| tokio::spawn(chaos(Arc::clone(&deployment), sim.clone(), every, plan.duration)));

    let mut tracker = verify::Tracker::default();
    let progress = Progress::new(plan.duration);
    let mut crashes = Vec::new();
    let mut store_away = StoreAway::default();
    while !load.is_finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        store_away.observe(tracker.step(&store).await)?;
        let mut deployment = deployment.lock().await;
        deployment.sample();
        crashes.extend(deployment.exited());
        progress.show(start.elapsed(), &live, &tracker);
    }
    let outcome = load.await??;
    let chaos_events = match chaos {
        Some(chaos) => chaos.await??,
        None => Vec::new(),
    };
    let load_secs = start.elapsed().as_secs_f64();
    println!("load done: {} messages accepted; draining", outcome.accepted);

    let drain_start = Instant::now();
    let settled = loop {
        let settled = store_away.observe(everything_settled(&mut tracker, &store, &reports).await)?;
        deployment.lock().await.sample();
        if settled == Some(true) {
            break true;
        }
        if drain_start.elapsed() > plan.drain {
            break false;
        }
        progress.show(start.elapsed(), &live, &tracker);
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let drain_secs = drain_start.elapsed().as_secs_f64();
    if !settled {
        println!("the drain period ended with {} messages unfinished", tracker.unfinished());
    }
    let balances = setup::balances(&api_url, &senders).await?;
    let mut deployment = Arc::into_inner(deployment).context("chaos outlived the run")?.into_inner();
    deployment.sample();
    crashes.extend(deployment.exited());
    let roles = deployment.usage();
    // A store restart longer than a lease can cost answered batches as a kill does (docs/architecture.md, "Duplicates").
    let kills = chaos_events
        .iter()
        .filter(|e| ["SIGKILL connector", "SIGKILL up", "restarted the store process"].contains(&e.action.as_str()))
        .count();
    deployment.stop_roles().await;
    tracker.step(&store).await?;
    deployment.stop().await;
    let stats = sim.stats();
    let duplicates = stats.duplicates;
    let evidence = verify::Evidence {
        message_ids: &outcome.message_ids,
        batches: &outcome.batches,
        client_accepted: outcome.accepted,
        abandoned: outcome.abandoned,
        duplicates,
        kill_allowance: kills as u64 * CONNECTOR_IN_FLIGHT,
        balances,
        received: &receiver.received,
    };
    let mut invariants = verify::check(&tracker, &reports, &evidence).await;
    invariants.push(report::Invariant {
        name: "no process died unless the harness killed it".into(),
        held: crashes.is_empty(),
        detail: if crashes.is_empty() { "none did".into() } else { crashes.join(", ") },
    });

    let seconds = plan.duration.as_secs() as usize + 1;
    let (mut timeline, to_submit, to_receipt) = tracker.timings(started_at, seconds);
    let mut by_second: Vec<Vec<f64>> = vec![Vec::new(); seconds];
    let mut accept: Vec<f64> = Vec::with_capacity(outcome.latencies.len());
    for (second, ms) in &outcome.latencies {
        accept.push(f64::from(*ms));
        if let Some(slot) = by_second.get_mut(*second as usize) {
            slot.push(f64::from(*ms));
        }
    }
    for (slot, mut samples) in timeline.iter_mut().zip(by_second) {
        slot.accepted = outcome.accepted_per_second.get(slot.t as usize).copied().unwrap_or(0);
        slot.accept_p99_ms = Percentiles::of(&mut samples).p99;
    }
    let in_load = |f: fn(&report::Second) -> u64| timeline.iter().map(f).sum::<u64>() as f64 / load_secs;
    let end = started_at + chrono::Duration::milliseconds((load_secs * 1_000.0) as i64);
    let report = Report {
        started_at: started_at.to_rfc3339(),
        mode: format!("{:?}", plan.mode).to_lowercase(),
        backend: match plan.store {
            StoreChoice::Sqlite => "sqlite".into(),
            StoreChoice::Mongodb { .. } => "mongodb".into(),
        },
        reports: reports.dialect().to_owned(),
        duration_secs: load_secs,
        drain_secs,
        accounts: plan.accounts,
        target_rate: plan.rate,
        chaos: plan.chaos_every.is_some(),
        throughput: Throughput {
            accepted_per_sec: outcome.accepted as f64 / load_secs,
            submitted_per_sec: in_load(|s| s.submitted),
            receipts_per_sec: in_load(|s| s.receipts),
            end_to_end_per_sec: tracker.finished_by(end) as f64 / (load_secs + drain_secs),
        },
        counts: Counts {
            requests: outcome.requests,
            accepted: outcome.accepted,
            journal_accepted: tracker.accepted(),
            by_status: tracker.by_status(),
            segments_submitted: stats.segments_accepted,
            duplicates,
            unknown_outcomes: tracker.unknown_outcomes(),
            callbacks_received: receiver.received.event_count(),
            callbacks_given_up: tracker.callbacks_given_up(),
            inbound: tracker.inbound(),
            journal_events: tracker.events(),
        },
        latency_ms: Latencies {
            accept: Percentiles::of(&mut accept),
            accept_to_submit: to_submit,
            accept_to_receipt: to_receipt,
        },
        errors: outcome.errors.clone(),
        roles,
        chaos_events,
        timeline,
        invariants,
    };
    receiver.stop().await;
    sim.stop().await;
    reports.close().await;
    write_outputs(&plan, &report)?;
    Ok(report)
}

/// Whether every accepted message is terminal, the callback dispatcher has
/// read the whole journal and sent what it queued, and the projector has
/// caught up.
async fn everything_settled(
    tracker: &mut verify::Tracker,
    store: &tern_queue::Store,
    reports: &ReportStore,
) -> anyhow::Result<bool> {
    tracker.step(store).await?;
    let head = tracker.position();
    let callbacks = store.queue().depth(tern_handlers::webhook::CALLBACKS_TOPIC).await?.pending();
    let dispatched = callbacks_dispatched(store).await? >= head;
    let projected = reports.checkpoint().await? >= head;
    Ok(tracker.unfinished() == 0 && dispatched && callbacks == 0 && projected)
}

/// How long the harness waits out a store it cannot read (chaos restarts
/// it) before it gives up on the run.
const STORE_AWAY_LIMIT: Duration = Duration::from_secs(60);

/// Since when the harness has been unable to read the store.
#[derive(Default)]
struct StoreAway(Option<Instant>);

impl StoreAway {
    /// The value read, or `None` while the store has been away for less
    /// than [`STORE_AWAY_LIMIT`]; then the error.
    fn observe<T>(&mut self, read: anyhow::Result<T>) -> anyhow::Result<Option<T>> {
        match read {
            Ok(value) => {
                self.0 = None;
                Ok(Some(value))
            }
            Err(e) if self.0.get_or_insert_with(Instant::now).elapsed() < STORE_AWAY_LIMIT => {
                tracing::warn!(error = %e, "cannot read the store; trying again");
                Ok(None)
            }
            Err(e) => Err(e.context(format!("the store stayed unreadable for {STORE_AWAY_LIMIT:?}"))),
        }
    }
}

/// How far the callback dispatcher has read the journal: a callback is
/// queued only once it has, so an empty queue alone proves nothing.
async fn callbacks_dispatched(store: &tern_queue::Store) -> anyhow::Result<tern_queue::Position> {
    let setting = store.coordination().setting(tern_workers::callbacks::CHECKPOINT_SETTING).await?;
    Ok(tern_queue::Position(setting.and_then(|s| s.value.parse().ok()).unwrap_or(0)))
}

fn store_config(plan: &StressPlan, dir: &std::path::Path) -> StoreConfig {
    match &plan.store {
        StoreChoice::Sqlite if plan.mode == Mode::Up => {
            StoreConfig::Sqlite(SqliteConfig { path: dir.join("data").join("tern.db") })
        }
        StoreChoice::Sqlite => StoreConfig::Sqlite(SqliteConfig { path: dir.join("tern.db") }),
        StoreChoice::Mongodb { uri, database, .. } => StoreConfig::Mongodb(MongoConfig::new(uri, database)),
    }
}

/// Injects one fault every `every` until the load ends: SIGKILL of a
/// random role (restarted a second later), all SMPP links dropped, or the
/// store process restarted when the harness runs it.
async fn chaos(
    deployment: Arc<Mutex<deploy::Deployment>>,
    sim: SimHandle,
    every: Duration,
    duration: Duration,
) -> anyhow::Result<Vec<ChaosEvent>> {
    let start = Instant::now();
    let mut events = Vec::new();
    let mut turn = 0u64;
    loop {
        tokio::time::sleep(every).await;
        if start.elapsed() + Duration::from_secs(2) > duration {
            return Ok(events);
        }
        let mut deployment = deployment.lock().await;
        let roles = deployment.roles();
        let choices = roles.len() + 1 + usize::from(deployment.owns_store());
        // The first faults go round every kind once; then they are random.
        let pick = if (turn as usize) < choices { turn as usize } else { rand::random_range(0..choices) };
        turn += 1;
        let at_secs = start.elapsed().as_secs_f64();
        let store = usize::from(deployment.owns_store());
        let action = if pick == 0 {
            sim.disconnect_all();
            "dropped SMPP links".to_owned()
        } else if pick == 1 && store == 1 {
            deployment.kill_and_restart("store", Duration::from_secs(2)).await?;
            "restarted the store process".to_owned()
        } else {
            let role = roles[(pick - 1 - store) % roles.len()];
            deployment.kill_and_restart(role, Duration::from_secs(1)).await?;
            format!("SIGKILL {role}")
        };
        println!("chaos at {at_secs:.0}s: {action}");
        events.push(ChaosEvent { at_secs, action });
    }
}

/// A progress line: a bar on a terminal, a line every five seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    printed_slot: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new(duration: Duration) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(duration.as_secs());
            bar.set_style(
                indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self { bar, printed_slot: std::sync::atomic::AtomicU64::new(u64::MAX) }
    }

    fn show(&self, elapsed: Duration, live: &load::Live, tracker: &verify::Tracker) {
        let accepted = live.accepted.load(Ordering::Relaxed);
        let line = format!(
            "{accepted} accepted ({:.0}/s), {} unfinished, {} errors",
            accepted as f64 / elapsed.as_secs_f64().max(0.001),
            tracker.unfinished(),
            live.errors.load(Ordering::Relaxed)
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(elapsed.as_secs());
                bar.set_message(line);
            }
            None => {
                // One line per 5 s: the loop calls this about once a second.
                let slot = elapsed.as_secs() / 5;
                if self.printed_slot.swap(slot, Ordering::Relaxed) != slot {
                    println!("{:>5}s  {line}", elapsed.as_secs());
                }
            }
        }
    }
}

fn write_outputs(plan: &StressPlan, report: &Report) -> anyhow::Result<()> {
    let comparisons = match &plan.baseline {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let baseline: Report =
                serde_json::from_str(&text).with_context(|| format!("{} is not a stress report", path.display()))?;
            report.compare(&baseline, TOLERANCE)
        }
        None => Vec::new(),
    };
    let json = plan.out.join("report.json");
    std::fs::write(&json, serde_json::to_vec_pretty(report)?)?;
    let page = plan.out.join("report.html");
    std::fs::write(&page, html::render(report, &comparisons))?;
    print_summary(report, &comparisons);
    println!("report: {} and {}", json.display(), page.display());
    Ok(())
}

fn print_summary(report: &Report, comparisons: &[report::Comparison]) {
    let t = &report.throughput;
    println!(
        "\nthroughput: {:.0} accepted/s, {:.0} submitted/s, {:.0} receipts/s, {:.0} end to end/s",
        t.accepted_per_sec, t.submitted_per_sec, t.receipts_per_sec, t.end_to_end_per_sec
    );
    for (name, p) in [
        ("accept", &report.latency_ms.accept),
        ("accept→submit", &report.latency_ms.accept_to_submit),
        ("accept→receipt", &report.latency_ms.accept_to_receipt),
    ] {
        println!("{name:>15}: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms ({} samples)", p.p50, p.p95, p.p99, p.count);
    }
    for role in &report.roles {
        println!(
            "{:>15}: peak RSS {:.0} MB, {:.2} cores, {} restarts",
            role.name, role.peak_rss_mb, role.cpu_cores, role.restarts
        );
    }
    if !report.errors.is_empty() {
        println!("errors: {:?}", report.errors);
    }
    for invariant in &report.invariants {
        println!("[{}] {}: {}", if invariant.held { "ok" } else { "BROKEN" }, invariant.name, invariant.detail);
    }
    for worse in comparisons.iter().filter(|c| c.worse) {
        println!(
            "WORSE than the baseline: {} {:.1} → {:.1} ({:+.0}%)",
            worse.name,
            worse.baseline,
            worse.now,
            worse.change * 100.0
        );
    }
}
