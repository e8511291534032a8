//! Identifiers. Message, batch and account ids are UUIDv7 so they sort by
//! creation time (index-friendly, and a cursor over them is a time cursor);
//! event ids are derived from the fact they record (see [`EventId::derive`]),
//! so a retried stage produces the same id and the journal drops the repeat.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A string that is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {value:?}: expected a UUID")]
pub struct IdParseError {
    /// Which identifier was being parsed ("message", "account", ...).
    pub kind: &'static str,
    /// The rejected input (truncated to 64 characters).
    pub value: String,
}

macro_rules! time_ordered_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) identifier.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID (e.g. read back from a store).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map(Self).map_err(|_| IdParseError {
                    kind: $kind,
                    value: s.chars().take(64).collect(),
                })
            }
        }
    };
}

time_ordered_id!(
    /// One message (one recipient, one body), from acceptance to its terminal state.
    MessageId,
    "message"
);
time_ordered_id!(
    /// A customer account (an enterprise, a reseller or a reseller's sub-account).
    AccountId,
    "account"
);
time_ordered_id!(
    /// A bulk send: the messages created by one batch request.
    BatchId,
    "batch"
);
time_ordered_id!(
    /// One event in the journal.
    EventId,
    "event"
);

/// Namespace for derived event ids; fixed forever, or replays would stop deduplicating.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x7465_726e_2d65_7665_6e74_2d69_6473_0001);

impl EventId {
    /// The deterministic id of a fact: the same message, fact and discriminator
    /// (segment number, attempt...) always give the same id, so a stage
    /// that is retried after a crash re-appends an event the journal already has.
    ///
    /// The id is a UUIDv8: the first 48 bits are the message id's timestamp,
    /// the rest a SHA-1 (v5) hash of the fact. So ids sort roughly by message
    /// creation time, and a store's unique index on them grows at its tail
    /// instead of taking random inserts across its whole width.
    pub fn derive(message_id: MessageId, fact: &str, discriminator: &str) -> Self {
        let name = format!("{message_id}/{fact}/{discriminator}");
        let mut bytes = Uuid::new_v5(&EVENT_NAMESPACE, name.as_bytes()).into_bytes();
        bytes[..6].copy_from_slice(&message_id.0.as_bytes()[..6]);
        Self(Uuid::new_v8(bytes))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_sort_by_creation_time() {
        let first = MessageId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = MessageId::new();
        assert!(first < second);
        assert!(first.to_string() < second.to_string());
    }

    #[test]
    fn derived_event_ids_are_stable_and_distinct() {
        let m = MessageId::new();
        assert_eq!(EventId::derive(m, "charged", ""), EventId::derive(m, "charged", ""));
        assert_ne!(EventId::derive(m, "charged", ""), EventId::derive(m, "refunded", ""));
        assert_ne!(EventId::derive(m, "submitted", "1"), EventId::derive(m, "submitted", "2"));
        assert_ne!(EventId::derive(m, "charged", ""), EventId::derive(MessageId::new(), "charged", ""));
    }

    #[test]
    fn derived_event_ids_sort_with_their_messages() {
        let first = MessageId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = MessageId::new();
        for fact in ["accepted", "charged", "submitted"] {
            assert!(EventId::derive(first, fact, "1") < EventId::derive(second, "accepted", ""));
        }
    }

    #[test]
    fn ids_round_trip_through_text_and_reject_garbage() {
        let id = AccountId::new();
        assert_eq!(id.to_string().parse::<AccountId>().unwrap(), id);
        let err = "not-an-id".parse::<BatchId>().unwrap_err();
        assert_eq!(err.kind, "batch");
        assert!(err.to_string().contains("invalid batch id"));
    }
}
