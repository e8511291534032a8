//! `tern <role>`: every component of Tern is a subcommand of this binary.
//! `tern up` runs them all in one process on embedded defaults.

mod demo;
mod settings;
mod sim_args;
mod stress_args;
mod up;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sim_args::SimArgs;
use tern_queue::{MongoConfig, SqliteConfig, StoreConfig};
use tern_stress::queue_bench::{self, QueueBenchPlan};
use tern_stress::submission_bench::{self, SubmissionBenchPlan};

#[derive(Debug, Parser)]
#[command(name = "tern", version, about = "Tern: an event-sourced SMS platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything in one process on SQLite files, with the SMSC simulator: start here.
    Up(up::UpArgs),
    /// The REST API (accounts, keys, sends, batches, status).
    Submission {
        /// TOML configuration file (see docs/configuration.md).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// The pipeline: opt-out, routing, billing (`mt`), inbound (`mo`) and webhooks (`callbacks`).
    Worker {
        /// TOML configuration file (see docs/configuration.md).
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// The clock: releases scheduled messages, expires stale ones, runs maintenance.
    Scheduler {
        /// TOML configuration file (see docs/configuration.md).
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// SMPP connectors: send what routing queued for them, record receipts and inbound messages.
    Connector {
        /// TOML configuration file (see docs/configuration.md).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Run only these connectors (default: `[connector] run`, else every one configured).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// An SMPP 3.4 SMSC simulator for development, tests and stress runs.
    SmscSim(SimArgs),
    /// The reporting projector: builds the SQL reporting store from the journal, exactly once.
    Projector {
        /// TOML configuration file (see docs/configuration.md).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// Without one: tail the journal until stopped.
        #[command(subcommand)]
        action: Option<ProjectorAction>,
    },
    /// Connect to the configured store, check it can serve Tern, and report its state.
    CheckStore(StoreArgs),
    /// Benchmarks that print their figures.
    #[command(subcommand)]
    Bench(Bench),
    /// The stress run: a deployment under a REST load mix, with faults, then the invariants checked.
    Stress(stress_args::StressArgs),
}

/// Where a role without an API of its own serves `/metrics` and `/healthz`.
#[derive(Debug, Clone, Args)]
struct MetricsArgs {
    /// Serve Prometheus `/metrics` (and `/healthz`) on this address, e.g. 127.0.0.1:9465.
    #[arg(long = "metrics", value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
}

impl MetricsArgs {
    /// Starts the endpoint when asked for; it stops with the process.
    fn serve(&self) -> anyhow::Result<()> {
        if let Some(listen) = self.listen {
            let listener = std::net::TcpListener::bind(listen)
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {listen}: {e}"))?;
            tokio::spawn(tern_reporting::server::serve_metrics(listener)?);
            tracing::info!(%listen, "serving /metrics");
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
enum ProjectorAction {
    /// Drop the reporting store and replay the whole journal into it, with a progress bar.
    Rebuild,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportTarget {
    Sqlite,
    Postgres,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Publish → claim → ack and journal-append throughput, durable commits on.
    Queue {
        #[command(flatten)]
        store: StoreArgs,
        /// Publish/claim/ack batch sizes.
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        batches: Vec<usize>,
        /// Concurrent consumer counts.
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        consumers: Vec<usize>,
        /// Concurrent producer counts.
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        producers: Vec<usize>,
        /// Largest number of messages in one run.
        #[arg(long, default_value_t = 100_000)]
        max_messages: usize,
    },
    /// Messages/s through the `mt` stage (opt-out → routing → billing) with 1 and more workers.
    Pipeline {
        #[command(flatten)]
        store: StoreArgs,
        /// Messages per run.
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// Worker counts to run with.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        workers: Vec<usize>,
        /// Entries claimed per batch.
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
        /// Batches in flight per worker.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Messages/s from a connector's queue through SMPP to the simulator and back as receipts.
    Connector {
        #[command(flatten)]
        store: StoreArgs,
        /// Messages per run (windows under 10 send a tenth).
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// Window sizes to run with.
        #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
        windows: Vec<usize>,
        /// Transceiver binds.
        #[arg(long, default_value_t = 1)]
        binds: usize,
        /// Entries claimed per batch.
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
        /// Batches in flight.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// The REST API under load: single sends and batches through real HTTP.
    Submission {
        #[command(flatten)]
        store: StoreArgs,
        /// Seconds each phase sends.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent clients sending single messages.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Concurrent clients sending batches.
        #[arg(long, default_value_t = 4)]
        batch_clients: usize,
        /// Recipients per batch.
        #[arg(long, default_value_t = 1_000)]
        batch_size: usize,
        /// HTTP worker threads of the server (0: one per core).
        #[arg(long, default_value_t = 0)]
        server_workers: usize,
    },
    /// Journal events projected/s into the reporting store, incrementally and by rebuild.
    Projector {
        /// Where the generated journal is written (and read from).
        #[command(flatten)]
        store: StoreArgs,
        /// The reporting store measured.
        #[arg(long, value_enum, default_value = "sqlite")]
        target: ReportTarget,
        /// PostgreSQL server for `--target postgres`; a scratch database is created there and dropped.
        #[arg(long, env = "TERN_BENCH_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres_url: String,
        /// Outbound messages in the generated journal (about 6 events each).
        #[arg(long, default_value_t = 40_000)]
        messages: usize,
        /// Records per transaction, incremental run (the projector's default).
        #[arg(long, default_value_t = 5_000)]
        batch_size: usize,
        /// Records per transaction, rebuild.
        #[arg(long, default_value_t = 10_000)]
        rebuild_batch_size: usize,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Backend {
    Sqlite,
    Mongodb,
}

#[derive(Debug, Clone, Args)]
struct StoreArgs {
    /// Which backend.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// SQLite database file (default: a fresh file in a temporary directory).
    #[arg(long)]
    path: Option<PathBuf>,
    /// MongoDB URI (journal, and queue unless --queue-uri is given).
    #[arg(long, env = "TERN_MONGODB_URI", default_value = "mongodb://127.0.0.1:27017/")]
    mongodb_uri: String,
    /// Extra MongoDB deployments for the queue (repeatable).
    #[arg(long = "queue-uri")]
    queue_uris: Vec<String>,
    /// MongoDB database.
    #[arg(long, default_value = "tern")]
    database: String,
}

impl StoreArgs {
    fn config(&self, scratch: &std::path::Path) -> StoreConfig {
        match self.backend {
            Backend::Sqlite => StoreConfig::Sqlite(SqliteConfig {
                path: self.path.clone().unwrap_or_else(|| scratch.join("tern-bench.db")),
            }),
            Backend::Mongodb => StoreConfig::Mongodb(MongoConfig {
                queue_uris: self.queue_uris.clone(),
                ..MongoConfig::new(&self.mongodb_uri, &self.database)
            }),
        }
    }
}

/// Tern allocates and frees many small buffers per message (PDUs, JSON,
/// SQL arguments) on many threads; glibc's allocator spent a quarter of the
/// connector benchmark's CPU time on them, mimalloc a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            "warn,tern=info,tern_submission=info,tern_workers=info,tern_handlers=info,tern_smsc_connector=info".into()
        }))
        .init();
    let cli = Cli::parse();
    let scratch = std::env::temp_dir().join(format!("tern-{}", std::process::id()));
    let outcome = run(cli, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    outcome
}

async fn run(cli: Cli, scratch: &std::path::Path) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up::run(args).await?,
        Command::Stress(args) => {
            // Stopped early, the run is dropped: its deployment's processes are killed with it.
            let report = tokio::select! {
                report = tern_stress::harness::run(args.plan()?) => report?,
                () = stop_signal() => anyhow::bail!("stopped before the end; no report"),
            };
            if !report.invariants_held() {
                anyhow::bail!("the stress run broke an invariant (see above and the report)");
            }
        }
        Command::Submission { config } => {
            let settings = settings::Settings::load(config.as_deref())?;
            let store = settings.store.connect().await?;
            let listener = std::net::TcpListener::bind(settings.submission.listen)
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.submission.listen))?;
            if settings.submission.admin_token.is_none() {
                tracing::warn!("no admin token configured (TERN_ADMIN_TOKEN): the admin API is disabled");
            }
            let mut server = tern_submission::Submission::new(store, settings.submission.clone(), listener)?;
            if let Some(url) = settings.reporting.database_url.as_deref().filter(|u| !u.trim().is_empty()) {
                server = server.with_reports(tern_reporting::ReportStore::connect(url).await?);
            }
            tracing::info!(listen = %settings.submission.listen, "submission API listening");
            server.run()?.await?;
        }
        Command::Worker { config, metrics } => {
            let settings = settings::Settings::load(config.as_deref())?;
            metrics.serve()?;
            let store = settings.store.connect().await?;
            let worker = tern_workers::Worker::new(store, settings.pipeline()).await?;
            let (shutdown, stop) = tern_workers::Shutdown::new();
            tokio::spawn(async move {
                stop_signal().await;
                tracing::info!("stopping: draining in-flight work");
                shutdown.trigger();
            });
            tracing::info!(stages = ?settings.worker.stages, "worker running");
            worker.run(stop).await?;
        }
        Command::Scheduler { config, metrics } => {
            let settings = settings::Settings::load(config.as_deref())?;
            metrics.serve()?;
            let store = settings.store.connect().await?;
            let scheduler = tern_workers::scheduler::Scheduler::new(store, settings.scheduler);
            let (shutdown, stop) = tern_workers::Shutdown::new();
            tokio::spawn(async move {
                stop_signal().await;
                shutdown.trigger();
            });
            tracing::info!("scheduler running");
            scheduler.run(stop).await;
        }
        Command::Connector { config, only, metrics } => {
            let settings = settings::Settings::load(config.as_deref())?;
            metrics.serve()?;
            let names = connector_names(&settings, &only)?;
            let store = settings.store.connect().await?;
            let (shutdown, stop) = tern_workers::Shutdown::new();
            let mut running = Vec::new();
            for name in &names {
                let config = &settings.connectors[name];
                running.push(tern_smsc_connector::start(name, config, store.clone(), stop.clone())?);
            }
            tracing::info!(connectors = ?names, "connectors running");
            stop_signal().await;
            tracing::info!("stopping: finishing in-flight messages, then unbinding");
            shutdown.trigger();
            for connector in running {
                let _ = connector.done.await;
            }
        }
        Command::SmscSim(args) => {
            let sim = tern_smsc_connector::sim::Simulator::start(args.config()?).await?;
            println!("SMSC simulator listening on {}", sim.local_addr());
            let reporter = (args.stats_every > 0).then(|| {
                let sim = sim.clone();
                let every = std::time::Duration::from_secs(args.stats_every);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        tracing::info!(stats = ?sim.stats(), "simulator");
                    }
                })
            });
            stop_signal().await;
            if let Some(reporter) = reporter {
                reporter.abort();
            }
            let stats = sim.stats();
            sim.stop().await;
            println!("{}", serde_json::to_string(&stats)?);
        }
        Command::CheckStore(args) => {
            let store = args.config(scratch).connect().await?;
            let head = store.journal().head().await?;
            println!("{} store is usable; journal head at position {head}", store.backend_name());
        }
        Command::Bench(Bench::Queue { store, batches, consumers, producers, max_messages }) => {
            let store = store.config(scratch).connect().await?;
            let plan = QueueBenchPlan {
                batch_sizes: batches.clone(),
                consumer_counts: consumers,
                producer_counts: producers,
                journal_batch_sizes: batches,
                max_messages,
                ..QueueBenchPlan::default()
            };
            queue_bench::run(&store, &plan).await?;
        }
        Command::Bench(Bench::Pipeline { store, messages, workers, batch_size, concurrency }) => {
            let mut plan = tern_stress::pipeline_bench::PipelineBenchPlan { messages, workers, ..Default::default() };
            plan.stage.batch_size = batch_size;
            plan.stage.concurrency = concurrency;
            let backend = format!("{:?}", store.backend).to_lowercase();
            let fresh = fresh_stores(&store, scratch, "pipeline");
            tern_stress::pipeline_bench::run(&backend, fresh, &plan).await?;
        }
        Command::Bench(Bench::Connector { store, messages, windows, binds, batch_size, concurrency }) => {
            let plan =
                tern_stress::connector_bench::ConnectorBenchPlan { messages, windows, binds, batch_size, concurrency };
            let backend = format!("{:?}", store.backend).to_lowercase();
            let fresh = fresh_stores(&store, scratch, "connector");
            tern_stress::connector_bench::run(&backend, fresh, &plan).await?;
        }
        Command::Bench(Bench::Submission { store, seconds, clients, batch_clients, batch_size, server_workers }) => {
            let store = store.config(scratch).connect().await?;
            let plan = SubmissionBenchPlan {
                duration: std::time::Duration::from_secs(seconds),
                single_clients: clients,
                batch_clients,
                batch_size,
                server_workers,
            };
            submission_bench::run(store, &plan).await?;
        }
        Command::Projector { config, action } => {
            let settings = settings::Settings::load(config.as_deref())?;
            let store = settings.store.connect().await?;
            let reporting = &settings.reporting;
            match action {
                Some(ProjectorAction::Rebuild) => {
                    let reports = tern_reporting::ReportStore::connect(reporting.projector_url()).await?;
                    let batch = reporting.batch_size.max(10_000);
                    let projector = tern_reporting::Projector::new(store.journal().clone(), reports, batch);
                    let run = projector.rebuild(true).await?;
                    println!(
                        "rebuilt the {} reporting store: {} events in {:.1} s ({:.0} events/s), checkpoint at {}",
                        projector.store().dialect(),
                        run.events,
                        run.elapsed.as_secs_f64(),
                        run.rate(),
                        run.checkpoint
                    );
                }
                None => {
                    let (shutdown, stop) = tern_workers::Shutdown::new();
                    tokio::spawn(async move {
                        stop_signal().await;
                        shutdown.trigger();
                    });
                    tern_reporting::run_role(store.journal().clone(), reporting, stop).await?;
                }
            }
        }
        Command::Bench(Bench::Projector { store, target, postgres_url, messages, batch_size, rebuild_batch_size }) => {
            let journal = store.config(scratch).connect().await?;
            let plan = tern_stress::projector_bench::ProjectorBenchPlan { messages, batch_size, rebuild_batch_size };
            match target {
                ReportTarget::Sqlite => {
                    let url = format!("sqlite://{}", scratch.join("reports-bench.db").display());
                    tern_stress::projector_bench::run(&journal, &url, &plan).await?;
                }
                ReportTarget::Postgres => {
                    tern_stress::projector_bench::run_on_postgres(&journal, &postgres_url, &plan).await?;
                }
            }
        }
    }
    Ok(())
}

/// A maker of fresh stores, one per benchmark run: a new SQLite file or MongoDB database each call.
fn fresh_stores<'a>(
    store: &'a StoreArgs,
    scratch: &'a std::path::Path,
    bench: &'a str,
) -> impl Fn() -> StoreConfig + 'a {
    let runs = std::sync::atomic::AtomicUsize::new(0);
    move || {
        let n = runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut args = store.clone();
        args.path = Some(
            args.path.clone().unwrap_or_else(|| scratch.join(format!("{bench}.db"))).with_extension(format!("{n}.db")),
        );
        args.database = format!("{}_{bench}_{}_{n}", args.database, std::process::id());
        args.config(scratch)
    }
}

/// The connectors this process runs: `--only`, else `[connector] run`, else all.
fn connector_names(settings: &settings::Settings, only: &[String]) -> anyhow::Result<Vec<String>> {
    let chosen = if only.is_empty() { settings.connector.run.clone() } else { only.to_vec() };
    let names: Vec<String> = if chosen.is_empty() { settings.connectors.keys().cloned().collect() } else { chosen };
    if names.is_empty() {
        anyhow::bail!("no connector is configured: add a [connectors.<name>] section (see docs/configuration.md)");
    }
    if let Some(unknown) = names.iter().find(|n| !settings.connectors.contains_key(*n)) {
        let known: Vec<&String> = settings.connectors.keys().collect();
        anyhow::bail!("connector {unknown:?} is not configured; configured: {known:?}");
    }
    Ok(names)
}

/// SIGTERM or Ctrl-C.
pub(crate) async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
