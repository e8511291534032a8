//! The submission API suite, run on SQLite and on the MongoDB stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod account_settings;
mod accounts;
mod bad_input;
mod batches;
mod docs;
mod inbound;
mod messages;
mod operations;
mod reports;
mod routing;
mod tenancy;
