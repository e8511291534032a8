//! Counters the simulator keeps for tests and stress runs: plain atomics,
//! bumped on the hot path without locks, read as a [`SimStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// The live counters.
        #[derive(Debug, Default)]
        pub(crate) struct Stats {
            $(pub(crate) $name: AtomicU64,)*
        }

        /// A snapshot of the simulator's counters.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
        pub struct SimStats {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Stats {
            pub(crate) fn snapshot(&self) -> SimStats {
                SimStats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Successful binds since the start.
    binds_total,
    /// Binds up now.
    binds_active,
    /// Binds refused (bad credentials).
    bind_refused,
    /// `submit_sm` received, whatever became of them.
    submit_sm,
    /// `data_sm` received.
    data_sm,
    /// Messages (segments) accepted with a message id.
    segments_accepted,
    /// Answered `ESME_RTHROTTLED`.
    throttled,
    /// Answered `ESME_RINVDSTADR`.
    rejected,
    /// Responses delayed by `slow_ms`.
    slow_responses,
    /// Accepted messages whose response was never sent.
    dropped_responses,
    /// Links the simulator dropped without an unbind.
    disconnects,
    /// Receipts sent (first attempts).
    receipts_sent,
    /// Receipts the client acknowledged with status 0.
    receipts_acked,
    /// MOs sent (first attempts).
    mo_sent,
    /// MOs the client acknowledged with status 0.
    mo_acked,
    /// `deliver_sm` sent again after a refusal, a timeout or a lost link.
    redelivered,
    /// `deliver_sm_resp` with a non-zero status.
    deliver_sm_refused,
    /// `deliver_sm` that got no resp in time.
    deliver_sm_timeouts,
    /// Receipts and MOs waiting now for a bind that can receive them.
    stored,
    /// Receipts and MOs dropped because too many were waiting.
    stored_dropped,
    /// `generic_nack` sent (malformed or unknown PDUs).
    generic_nacks_sent,
    /// `generic_nack` received from clients.
    generic_nacks_received,
    /// Accepted messages with the same source, destination and content as
    /// one accepted before.
    duplicates,
    /// `enquire_link` answered.
    enquire_links,
    /// Unbinds, from either side.
    unbinds,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }
}
