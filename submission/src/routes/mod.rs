//! The HTTP handlers, one module per resource.

pub mod account;
pub mod admin;
pub mod batches;
pub mod health;
pub mod inbound;
pub mod messages;
pub mod reports;
pub mod routing;
