//! Tern's handler pipeline: the decisions taken about each message between
//! acceptance and the SMSC (opt-out, routing, billing) and about each inbound
//! message (reply matching, opt-out keywords, forwarding).
//!
//! A stage runs a [`Chain`] of handlers over a batch of work items. Each
//! handler answers every item with an [`Outcome`] (continue, stop with a
//! terminal fact, retry later) instead of calling the next handler, so the
//! chain, not the handlers, decides what happens next. Handlers are
//! registered by name in a [`Registry`] and chained from configuration
//! (`mt = ["optout", "routing", "billing"]`); a new handler is one more
//! `register` call, with no change to the others.
//!
//! Handlers see whole batches because most of them need the store, and one
//! round trip per batch instead of one per message is what lets a stage
//! keep up with tens of thousands of messages a second.

#![warn(missing_docs)]

pub mod billing;
mod chain;
pub mod conversations;
mod error;
pub mod metrics;
pub mod optout;
pub mod replies;
pub mod routing;
pub mod webhook;
pub mod work;

pub use chain::{Chain, Handler, Outcome, Registry};
pub use error::HandlerError;
pub use work::{Dispatch, Mo, MoEntry, Mt, MtEntry, Outbound};
