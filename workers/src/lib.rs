//! The worker runtime: consumes a queue stage and runs its handler chain.
//!
//! Filled by the workers-and-handlers issue.
