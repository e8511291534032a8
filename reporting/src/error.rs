//! The reporting crate's error type.

use tern_queue::QueueError;

/// Why the projector or a report query could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReportingError {
    /// The configuration cannot work (bad URL, unreachable database at start-up).
    #[error("invalid reporting configuration: {0}")]
    Config(String),
    /// The reporting database failed.
    #[error("reporting database: {0}")]
    Database(#[from] sqlx::Error),
    /// The journal failed.
    #[error("journal: {0}")]
    Journal(#[from] QueueError),
    /// A stored row cannot be read back.
    #[error("corrupt reporting row: {0}")]
    Corrupt(String),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ReportingError {
    /// Whether trying again later can succeed (a database or journal away).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(e) => {
                matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)
            }
            Self::Journal(e) => e.is_transient(),
            _ => false,
        }
    }
}
