//! Load harness: benchmarks and the nightly stress run.

pub mod connector_bench;
pub mod harness;
pub mod pipeline_bench;
pub mod projector_bench;
pub mod queue_bench;
pub mod submission_bench;
