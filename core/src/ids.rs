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

/// Namespace for message ids derived from a batch row; fixed forever.
const BATCH_ROW_NAMESPACE: Uuid = Uuid::from_u128(0x7465_726e_2d62_6174_6368_2d72_6f77_0001);

/// Namespace for message ids derived from a name; fixed forever.
const DERIVED_NAMESPACE: Uuid = Uuid::from_u128(0x7465_726e_2d6d_6573_7361_6765_2d69_6401);

impl MessageId {
    /// The id of the message made from row `row` of batch `batch`: the same
    /// batch and row always give the same id, so a batch request retried
    /// after a crash (same idempotency key) re-accepts the same messages
    /// instead of creating copies. A UUIDv7 with the batch's timestamp, so it
    /// sorts with the batch.
    pub fn for_batch_row(batch: BatchId, row: u64) -> Self {
        Self::time_ordered(&batch.0.as_bytes()[..6], &BATCH_ROW_NAMESPACE, &format!("{batch}/{row}"))
    }

    /// The id of a message known by a stable name rather than created fresh:
    /// the same `name` and `created` always give the same id (a UUIDv7 with
    /// `created`'s timestamp), so recording it again after a crash is a
    /// no-op. Connectors name a reassembled inbound message by its parts.
    pub fn derived(created: chrono::DateTime<chrono::Utc>, name: &str) -> Self {
        let millis = u64::try_from(created.timestamp_millis()).unwrap_or(0).to_be_bytes();
        Self::time_ordered(&millis[2..], &DERIVED_NAMESPACE, name)
    }

    /// A UUIDv7 whose 48-bit timestamp is `timestamp` and whose rest is a
    /// SHA-1 (v5) hash of `name`.
    fn time_ordered(timestamp: &[u8], namespace: &Uuid, name: &str) -> Self {
        let mut bytes = Uuid::new_v5(namespace, name.as_bytes()).into_bytes();
        bytes[..6].copy_from_slice(timestamp);
        bytes[6] = (bytes[6] & 0x0f) | 0x70;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(Uuid::from_bytes(bytes))
    }

    /// The instant encoded in the id (its creation time).
    pub fn created_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
    }

    /// The smallest id created at `at` or later: a lower bound for id ranges.
    pub fn lower_bound(at: chrono::DateTime<chrono::Utc>) -> Self {
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        bytes[6] = 0x70;
        bytes[8] = 0x80;
        Self(Uuid::from_bytes(bytes))
    }
}

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
    fn batch_row_ids_are_stable_v7_and_sort_with_their_batch() {
        let batch = BatchId::new();
        let id = MessageId::for_batch_row(batch, 7);
        assert_eq!(id, MessageId::for_batch_row(batch, 7));
        assert_ne!(id, MessageId::for_batch_row(batch, 8));
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(id.as_uuid().as_bytes()[..6], batch.as_uuid().as_bytes()[..6]);
        let created = id.created_at().unwrap();
        assert!(MessageId::lower_bound(created) <= id);
        assert!(MessageId::lower_bound(created + chrono::TimeDelta::milliseconds(1)) > id);
    }

    #[test]
    fn named_message_ids_are_stable_v7_at_their_instant() {
        let at = chrono::DateTime::from_timestamp_millis(1_780_000_000_123).unwrap();
        let id = MessageId::derived(at, "c1/+447700900001/4000/7/3");
        assert_eq!(id, MessageId::derived(at, "c1/+447700900001/4000/7/3"));
        assert_ne!(id, MessageId::derived(at, "c1/+447700900001/4000/8/3"));
        assert_ne!(id, MessageId::derived(at + chrono::TimeDelta::milliseconds(1), "c1/+447700900001/4000/7/3"));
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(id.created_at().map(|t| t.timestamp_millis()), Some(at.timestamp_millis()));
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
