//! Load harness: benchmarks and the nightly stress run.

pub mod queue_bench;
pub mod submission_bench;
