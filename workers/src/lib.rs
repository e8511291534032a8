//! Tern's worker runtime and what runs on it: the `mt` and `mo` pipeline
//! stages, webhook dispatch and delivery, and the scheduler.
//!
//! [`runtime::Runner`] consumes one topic with a bounded number of batches
//! in flight, keeps their leases alive while they are worked on, backs off
//! while the store is away, and on shutdown stops claiming, lets in-flight
//! batches finish and gives back the leases of any it had to abandon.

#![warn(missing_docs)]

pub mod callbacks;
pub mod config;
mod error;
pub mod leader;
pub mod metrics;
pub mod mo;
pub mod mt;
pub mod runtime;
pub mod scheduler;
mod worker;

pub use config::{CallbackConfig, SchedulerConfig, StageConfig, WorkerConfig};
pub use error::WorkerError;
pub use worker::{Shutdown, Worker};
