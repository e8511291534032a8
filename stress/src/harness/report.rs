//! What a stress run measured and found, as written to `report.json`, and
//! its comparison with a baseline report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// When the load started (RFC 3339).
    pub started_at: String,
    /// How the deployment ran: `up` (one process) or `roles` (one process per role).
    pub mode: String,
    /// The store: `sqlite` or `mongodb`.
    pub backend: String,
    /// The reporting store's dialect.
    pub reports: String,
    /// Seconds of load.
    pub duration_secs: f64,
    /// Seconds from the end of the load until everything was terminal and projected.
    pub drain_secs: f64,
    /// Accounts sending.
    pub accounts: usize,
    /// Messages/s asked for; `None` means flat out.
    pub target_rate: Option<f64>,
    /// Whether faults were injected.
    pub chaos: bool,
    /// Rates over the load period.
    pub throughput: Throughput,
    /// Totals.
    pub counts: Counts,
    /// Latency percentiles, in milliseconds.
    pub latency_ms: Latencies,
    /// Failed requests and other errors, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Memory and CPU of each process.
    pub roles: Vec<RoleUsage>,
    /// Faults injected, in order.
    pub chaos_events: Vec<ChaosEvent>,
    /// Per-second figures, for the charts.
    pub timeline: Vec<Second>,
    /// The brief's invariants, each checked.
    pub invariants: Vec<Invariant>,
}

/// Messages per second over the load period (accepted during it; submitted
/// and receipts recorded during it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Messages accepted (202) per second.
    pub accepted_per_sec: f64,
    /// Messages first submitted to the SMSC per second.
    pub submitted_per_sec: f64,
    /// Messages whose (last) receipt was recorded per second.
    pub receipts_per_sec: f64,
    /// Messages accepted during the load whose receipt was recorded and
    /// projected, per second of load plus drain: the end-to-end figure.
    pub end_to_end_per_sec: f64,
}

/// Totals of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// HTTP requests sent (single sends and batches).
    pub requests: u64,
    /// Messages the API accepted (202), as counted by the clients.
    pub accepted: u64,
    /// Messages accepted according to the journal (at least `accepted`:
    /// a request cut by a crash may have been accepted unanswered).
    pub journal_accepted: u64,
    /// Messages by final status.
    pub by_status: BTreeMap<String, u64>,
    /// `submit_sm` the simulator accepted.
    pub segments_submitted: u64,
    /// Repeats the simulator saw (the same message accepted twice).
    pub duplicates: u64,
    /// Unknown outcomes the connectors recorded (each may be a duplicate).
    pub unknown_outcomes: u64,
    /// Status callbacks the receiver took (distinct event ids).
    pub callbacks_received: u64,
    /// Callbacks recorded as given up.
    pub callbacks_given_up: u64,
    /// Inbound messages (MO replies) recorded.
    pub inbound: u64,
    /// Journal events at the end.
    pub journal_events: u64,
}

/// Latency percentiles of one measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of samples in milliseconds (sorts them).
    pub fn of(samples: &mut [f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self { count: samples.len() as u64, p50: at(0.50), p95: at(0.95), p99: at(0.99), max: at(1.0) }
    }
}

/// The three latencies the brief asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// Request sent → 202 received (client side; a batch counts once).
    pub accept: Percentiles,
    /// Accepted → first segment submitted to the SMSC (journal times).
    pub accept_to_submit: Percentiles,
    /// Accepted → final receipt recorded (journal times).
    pub accept_to_receipt: Percentiles,
}

/// One process of the deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleUsage {
    /// `up`, `submission`, `worker`, `scheduler`, `connector`, `projector`, `store`.
    pub name: String,
    /// Times it was killed and started again.
    pub restarts: u32,
    /// Largest resident set seen, in MB.
    pub peak_rss_mb: f64,
    /// Mean resident set while sampled, in MB.
    pub mean_rss_mb: f64,
    /// CPU time used (user + system), in seconds, over all its lives.
    pub cpu_secs: f64,
    /// CPU time over wall time: 1.0 is one core busy all along.
    pub cpu_cores: f64,
}

/// A fault injected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosEvent {
    /// Seconds after the load started.
    pub at_secs: f64,
    /// What was done, e.g. `SIGKILL connector` or `dropped SMPP links`.
    pub action: String,
}

