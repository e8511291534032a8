//! The connector's error type.

use tern_queue::QueueError;

/// Why a connector cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The configuration cannot work; the message names the key.
    #[error("configuration: {0}")]
    Config(String),
    /// The store failed or is unreachable.
    #[error(transparent)]
    Store(#[from] QueueError),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}
