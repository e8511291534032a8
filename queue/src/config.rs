//! Choosing a backend: the one place configuration becomes a [`Store`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::mongo::MongoStore;
use crate::sqlite::SqliteStore;
use crate::{QueueError, Result, Store};

/// Which store Tern uses, as written in the `[store]` section of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// Embedded: one SQLite file.
    Sqlite(SqliteConfig),
    /// A MongoDB replica set (or several, for the queue).
    Mongodb(MongoConfig),
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::Sqlite(SqliteConfig { path: PathBuf::from("data/tern.db") })
    }
}

/// The embedded SQLite store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// Database file; its directory is created if missing.
    pub path: PathBuf,
}

/// The MongoDB store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoConfig {
    /// The deployment holding the journal (and the queue, unless `queue_uris` is set).
    pub uri: String,
    /// Database name, on every deployment.
    pub database: String,
    /// Independent deployments for the queue (Starling/Kestrel model): each
    /// batch goes to one at random, consumers claim from all. Empty: `uri`.
    #[serde(default)]
    pub queue_uris: Vec<String>,
    /// How long a reserved but unwritten journal position may stay empty
    /// before a reader fills it (see docs/architecture.md).
    #[serde(default = "default_journal_settle_ms")]
    pub journal_settle_ms: u64,
    /// How old an accept must be before the repair pass republishes its
    /// queue entries; longer than any accept can take.
    #[serde(default = "default_outbox_settle_ms")]
    pub outbox_settle_ms: u64,
    /// How long to wait for a deployment before calling it down.
    #[serde(default = "default_server_selection_timeout_ms")]
    pub server_selection_timeout_ms: u64,
}

fn default_journal_settle_ms() -> u64 {
    5_000
}

fn default_outbox_settle_ms() -> u64 {
    30_000
}

fn default_server_selection_timeout_ms() -> u64 {
    3_000
}

impl MongoConfig {
    /// A config for one deployment with the default timings.
    pub fn new(uri: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            database: database.into(),
            queue_uris: Vec::new(),
            journal_settle_ms: default_journal_settle_ms(),
            outbox_settle_ms: default_outbox_settle_ms(),
            server_selection_timeout_ms: default_server_selection_timeout_ms(),
        }
    }

    pub(crate) fn journal_settle(&self) -> Duration {
        Duration::from_millis(self.journal_settle_ms)
    }

    pub(crate) fn outbox_settle(&self) -> Duration {
        Duration::from_millis(self.outbox_settle_ms)
    }
}

impl StoreConfig {
    /// Connects to the configured backend and checks it can serve Tern:
    /// the SQLite file opens and migrates; every MongoDB deployment answers
    /// and is a replica set. Fails with a message naming what is wrong.
    pub async fn connect(&self) -> Result<Store> {
        match self {
            Self::Sqlite(config) => Ok(SqliteStore::open(config).await?.into_store()),
            Self::Mongodb(config) => {
                if config.database.is_empty() {
                    return Err(QueueError::Config("store.database must name a MongoDB database".into()));
                }
                Ok(MongoStore::connect(config).await?.into_store())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_backends_and_rejects_unknown_ones() {
        let sqlite: StoreConfig = serde_json::from_str(r#"{"backend":"sqlite","path":"x.db"}"#).unwrap();
        assert_eq!(sqlite, StoreConfig::Sqlite(SqliteConfig { path: "x.db".into() }));
        let mongo: StoreConfig = serde_json::from_str(
            r#"{"backend":"mongodb","uri":"mongodb://a/","database":"tern","queue_uris":["mongodb://b/"]}"#,
        )
        .unwrap();
        let StoreConfig::Mongodb(mongo) = mongo else { panic!("not mongodb") };
        assert_eq!(mongo.queue_uris, vec!["mongodb://b/".to_owned()]);
        assert_eq!(mongo.journal_settle_ms, 5_000);
        let err = serde_json::from_str::<StoreConfig>(r#"{"backend":"redis"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `redis`"), "{err}");
        let err = serde_json::from_str::<StoreConfig>(r#"{"backend":"sqlite","path":"x","pth":"y"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `pth`"), "{err}");
    }
}
