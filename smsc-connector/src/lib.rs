//! SMPP 3.4 connectors to SMSCs (`tern connector`), and an SMSC simulator
//! (`tern smsc-sim`) for development, tests and stress runs.
//!
//! The PDUs and their codec are rusmpp's; the session layer is Tern's own:
//! binds with a window of outstanding requests matched by sequence number,
//! keepalive, reconnects with backoff, and a clean unbind on shutdown.

#![warn(missing_docs)]

pub mod receipt;
pub mod sim;
pub mod smpp;
