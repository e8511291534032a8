//! `tern up`: every role in one process, on SQLite files in one directory,
//! with the SMSC simulator as its SMSC. What a newcomer runs first; the
//! roles are the same code `tern submission`, `tern worker`... run alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tern_handlers::routing::Action;
use tern_queue::{SqliteConfig, StoreConfig};
use tern_smsc_connector::ConnectorConfig;
use tern_smsc_connector::sim::{Outcomes, SimConfig, SimHandle, Simulator};

use crate::demo::{self, Demo};
use crate::settings::Settings;

/// The connector `tern up` adds when the configuration names none.
const SIM_CONNECTOR: &str = "sim";

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Where the REST API listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Where the built-in SMSC simulator listens (SMPP).
    #[arg(long, default_value = "127.0.0.1:2775")]
    smpp_sim: SocketAddr,
    /// Directory of the SQLite store, the reporting store and the demo credentials.
    #[arg(long, default_value = "./tern-data")]
    data_dir: PathBuf,
    /// TOML configuration file (see docs/configuration.md); the store and the
    /// reporting database are always the data directory's.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// Loads the configuration and points it at the data directory and the simulator.
fn settings(args: &UpArgs, sim: SocketAddr, admin_token: String) -> anyhow::Result<Settings> {
    let mut settings = Settings::load(args.config.as_deref())?;
    settings.store = StoreConfig::Sqlite(SqliteConfig { path: args.data_dir.join("tern.db") });
    settings.reporting.database_url = Some(format!("sqlite://{}", args.data_dir.join("reports.db").display()));
    // The projector's own health port is not needed here (the API has one);
    // a free port keeps two `tern up`s on one machine apart.
    settings.reporting.listen = SocketAddr::new(settings.reporting.listen.ip(), 0);
    settings.submission.listen = args.http;
    settings.submission.admin_token = Some(admin_token);
    if settings.connectors.is_empty() {
        let connector = ConnectorConfig { host: sim.ip().to_string(), port: sim.port(), ..ConnectorConfig::default() };
        settings.connectors.insert(SIM_CONNECTOR.into(), connector);
    }
    if settings.routing.default.is_none() && settings.routing.routes.is_empty() {
        let first = settings.connectors.keys().next().cloned().unwrap_or_else(|| SIM_CONNECTOR.into());
        settings.routing.default = Some(Action::Connector(first));
    }
    Ok(settings)
}