/// One second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds after the load started.
    pub t: u32,
    /// Messages accepted in this second.
    pub accepted: u64,
    /// Messages first submitted in this second.
    pub submitted: u64,
    /// Final receipts recorded in this second.
    pub receipts: u64,
    /// p99 of the accept latency of requests answered in this second, ms.
    pub accept_p99_ms: f64,
    /// p50 of accept → receipt of messages whose receipt came in this second, ms.
    pub receipt_p50_ms: f64,
}

/// One invariant of the brief.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invariant {
    /// What must hold.
    pub name: String,
    /// Whether it held.
    pub held: bool,
    /// The figures behind the verdict, and the first offenders if any.
    pub detail: String,
}

impl Report {
    /// Whether every invariant held.
    pub fn invariants_held(&self) -> bool {
        self.invariants.iter().all(|i| i.held)
    }

    /// The figures compared with a baseline: name, value, and whether
    /// higher is better.
    pub fn figures(&self) -> Vec<(String, f64, bool)> {
        let mut figures = vec![
            ("accepted/s".to_owned(), self.throughput.accepted_per_sec, true),
            ("submitted/s".to_owned(), self.throughput.submitted_per_sec, true),
            ("receipts/s".to_owned(), self.throughput.receipts_per_sec, true),
            ("end-to-end/s".to_owned(), self.throughput.end_to_end_per_sec, true),
        ];
        for (name, p) in [
            ("accept", &self.latency_ms.accept),
            ("accept→submit", &self.latency_ms.accept_to_submit),
            ("accept→receipt", &self.latency_ms.accept_to_receipt),
        ] {
            figures.push((format!("{name} p50 ms"), p.p50, false));
            figures.push((format!("{name} p95 ms"), p.p95, false));
            figures.push((format!("{name} p99 ms"), p.p99, false));
        }
        for role in &self.roles {
            figures.push((format!("{} peak RSS MB", role.name), role.peak_rss_mb, false));
            figures.push((format!("{} CPU cores", role.name), role.cpu_cores, false));
        }
        figures
    }

    /// Every figure this report shares with `baseline`, and whether it is
    /// more than `tolerance` (0.10 for 10%) worse.
    pub fn compare(&self, baseline: &Report, tolerance: f64) -> Vec<Comparison> {
        let before: BTreeMap<String, f64> = baseline.figures().into_iter().map(|(n, v, _)| (n, v)).collect();
        self.figures()
            .into_iter()
            .filter_map(|(name, now, higher_is_better)| {
                let then = *before.get(&name)?;
                let change = if then == 0.0 { 0.0 } else { (now - then) / then.abs() };
                let worse = if higher_is_better { change < -tolerance } else { change > tolerance };
                Some(Comparison { name, baseline: then, now, change, worse })
            })
            .collect()
    }
}

/// One figure against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The figure.
    pub name: String,
    /// Its value in the baseline.
    pub baseline: f64,
    /// Its value now.
    pub now: f64,
    /// Relative change, (now − baseline) / baseline.
    pub change: f64,
    /// More than the tolerance worse.
    pub worse: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = Percentiles::of(&mut samples);
        assert_eq!((p.count, p.p50, p.p95, p.p99, p.max), (100, 51.0, 95.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }

    #[test]
    fn a_figure_more_than_ten_percent_worse_is_flagged_either_way() {
        let mut baseline = Report::default();
        baseline.throughput.accepted_per_sec = 1000.0;
        baseline.throughput.receipts_per_sec = 1000.0;
        baseline.latency_ms.accept.p99 = 50.0;
        baseline.latency_ms.accept.p50 = 10.0;
        let mut now = baseline.clone();
        now.throughput.accepted_per_sec = 890.0; // 11% slower: worse
        now.throughput.receipts_per_sec = 950.0; // 5% slower: within tolerance
        now.latency_ms.accept.p99 = 56.0; // 12% longer: worse
        now.latency_ms.accept.p50 = 5.0; // shorter: better
        let compared = now.compare(&baseline, 0.10);
        let worse: Vec<&str> = compared.iter().filter(|c| c.worse).map(|c| c.name.as_str()).collect();
        assert_eq!(worse, ["accepted/s", "accept p99 ms"]);
        let json = serde_json::to_string(&now).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), now);
    }
}
