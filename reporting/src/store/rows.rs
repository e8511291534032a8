//! Rows as both dialects read them back (ids as text) and the conversions.

use chrono::{DateTime, Utc};
use tern_core::{MessageStatus, StatusFold};

use crate::ReportingError;
use crate::fold::{FoldState, delivered_from_text, key_from_text};
use crate::model::MessageRow;

/// The columns of `messages` the projector reads back, ids as text.
pub(super) const MESSAGE_COLUMNS: &str = "message_id, account_id, reseller_id, batch_id, destination, country, \
    sender, client_ref, segments, encoding, connector, routed_attempt, status, error_code, price, currency, \
    charged, refunded, wholesale, accepted_at, submitted_at, ended_at, last_event_at, fold_key, \
    fold_delivered";

/// One `messages` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RawMessage {
    message_id: String,
    account_id: Option<String>,
    reseller_id: Option<String>,
    batch_id: Option<String>,
    destination: Option<String>,
    country: Option<String>,
    sender: Option<String>,
    client_ref: Option<String>,
    segments: Option<i32>,
    encoding: Option<String>,
    connector: Option<String>,
    routed_attempt: Option<i64>,
    status: Option<String>,
    error_code: Option<String>,
    price: Option<i64>,
    currency: Option<String>,
    charged: i64,
    refunded: i64,
    wholesale: i64,
    accepted_at: Option<DateTime<Utc>>,
    submitted_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    last_event_at: Option<DateTime<Utc>>,
    fold_key: Option<String>,
    fold_delivered: String,
}

fn corrupt(what: &str, value: &str) -> ReportingError {
    ReportingError::Corrupt(format!("messages.{what} holds {value:?}"))
}

fn id<T: std::str::FromStr>(what: &str, value: Option<String>) -> Result<Option<T>, ReportingError> {
    value.map(|v| v.parse().map_err(|_| corrupt(what, &v))).transpose()
}

impl RawMessage {
    pub(super) fn into_row(self) -> Result<MessageRow, ReportingError> {
        let status = self.status.map(|s| status_from_str(&s).ok_or_else(|| corrupt("status", &s))).transpose()?;
        let last = self.fold_key.map(|k| key_from_text(&k).ok_or_else(|| corrupt("fold_key", &k))).transpose()?;
        let segments = self.segments.map(|s| u16::try_from(s).map_err(|_| corrupt("segments", &s.to_string())));
        let routed_attempt =
            self.routed_attempt.map(|a| u32::try_from(a).map_err(|_| corrupt("routed_attempt", &a.to_string())));
        let segments = segments.transpose()?;
        Ok(MessageRow {
            message_id: self.message_id.parse().map_err(|_| corrupt("message_id", &self.message_id))?,
            account_id: id("account_id", self.account_id)?,
            reseller_id: id("reseller_id", self.reseller_id)?,
            batch_id: id("batch_id", self.batch_id)?,
            destination: self.destination,
            country: self.country,
            sender: self.sender,
            client_ref: self.client_ref,
            segments,
            encoding: self.encoding,
            connector: self.connector,
            routed_attempt: routed_attempt.transpose()?,
            price: self.price,
            currency: self.currency,
            charged: self.charged,
            refunded: self.refunded,
            wholesale: self.wholesale,
            accepted_at: self.accepted_at,
            submitted_at: self.submitted_at,
            last_event_at: self.last_event_at,
            fold: FoldState {
                machine: StatusFold::resume(status, segments, delivered_from_text(&self.fold_delivered)),
                segments,
                last,
                ended_at: self.ended_at,
                error_code: self.error_code,
            },
        })
    }
}

/// Parses [`MessageStatus::as_str`]'s output.
pub fn status_from_str(text: &str) -> Option<MessageStatus> {
    use MessageStatus as S;
    [
        S::Accepted,
        S::Scheduled,
        S::Routed,
        S::Submitted,
        S::Delivered,
        S::Undeliverable,
        S::Expired,
        S::Rejected,
        S::Failed,
        S::Cancelled,
        S::Received,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
}
