//! The workers' error type.

use tern_handlers::HandlerError;
use tern_queue::QueueError;

/// Why a batch or a job could not finish. The runner logs it, gives the
/// batch's leases back and retries after a backoff; nothing is lost.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The store failed or is unreachable.
    #[error(transparent)]
    Store(#[from] QueueError),
    /// A handler could not decide.
    #[error(transparent)]
    Handler(#[from] HandlerError),
    /// The configuration cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}
