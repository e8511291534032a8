//! Metric names of the connectors, in one place. Every metric carries the
//! `connector` label.

/// Gauge: binds up, by `kind` (`transceiver`, `transmitter`, `receiver`).
pub const BINDS_UP: &str = "tern_connector_binds_up";
/// Counter: bind attempts, by `result` (`ok`, `refused`, `failed`).
pub const BINDS: &str = "tern_connector_binds_total";
/// Gauge: `submit_sm` sent and waiting for their response.
pub const WINDOW_IN_USE: &str = "tern_connector_window_in_use";
/// Counter: `submit_sm` by `result` (`ok`, `throttled`, `retryable`, `rejected`, `timeout`, `link_lost`, `not_sent`).
pub const SUBMITS: &str = "tern_connector_submit_sm_total";
/// Histogram: seconds from `submit_sm` to its response.
pub const RESPONSE_SECONDS: &str = "tern_connector_response_seconds";
/// Counter: delivery receipts by `result` (`matched`, `deferred`, `matched_late`, `unmatched`, `unreadable`).
pub const RECEIPTS: &str = "tern_connector_receipts_total";
/// Counter: ESME_RTHROTTLED / ESME_RMSGQFUL answers.
pub const THROTTLED: &str = "tern_connector_throttled_total";
/// Counter: `submit_sm` whose response never came (timeout, or the link
/// broke first). Each is sent again, so each may reach the handset twice:
/// this is the measured duplicate window.
pub const UNKNOWN_OUTCOMES: &str = "tern_connector_unknown_outcomes_total";
/// Counter: inbound (MO) messages recorded, and parts stored, by `kind` (`message`, `part`).
pub const INBOUND: &str = "tern_connector_inbound_total";
/// Counter: malformed or unexpected PDUs from the SMSC answered with generic_nack.
pub const GENERIC_NACKS: &str = "tern_connector_generic_nacks_total";
/// Counter: responses that arrived after their request timed out.
pub const LATE_RESPONSES: &str = "tern_connector_late_responses_total";
/// Gauge: 1 while the connector holds its `connector-down` lease.
pub const DOWN: &str = "tern_connector_down";
