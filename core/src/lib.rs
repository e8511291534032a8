//! Tern's domain model: identifiers, phone numbers, sender ids, message body
//! encodings and the lifecycle events every stage appends to the journal.
//!
//! Nothing here performs I/O, so every rule about messages can be tested in
//! isolation and shared by every role.

#![warn(missing_docs)]

pub mod encoding;
pub mod event;
pub mod ids;
pub mod msisdn;
mod numbering;
pub mod pricing;
pub mod sender;
pub mod status;

pub use encoding::{BodyInfo, Encoding};
pub use event::{DeliveryState, EVENT_SCHEMA_VERSION, Event, EventKind};
pub use ids::{AccountId, BatchId, EventId, IdParseError, MessageId};
pub use msisdn::{Msisdn, MsisdnError};
pub use pricing::{PricePlan, PricePlanError};
pub use sender::{SenderId, SenderIdError};
pub use status::{MessageStatus, StatusFold};
