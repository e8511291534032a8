//! The `[reporting]` section of Tern's configuration.

use std::net::SocketAddr;

use serde::Deserialize;

/// Where the embedded store lives when no URL is configured (projector only).
pub const EMBEDDED_URL: &str = "sqlite://data/reports.db";

/// Settings of the projector role and of the reports the submission role serves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportingConfig {
    /// `sqlite://path` or `postgres://user@host/db`. The projector uses
    /// [`EMBEDDED_URL`] when unset; the submission role serves
    /// `/v1/reports/summary` only when it is set.
    pub database_url: Option<String>,
    /// Journal records applied per SQL transaction.
    pub batch_size: usize,
    /// How often a caught-up projector looks for new events, in milliseconds.
    pub poll_ms: u64,
    /// Address of the projector's `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
    /// `/readyz` answers 503 while the projector is further behind than this, in seconds.
    pub ready_max_lag_secs: u64,
}

impl Default for ReportingConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            batch_size: 5_000,
            poll_ms: 200,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            ready_max_lag_secs: 300,
        }
    }
}

impl ReportingConfig {
    /// The database the projector writes.
    pub fn projector_url(&self) -> &str {
        self.database_url.as_deref().filter(|u| !u.trim().is_empty()).unwrap_or(EMBEDDED_URL)
    }
}
