//! The pluggable handler pipeline (opt-out, routing, billing, callbacks, replies).
//!
//! Filled by the workers-and-handlers issue; it builds on `tern-core` and `tern-queue`.
