//! The handlers' error type.

use tern_queue::QueueError;

/// Why a handler could not decide. The stage retries the whole batch later:
/// none of these is the message's fault.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The store failed or is unreachable.
    #[error(transparent)]
    Store(#[from] QueueError),
    /// The configuration names something that does not exist or cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}
