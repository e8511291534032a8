//! Tern's persistence layer: durable work queues and the append-only event
//! journal, behind one contract with two backends.
//!
//! * [`sqlite`]: the embedded default. One file, WAL, every acknowledged write fsynced,
//!   all writes funnelled through a group-commit writer.
//! * [`mongo`]: production. A replica set (refused if standalone), writes
//!   with `w: majority, j: true`; the queue may span several deployments
//!   (the Starling/Kestrel model).
//!
//! The rest of Tern sees only [`Store`], [`Queue`] (with its [`Producer`] and
//! [`Consumer`]) and [`Journal`]; [`StoreConfig::connect`] is the one place a
//! backend is chosen. `docs/architecture.md` explains the designs.

#![warn(missing_docs)]

pub mod accounts;
pub mod billing;
mod config;
pub mod contacts;
pub mod coordination;
mod error;
mod journal;
pub mod messages;
pub mod mongo;
mod queue;
pub mod smsc;
pub mod sqlite;
mod store;
#[cfg(feature = "test-suite")]
pub mod test_suite;

pub use accounts::{
    Account, AccountUpdate, Accounts, AccountsBackend, ApiKeyRecord, Begin, IdempotencyRecord, RateLimits, TopUp,
};
pub use billing::{Charge, ChargeOutcome, Debit};
pub use config::{MongoConfig, SqliteConfig, StoreConfig};
pub use contacts::{Contacts, ContactsBackend, Conversation, InboundRow};
pub use coordination::{Coordination, CoordinationBackend, Setting};
pub use error::QueueError;
pub use journal::{Journal, JournalBackend, JournalRecord, Position};
pub use messages::{
    BatchRecord, DEFAULT_SCAN_LIMIT, MessageIndexBackend, MessagePage, MessageQuery, MessageRow, Messages, StatusUpdate,
};
pub use queue::{
    Claim, ClaimedEntry, Consumer, ConsumerOptions, Deliveries, Delivery, Depth, LeaseRef, NackOutcome, NewEntry,
    Producer, PublishReceipt, Queue, QueueBackend,
};
pub use smsc::{MoPart, MoPartKey, Smsc, SmscBackend, SmscIdRecord};
pub use store::{AcceptBackend, AppendThenFold, RecordBackend, Store, StoreParts, status_updates};

/// Result type of this crate.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
