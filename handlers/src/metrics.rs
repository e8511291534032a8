//! Metric names of the handlers, in one place.

use crate::Outcome;

/// Counter: outcomes by handler and kind (`continue`, `stop`, `retry`).
pub const HANDLER_OUTCOMES: &str = "tern_handler_outcomes_total";
/// Counter: minor units charged, by currency.
pub const CHARGED_MINOR_UNITS: &str = "tern_billing_charged_minor_units_total";
/// Counter: minor units refunded, by currency.
pub const REFUNDED_MINOR_UNITS: &str = "tern_billing_refunded_minor_units_total";
/// Gauge: version of the routing table in use (0: the configured one).
pub const ROUTING_TABLE_VERSION: &str = "tern_routing_table_version";

pub(crate) fn outcome(handler: &str, outcome: &Outcome) {
    let kind = match outcome {
        Outcome::Continue => "continue",
        Outcome::Stop(_) => "stop",
        Outcome::RetryLater { .. } => "retry",
    };
    metrics::counter!(HANDLER_OUTCOMES, "handler" => handler.to_owned(), "outcome" => kind).increment(1);
}
