//! Load harness: benchmarks and the nightly stress run.

pub mod queue_bench;
