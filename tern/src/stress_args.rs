//! `tern stress`: the flags of the nightly stress run (see docs/operations.md).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tern_smsc_connector::sim::Outcomes;
use tern_stress::harness::{Mix, Mode, StoreChoice, StressPlan};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// `tern up`: every role in one process (SQLite).
    Up,
    /// Each role its own process: submission, worker, scheduler, connector, projector.
    Roles,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    Sqlite,
    Mongodb,
}

#[derive(Debug, Clone, Args)]
pub struct StressArgs {
    /// One process (`up`) or one process per role (`roles`).
    #[arg(long, value_enum, default_value = "roles")]
    mode: ModeArg,
    /// The store the roles share.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BackendArg,
    /// MongoDB URI (with `--backend mongodb` and no `--standin`).
    #[arg(long, env = "TERN_MONGODB_URI", default_value = "mongodb://127.0.0.1:27017/")]
    mongodb_uri: String,
    /// A MongoDB stand-in binary (secantusd-rs) the run starts itself on a
    /// free port, so that chaos can restart the store process.
    #[arg(long, env = "TERN_STRESS_STANDIN")]
    standin: Option<PathBuf>,
    /// PostgreSQL server for the reporting store (a scratch database
    /// `tern_stress_<run>` is created there); SQLite when absent.
    #[arg(long)]
    postgres: Option<String>,
    /// Sending accounts.
    #[arg(long, default_value_t = 4)]
    accounts: usize,
    /// Messages per second across the accounts; 0 sends flat out.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// How long the load runs: `60s`, `5m`, `4h`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Longest wait after the load for every message to end and be projected.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    drain: Duration,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Request mix by weight.
    #[arg(long, default_value = "single=70,unicode=10,long=10,scheduled=5,batch=5", value_parser = Mix::parse)]
    mix: Mix,
    /// Recipients per batch.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Share of messages sent with a status callback URL (the harness's receiver).
    #[arg(long, default_value_t = 0.05)]
    callback_share: f64,
    /// Share of delivered messages the simulated handset answers (MO).
    #[arg(long, default_value_t = 0.02)]
    mo_share: f64,
    /// Receipt delay range in ms, `MIN..MAX`.
    #[arg(long, default_value = "100..1000", value_parser = parse_range)]
    receipt_delay_ms: (u64, u64),
    /// Receipt outcomes by weight: `delivered=90,undeliverable=7,expired=3`.
    #[arg(long, default_value = "delivered=90,undeliverable=7,expired=3", value_parser = parse_outcomes)]
    outcomes: Outcomes,
    /// Inject faults: SIGKILL and restart a role, drop the SMPP links, restart the store process.
    #[arg(long)]
    chaos: bool,
    /// How often a fault is injected with `--chaos`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    chaos_every: Duration,
    /// Where the run directory, `report.json` and `report.html` go.
    #[arg(long, default_value = "./stress-report")]
    out: PathBuf,
    /// A `report.json` of an earlier run: figures more than 10% worse are flagged.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Lease of claimed work in ms: how soon a killed process's work is taken over.
    #[arg(long, default_value_t = 5_000)]
    lease_ms: u64,
}

impl StressArgs {
    pub fn plan(self) -> anyhow::Result<StressPlan> {
        let store = match (self.backend, self.standin) {
            (BackendArg::Sqlite, _) => StoreChoice::Sqlite,
            (BackendArg::Mongodb, Some(standin)) => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
                StoreChoice::Mongodb {
                    uri: format!("mongodb://127.0.0.1:{port}/"),
                    database: "tern".into(),
                    standin: Some(standin),
                }
            }
            (BackendArg::Mongodb, None) => StoreChoice::Mongodb {
                uri: self.mongodb_uri,
                database: format!("tern_stress_{}", std::process::id()),
                standin: None,
            },
        };
        Ok(StressPlan {
            binary: std::env::current_exe()?,
            out: self.out,
            mode: match self.mode {
                ModeArg::Up => Mode::Up,
                ModeArg::Roles => Mode::Roles,
            },
            store,
            postgres: self.postgres,
            accounts: self.accounts,
            rate: (self.rate > 0.0).then_some(self.rate),
            duration: self.duration,
            drain: self.drain,
            clients: self.clients,
            mix: self.mix,
            batch_size: self.batch_size,
            callback_share: self.callback_share,
            mo_share: self.mo_share,
            receipt_delay_ms: self.receipt_delay_ms,
            outcomes: self.outcomes,
            chaos_every: self.chaos.then_some(self.chaos_every),
            baseline: self.baseline,
            lease_ms: self.lease_ms,
        })
    }
}

/// `90s`, `5m`, `4h`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 60s, 5m or 4h"))?;
    let seconds = match unit {
        "" | "s" => number,
        "m" => number * 60,
        "h" => number * 3_600,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (s, m or h)")),
    };
    Ok(Duration::from_secs(seconds))
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (min, max) = text.split_once("..").ok_or_else(|| format!("`{text}` is not MIN..MAX"))?;
    let min: u64 = min.trim().parse().map_err(|_| format!("`{min}` is not a number of ms"))?;
    let max: u64 = max.trim().parse().map_err(|_| format!("`{max}` is not a number of ms"))?;
    if min > max {
        return Err(format!("{min} is more than {max}"));
    }
    Ok((min, max))
}

fn parse_outcomes(text: &str) -> Result<Outcomes, String> {
    let mut outcomes = Outcomes { delivered: 0.0, undeliverable: 0.0, expired: 0.0 };
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').ok_or_else(|| format!("`{part}` is not outcome=weight"))?;
        let weight: f64 = weight.trim().parse().map_err(|_| format!("`{weight}` is not a number"))?;
        match name.trim() {
            "delivered" => outcomes.delivered = weight,
            "undeliverable" => outcomes.undeliverable = weight,
            "expired" => outcomes.expired = weight,
            other => return Err(format!("unknown outcome `{other}` (delivered, undeliverable, expired)")),
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_ranges_and_outcomes_parse() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("4h").unwrap(), Duration::from_secs(14_400));
        assert!(parse_duration("4d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_range("100..1000").unwrap(), (100, 1000));
        assert!(parse_range("9..1").is_err());
        let outcomes = parse_outcomes("delivered=1").unwrap();
        assert_eq!((outcomes.delivered, outcomes.undeliverable), (1.0, 0.0));
        assert!(parse_outcomes("lost=1").is_err());
    }
}
