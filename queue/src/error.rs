use std::time::Duration;

/// Errors at the persistence boundary.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The configuration names something that cannot work (bad path, standalone mongod...).
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// The store cannot be reached; callers retry with backoff.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The lease was lost (expired and taken by another consumer, or already settled).
    #[error("lease on entry {id} of topic {topic} is no longer held")]
    LeaseLost {
        /// Topic of the entry.
        topic: String,
        /// Entry id.
        id: String,
    },
    /// An argument outside what the contract allows (empty topic, oversized batch...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// Timed out waiting for the store.
    #[error("store did not answer within {0:?}")]
    Timeout(Duration),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl QueueError {
    /// Whether trying again later can succeed (the store was down or slow).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout(_))
    }
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                Self::Unavailable(e.to_string())
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => Self::Corrupt(e.to_string()),
            other => Self::Unexpected(other.into()),
        }
    }
}

impl From<mongodb::error::Error> for QueueError {
    fn from(e: mongodb::error::Error) -> Self {
        use mongodb::error::ErrorKind;
        match *e.kind {
            ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => {
                Self::Unavailable(e.to_string())
            }
            _ if e.contains_label("RetryableWriteError") || e.contains_label("TransientTransactionError") => {
                Self::Unavailable(e.to_string())
            }
            _ => Self::Unexpected(e.into()),
        }
    }
}

impl From<serde_json::Error> for QueueError {
    fn from(e: serde_json::Error) -> Self {
        Self::Corrupt(e.to_string())
    }
}
