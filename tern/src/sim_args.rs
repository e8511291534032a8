//! `tern smsc-sim`'s flags: a file of settings, then flags over it.

use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;

#[derive(Debug, Args)]
pub struct SimArgs {
    /// TOML file with the simulator's settings (docs/operations.md lists them).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Where to listen (overrides the file).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Receipt delay range in milliseconds, `MIN,MAX`.
    #[arg(long, value_parser = comma_separated::<u64, 2>)]
    receipt_delay_ms: Option<[u64; 2]>,
    /// Receipt outcome weights, `DELIVERED,UNDELIVERABLE,EXPIRED`.
    #[arg(long, value_parser = comma_separated::<f64, 3>)]
    outcomes: Option<[f64; 3]>,
    /// Share of delivered messages answered by the handset with an MO.
    #[arg(long)]
    mo_share: Option<f64>,
    /// Share of submit_sm answered ESME_RTHROTTLED.
    #[arg(long)]
    throttle_share: Option<f64>,
    /// Share of submit_sm refused for good (ESME_RINVDSTADR).
    #[arg(long)]
    reject_share: Option<f64>,
    /// Share of submit_sm whose response is never sent.
    #[arg(long)]
    drop_response_share: Option<f64>,
    /// Drop the link on every N-th submit_sm.
    #[arg(long)]
    disconnect_every: Option<u64>,
    /// Seconds between two lines of statistics in the log (0: none).
    #[arg(long, default_value_t = 10)]
    pub stats_every: u64,
}

impl SimArgs {
    pub fn config(&self) -> anyhow::Result<tern_smsc_connector::sim::SimConfig> {
        let mut config: tern_smsc_connector::sim::SimConfig = match &self.config {
            Some(file) => config::Config::builder()
                .add_source(config::File::from(file.as_path()).format(config::FileFormat::Toml).required(true))
                .build()
                .and_then(config::Config::try_deserialize)
                .map_err(|e| anyhow::anyhow!("the simulator configuration {} is invalid: {e}", file.display()))?,
            None => tern_smsc_connector::sim::SimConfig::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some([min, max]) = self.receipt_delay_ms {
            config.receipt_delay_ms = (min, max);
        }
        if let Some([delivered, undeliverable, expired]) = self.outcomes {
            config.outcomes = tern_smsc_connector::sim::Outcomes { delivered, undeliverable, expired };
        }
        let shares = [
            (self.mo_share, &mut config.mo_share),
            (self.throttle_share, &mut config.throttle_share),
            (self.reject_share, &mut config.reject_share),
            (self.drop_response_share, &mut config.drop_response_share),
        ];
        for (given, field) in shares {
            if let Some(share) = given {
                if !(0.0..=1.0).contains(&share) {
                    anyhow::bail!("shares are between 0 and 1; got {share}");
                }
                *field = share;
            }
        }
        if self.disconnect_every.is_some() {
            config.disconnect_every = self.disconnect_every;
        }
        Ok(config)
    }
}

/// Parses `A,B[,C…]` into exactly `N` values, so `--receipt-delay-ms 0,20`
/// is one argument, as the help shows it.
fn comma_separated<T: FromStr, const N: usize>(text: &str) -> Result<[T; N], String>
where
    T::Err: std::fmt::Display,
{
    let values: Vec<T> = text
        .split(',')
        .map(|part| part.trim().parse::<T>().map_err(|e| format!("{part:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let count = values.len();
    values.try_into().map_err(|_| format!("expected {N} comma-separated values, got {count}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::SimArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn parse(args: &[&str]) -> Result<SimArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("smsc-sim").chain(args.iter().copied())).map(|cli| cli.sim)
    }

    #[test]
    fn the_documented_flags_set_the_configuration() {
        let args = parse(&[
            "--listen",
            "0.0.0.0:2775",
            "--receipt-delay-ms",
            "100,2000",
            "--outcomes",
            "0.9,0.07,0.03",
            "--mo-share",
            "0.05",
        ])
        .unwrap();
        let config = args.config().unwrap();
        assert_eq!(config.listen.port(), 2775);
        assert_eq!(config.receipt_delay_ms, (100, 2000));
        assert_eq!(config.outcomes.undeliverable, 0.07);
        assert_eq!(config.mo_share, 0.05);
    }

    #[test]
    fn a_wrong_count_or_a_bad_number_is_refused_by_name() {
        let error = parse(&["--receipt-delay-ms", "100"]).err().unwrap().to_string();
        assert!(error.contains("expected 2 comma-separated values, got 1"), "{error}");
        let error = parse(&["--outcomes", "1,0,x"]).err().unwrap().to_string();
        assert!(error.contains("\"x\""), "{error}");
        let error = parse(&["--mo-share", "2"]).unwrap().config().err().unwrap().to_string();
        assert!(error.contains("between 0 and 1"), "{error}");
    }

    #[test]
    fn the_sim_toml_in_the_operations_guide_loads() {
        let guide = include_str!("../../docs/operations.md");
        let start = guide.find("# sim.toml").expect("the guide shows a sim.toml");
        let toml = &guide[start..guide[start..].find("```").map(|end| start + end).unwrap()];
        let file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
        std::fs::write(file.path(), toml).unwrap();
        let args = parse(&["--config", file.path().to_str().unwrap()]).unwrap();
        let config = args.config().unwrap();
        assert_eq!(config.receipt_delay_ms, (10, 50));
        assert_eq!(config.outcomes.expired, 0.03);
    }
}
