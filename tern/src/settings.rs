//! Tern's configuration: defaults, then a TOML file, then `TERN__SECTION__KEY`
//! environment variables (`TERN_ADMIN_TOKEN` for the admin token), read
//! through the `config` crate. `docs/configuration.md` lists every key.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use tern_handlers::optout::OptOutConfig;
use tern_queue::StoreConfig;
use tern_reporting::ReportingConfig;
use tern_smsc_connector::{ConnectorRole, Connectors};
use tern_submission::SubmissionConfig;
use tern_workers::config::{PipelineSettings, RepliesConfig, RoutingConfig};
use tern_workers::{CallbackConfig, SchedulerConfig, WorkerConfig};

/// Every section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[store]`: the queue/journal/accounts backend.
    pub store: StoreConfig,
    /// `[submission]`: the REST API.
    pub submission: SubmissionConfig,
    /// `[worker]`: stages, handler chains, concurrency.
    pub worker: WorkerConfig,
    /// `[routing]`: the configured routing table.
    pub routing: RoutingConfig,
    /// `[optout]`: STOP/START keywords by language.
    pub optout: OptOutConfig,
    /// `[replies]`: reply matching.
    pub replies: RepliesConfig,
    /// `[callbacks]`: webhook delivery.
    pub callbacks: CallbackConfig,
    /// `[scheduler]`: the clock.
    pub scheduler: SchedulerConfig,
    /// `[connector]`: which connectors a `tern connector` process runs.
    pub connector: ConnectorRole,
    /// `[connectors.<name>]`: the SMSC links.
    pub connectors: Connectors,
    /// `[reporting]`: the projector and the reporting database.
    pub reporting: ReportingConfig,
}

impl Settings {
    /// Loads the configuration; `file` is optional.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).format(config::FileFormat::Toml).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("TERN").prefix_separator("__").separator("__").try_parsing(true),
        );
        let built = builder.build().context("cannot read the configuration")?;
        let mut settings: Self = built.try_deserialize().context("the configuration is invalid")?;
        if let Some(token) = std::env::var("TERN_ADMIN_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
            settings.submission.admin_token = Some(token);
        }
        Ok(settings)
    }

    /// What the worker role reads.
    pub fn pipeline(&self) -> PipelineSettings {
        PipelineSettings {
            worker: self.worker.clone(),
            routing: self.routing.clone(),
            optout: self.optout.clone(),
            replies: self.replies,
            callbacks: self.callbacks,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tern.toml");
        std::fs::write(
            &file,
            "[store]\nbackend = \"sqlite\"\npath = \"x.db\"\n[submission]\nlisten = \"127.0.0.1:9000\"\nmax_segments = 4\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&file)).unwrap();
        assert_eq!(settings.submission.listen.port(), 9000);
        assert_eq!(settings.submission.max_segments, 4);
        assert!(matches!(settings.store, StoreConfig::Sqlite(ref s) if s.path == Path::new("x.db")));
        std::fs::write(&file, "[submission]\nno_such_key = 1\n").unwrap();
        let err = format!("{:#}", Settings::load(Some(&file)).unwrap_err());
        assert!(err.contains("no_such_key"), "{err}");
    }

    #[test]
    fn every_example_in_the_configuration_guide_loads() {
        let guide = include_str!("../../docs/configuration.md");
        let dir = tempfile::tempdir().unwrap();
        let mut examples = 0;
        for (i, block) in guide.split("```toml\n").skip(1).enumerate() {
            let text = block.split("```").next().unwrap();
            let file = dir.path().join(format!("example{i}.toml"));
            std::fs::write(&file, text).unwrap();
            let settings = Settings::load(Some(&file)).unwrap_or_else(|e| panic!("example {i}: {e:#}\n{text}"));
            if text.contains("[[routing.routes]]") {
                let table = settings.routing.table();
                assert!(!table.routes.is_empty());
                table.compile().unwrap();
            }
            for (name, connector) in &settings.connectors {
                connector.validate(name).unwrap_or_else(|e| panic!("example {i}: {e}"));
            }
            examples += 1;
        }
        assert!(examples >= 5, "found {examples} examples");
    }
}
