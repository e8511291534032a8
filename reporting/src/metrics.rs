//! Metric names of the projector, in one place.

/// Counter: journal records projected.
pub const EVENTS: &str = "tern_projector_events_total";
/// Counter: batches, by result (`ok`, `error`).
pub const BATCHES: &str = "tern_projector_batches_total";
/// Histogram: seconds one batch's transaction took.
pub const BATCH_SECONDS: &str = "tern_projector_batch_seconds";
/// Gauge: journal position of the stored checkpoint.
pub const CHECKPOINT: &str = "tern_projector_checkpoint";
/// Gauge: journal records not yet projected (head − checkpoint).
pub const LAG_EVENTS: &str = "tern_projector_lag_events";
/// Gauge: age in seconds of the last projected event while records remain (0 when caught up).
pub const LAG_SECONDS: &str = "tern_projector_lag_seconds";