/// The simulator as a friendly SMSC: every message delivered, receipts within a second.
fn sim_config(listen: SocketAddr) -> SimConfig {
    SimConfig { listen, receipt_delay_ms: (200, 1_000), outcomes: Outcomes::all_delivered(), ..SimConfig::default() }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data directory {}", args.data_dir.display()))?;
    let admin_token = demo::admin_token(&args.data_dir)?;
    let sim = Simulator::start(sim_config(args.smpp_sim))
        .await
        .with_context(|| format!("cannot start the SMSC simulator on {}", args.smpp_sim))?;
    let settings = settings(&args, sim.local_addr(), admin_token.clone())?;
    let store = settings.store.connect().await?;
    // The pipeline stops first, the links and the projector last (see below).
    let (pipeline_shutdown, pipeline_stop) = tern_workers::Shutdown::new();
    let (links_shutdown, links_stop) = tern_workers::Shutdown::new();

    let listener = std::net::TcpListener::bind(args.http).with_context(|| format!("cannot listen on {}", args.http))?;
    let api_url = format!("http://{}", listener.local_addr()?);
    let reports = tern_reporting::ReportStore::connect(settings.reporting.projector_url()).await?;
    let server = tern_submission::Submission::new(store.clone(), settings.submission.clone(), listener)?
        .with_reports(reports.clone())
        .run()?;
    let http = server.handle();
    let api = tokio::spawn(server);

    let worker = tern_workers::Worker::new(store.clone(), settings.pipeline()).await?;
    let worker = tokio::spawn(worker.run(pipeline_stop.clone()));
    let scheduler = tern_workers::scheduler::Scheduler::new(store.clone(), settings.scheduler);
    let scheduler = tokio::spawn(scheduler.run(pipeline_stop));
    let mut connectors = Vec::new();
    for (name, config) in &settings.connectors {
        connectors.push(tern_smsc_connector::start(name, config, store.clone(), links_stop.clone())?);
    }
    let (journal, reporting, projector_stop) = (store.journal().clone(), settings.reporting.clone(), links_stop);
    let projector = tokio::spawn(async move {
        let outcome = tern_reporting::run_role_on(reports, journal, &reporting, projector_stop).await;
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "the projector stopped");
        }
        outcome
    });

    let demo = demo::ensure(&api_url, &admin_token, &args.data_dir).await?;
    print_welcome(&api_url, &admin_token, &demo, &args.data_dir, sim.local_addr());

    crate::stop_signal().await;
    tracing::info!("stopping: no new requests; finishing in-flight messages");
    http.stop(true).await;
    let _ = api.await;
    pipeline_shutdown.trigger();
    if let Ok(Err(e)) = worker.await {
        tracing::error!(error = %e, "the worker stopped with an error");
    }
    let _ = scheduler.await;
    // A real SMSC keeps the receipts it owes until the next bind; the
    // simulator keeps them in memory only. So the links stay up until it
    // has delivered them (bounded: under load the queue may not empty).
    settle_receipts(&sim).await;
    links_shutdown.trigger();
    for connector in connectors {
        let _ = connector.done.await;
    }
    let _ = projector.await;
    sim.stop().await;
    println!("tern stopped; everything is in {}", args.data_dir.display());
    Ok(())
}

/// Longest wait at shutdown for the simulator's owed receipts.
const RECEIPTS_GRACE: Duration = Duration::from_secs(10);

/// Waits until the simulator owes no receipt and has taken nothing new for a
/// moment (the connectors' queues are empty), or [`RECEIPTS_GRACE`] passed.
async fn settle_receipts(sim: &SimHandle) {
    let deadline = Instant::now() + RECEIPTS_GRACE;
    let mut last = sim.stats().segments_accepted;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = sim.stats();
        if stats.segments_accepted == last && stats.receipts_acked >= stats.segments_accepted {
            return;
        }
        last = stats.segments_accepted;
    }
    let stats = sim.stats();
    tracing::warn!(
        owed = stats.segments_accepted.saturating_sub(stats.receipts_acked),
        "stopping with receipts the simulator still owes; their messages stay `submitted`"
    );
}

fn print_welcome(api_url: &str, admin_token: &str, demo: &Demo, data_dir: &Path, sim: SocketAddr) {
    let key = &demo.api_key;
    println!(
        "\nTern is up.\n\
         \n  API            {api_url}   (OpenAPI: {api_url}/openapi.json)\
         \n  admin token    {admin_token}\
         \n  demo account   {account}   (API key below; balance topped up, price {price} per segment)\
         \n  demo API key   {key}\
         \n  SMSC           built-in simulator on {sim} (every message delivered)\
         \n  data           {data}\n\
         \nSend a message (the shell keeps its id in $ID):\n\
         \n  ID=$(curl -s -X POST {api_url}/v1/messages -H 'Authorization: Bearer {key}' \\\
         \n       -H 'Content-Type: application/json' -d '{{\"to\": \"+447400123456\", \"from\": \"Tern\", \"body\": \"Hello from Tern\"}}' \\\
         \n       | grep -o '\"id\":\"[^\"]*\"' | cut -d'\"' -f4); echo $ID\n\
         \nRead it back, with its whole history (delivered within a few seconds):\n\
         \n  curl -s {api_url}/v1/messages/$ID -H 'Authorization: Bearer {key}'\n\
         \nThe SQL reporting store is {reports}. Ctrl-C stops Tern; nothing is lost.\n",
        account = demo.account_id,
        price = demo::PRICE_PER_SEGMENT,
        data = data_dir.display(),
        reports = data_dir.join("reports.db").display(),
    );
}
