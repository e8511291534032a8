//! Tern's reporting: the projector that builds the SQL reporting store
//! (PostgreSQL, or SQLite embedded) from the event journal, exactly once,
//! and the queries that read it.
//!
//! * [`ReportStore`]: the database, its schema (sqlx migrations per
//!   dialect) and the one transaction that applies a batch of journal
//!   records together with the checkpoint.
//! * [`Projector`]: tails the journal from that checkpoint, gap-free;
//!   `rebuild` drops the store and replays everything.
//! * [`fold::FoldState`]: the status fold kept per message so a batch never
//!   re-reads a message's history unless its events arrived out of order.
//!
//! `docs/reporting.md` documents the tables; `docs/architecture.md`
//! ("Reporting") the design.

#![warn(missing_docs)]

pub mod config;
mod error;
pub mod fold;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod projector;
pub mod sample;
pub mod server;
mod store;
pub mod summary;
#[cfg(feature = "test-suite")]
pub mod test_suite;

use std::time::Duration;

pub use config::ReportingConfig;
pub use error::ReportingError;
pub use projector::{Lag, Progress, Projector, Run};
pub use store::{BatchOutcome, ReportStore};
pub use summary::{GroupBy, SummaryRow};
use tern_queue::Journal;
use tokio::sync::watch;

/// Runs the projector role until `shutdown`: the journal tailer and the
/// HTTP endpoint of [`server`].
pub async fn run_role(
    journal: Journal,
    config: &ReportingConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let store = ReportStore::connect(config.projector_url()).await?;
    run_role_on(store, journal, config, shutdown).await
}

/// [`run_role`] on a store already connected (and migrated), which it
/// closes when it stops: `tern up` shares the API's.
pub async fn run_role_on(
    store: ReportStore,
    journal: Journal,
    config: &ReportingConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let projector = Projector::new(journal, store.clone(), config.batch_size);
    let server = server::serve(listener, store.clone(), projector.progress(), config.ready_max_lag_secs)?;
    let handle = server.handle();
    let http = tokio::spawn(server);
    tracing::info!(listen = %config.listen, store = store.dialect(), "projector running");
    projector.run(shutdown, Duration::from_millis(config.poll_ms)).await;
    handle.stop(true).await;
    let _ = http.await;
    store.close().await;
    Ok(())
}
