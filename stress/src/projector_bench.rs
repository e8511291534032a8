//! `tern bench projector`: journal events projected per second into the
//! reporting store, incrementally (the running projector's path, from an
//! empty store to the head) and by `rebuild` (drop the store, replay).
//!
//! The journal is generated first (not timed): `tern_reporting::sample`,
//! every lifecycle path over several days with out-of-order arrivals.

use std::time::Duration;

use anyhow::Context;
use tern_queue::Store;
use tern_reporting::sample::{self, SampleOptions};
use tern_reporting::{Projector, ReportStore, Run};

/// What to measure.
#[derive(Debug, Clone)]
pub struct ProjectorBenchPlan {
    /// Outbound messages in the generated journal (about 6 events each).
    pub messages: usize,
    /// Records per transaction for the incremental run.
    pub batch_size: usize,
    /// Records per transaction for the rebuild.
    pub rebuild_batch_size: usize,
}

impl Default for ProjectorBenchPlan {
    fn default() -> Self {
        Self { messages: 40_000, batch_size: 5_000, rebuild_batch_size: 10_000 }
    }
}

/// The figures of one bench.
#[derive(Debug, Clone)]
pub struct ProjectorBench {
    /// From an empty store to the head, `batch_size` at a time.
    pub incremental: Run,
    /// Drop and replay, `rebuild_batch_size` at a time.
    pub rebuild: Run,
}

/// Fills `journal` with the sample journal, then projects it into the
/// store at `reports_url` (which it drops and recreates) both ways.
pub async fn run(journal: &Store, reports_url: &str, plan: &ProjectorBenchPlan) -> anyhow::Result<ProjectorBench> {
    let events =
        sample::journal(&SampleOptions { messages: plan.messages, accounts: 50, days: 7, ..Default::default() });
    let started = std::time::Instant::now();
    for chunk in events.chunks(5_000) {
        journal.journal().append(chunk).await.context("filling the journal")?;
    }
    println!(
        "journal ({}): {} events over {} messages, written in {:.1} s",
        journal.backend_name(),
        events.len(),
        plan.messages,
        started.elapsed().as_secs_f64()
    );
    let reports = ReportStore::connect(reports_url).await?;
    reports.reset().await?;
    let incremental = Projector::new(journal.journal().clone(), reports.clone(), plan.batch_size).catch_up().await?;
    print_run("incremental", reports.dialect(), plan.batch_size, &incremental);
    let rebuild =
        Projector::new(journal.journal().clone(), reports.clone(), plan.rebuild_batch_size).rebuild(false).await?;
    print_run("rebuild", reports.dialect(), plan.rebuild_batch_size, &rebuild);
    reports.close().await;
    Ok(ProjectorBench { incremental, rebuild })
}

/// Creates a scratch database on the PostgreSQL server of `admin_url` (any
/// database the user may `CREATE DATABASE` from), runs the bench into it,
/// and drops it again.
pub async fn run_on_postgres(
    journal: &Store,
    admin_url: &str,
    plan: &ProjectorBenchPlan,
) -> anyhow::Result<ProjectorBench> {
    let name = format!("tern_bench_{}", std::process::id());
    let admin = sqlx::PgPool::connect(admin_url).await.with_context(|| format!("cannot connect to {admin_url}"))?;
    let url = create_database(&admin, admin_url, &name).await?;
    let outcome = run(journal, &url, plan).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await?;
    admin.close().await;
    outcome
}

/// Creates database `name` on the server `admin` is connected to (through
/// `admin_url`) and returns its URL.
pub async fn create_database(admin: &sqlx::PgPool, admin_url: &str, name: &str) -> anyhow::Result<String> {
    let (base, _) = admin_url.rsplit_once('/').context("the PostgreSQL URL must end with /<database>")?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin).await?;
    Ok(format!("{base}/{name}"))
}

fn print_run(what: &str, dialect: &str, batch: usize, run: &Run) {
    println!(
        "{what:<12} {dialect:<9} batch {batch:>6}: {:>8} events in {:>6.2} s = {:>8.0} events/s",
        run.events,
        run.elapsed.as_secs_f64().max(Duration::from_millis(1).as_secs_f64()),
        run.rate()
    );
}
