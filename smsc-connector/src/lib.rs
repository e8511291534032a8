//! SMPP 3.4 connectors to SMSCs (`tern connector`), and an SMSC simulator
//! (`tern smsc-sim`) for development, tests and stress runs.
//!
//! The PDUs and their codec are rusmpp's; the session layer is Tern's own:
//! binds with a window of outstanding requests matched by sequence number,
//! keepalive, reconnects with backoff, and a clean unbind on shutdown.
//!
//! * [`session`]: one bind. [`link`]: a connector's binds, reconnects,
//!   the token bucket and throttling pauses.
//! * [`dispatch`]: the stage that sends what routing queued on
//!   `smsc.<connector>` and records the answers.
//! * [`receipts`], [`inbound`], [`deliver`]: what the SMSC delivers —
//!   receipts matched to messages, MO messages into the pipeline.
//! * [`connector`]: all of it for one configured connector.

#![warn(missing_docs)]

pub mod config;
pub mod connector;
pub mod deliver;
pub mod dispatch;
mod error;
pub mod inbound;
pub mod link;
pub mod metrics;
pub mod receipt;
pub mod receipts;
mod recent;
pub mod session;
pub mod sim;
pub mod smpp;
pub mod submit;

pub use config::{BindMode, ConnectorConfig, ConnectorRole, Connectors, LongMessages, ReceiptIds};
pub use connector::{Running, start};
pub use error::ConnectorError;
