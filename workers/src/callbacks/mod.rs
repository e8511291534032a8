//! Webhooks: the dispatcher turns status changes in the journal into
//! `callbacks` queue entries; the sender POSTs them, signed, with retries.
//! The pipeline never waits for a customer's endpoint: a slow or dead one
//! only delays its own webhooks.

mod dispatcher;
mod sender;

pub use dispatcher::{CHECKPOINT_SETTING, Dispatcher, StatusCallback};
pub use sender::Sender;
