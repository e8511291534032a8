//! The JSON bodies of the API (requests refuse unknown fields).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tern_core::{Encoding, MessageStatus, PricePlan};
use utoipa::{IntoParams, ToSchema};

use crate::error::RowError;

/// `POST /v1/messages`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// Destination in E.164 (`+447400123456`).
    pub to: String,
    /// Sender id: up to 15 digits, or up to 11 letters/digits.
    pub from: String,
    /// Text; GSM 03.38 when it fits, else UCS-2.
    pub body: String,
    /// When to send (RFC 3339); now if absent.
    pub send_at: Option<String>,
    /// Seconds after the send time at which an undelivered message expires.
    pub validity: Option<u64>,
    /// Instant (RFC 3339) at which an undelivered message expires.
    pub expires_at: Option<String>,
    /// Status callbacks go here (else the account's default).
    pub callback_url: Option<String>,
    /// Your own reference, echoed back.
    pub client_ref: Option<String>,
    /// 0 (default) to 9.
    pub priority: Option<u8>,
}

/// A message's price.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Price {
    /// Minor units (cents...), all segments.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
}

/// `202` answer to a send.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageAccepted {
    /// The message id.
    pub id: String,
    /// `accepted` or `scheduled`.
    #[schema(value_type = String)]
    pub status: MessageStatus,
    /// Destination, normalised to E.164.
    pub to: String,
    /// SMS segments.
    pub segments: u16,
    /// `gsm7` or `ucs2`.
    #[schema(value_type = String)]
    pub encoding: Encoding,
    /// Price, when the account's plan covers the destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// When it was accepted.
    pub accepted_at: DateTime<Utc>,
    /// When it will be sent, if scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<DateTime<Utc>>,
    /// When it expires if undelivered.
    pub expires_at: DateTime<Utc>,
    /// Your reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<String>,
}

/// One entry of a message's audit trail: the event as journaled.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// Event id.
    pub id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The event (`type` names it; other fields depend on it).
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// `GET /v1/messages/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageDetails {
    /// The message id.
    pub id: String,
    /// Current status (a fold of the history).
    #[schema(value_type = String)]
    pub status: MessageStatus,
    /// Destination.
    pub to: String,
    /// Sender id.
    pub from: String,
    /// Text.
    pub body: String,
    /// SMS segments.
    pub segments: u16,
    /// `gsm7` or `ucs2`.
    #[schema(value_type = String)]
    pub encoding: Encoding,
    /// Charged (net of refunds) if billing has run, else the quoted price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// Batch, for bulk sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// Your reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<String>,
    /// Key instants of its life.
    pub timestamps: Timestamps,
    /// Every event, in order.
    pub history: Vec<HistoryEntry>,
}

/// Key instants of a message.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Timestamps {
    /// Accepted.
    pub accepted_at: Option<DateTime<Utc>>,
    /// Scheduled send time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<DateTime<Utc>>,
    /// First segment taken by an SMSC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<DateTime<Utc>>,
    /// Reached its terminal status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Expires if undelivered.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A message in a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageSummary {
    /// Id.
    pub id: String,
    /// Status.
    #[schema(value_type = String)]
    pub status: MessageStatus,
    /// Destination.
    pub to: String,
    /// Batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// Your reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<String>,
    /// Accepted.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
}

/// A page of a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page. A page
    /// filtered by status or recipient may hold fewer items than `limit`,
    /// even none, while more follow: keep going until this is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/messages` filters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListMessages {
    /// Only this status.
    pub status: Option<String>,
    /// Only to this number.
    pub to: Option<String>,
    /// Only of this batch.
    pub batch_id: Option<String>,
    /// Accepted at or after (RFC 3339).
    pub since: Option<String>,
    /// Accepted before (RFC 3339).
    pub until: Option<String>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

/// `GET /v1/balance`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Balance {
    /// Account.
    pub account_id: String,
    /// Balance, minor units.
    pub balance: i64,
    /// How far below zero it may go.
    pub credit_limit: i64,
    /// `balance + credit_limit`.
    pub available: i64,
    /// ISO 4217.
    pub currency: String,
}

/// One recipient of a JSON batch.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    /// Destination, E.164.
    pub to: String,
    /// Values of the template's `{placeholders}`.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Your reference for this message.
    pub client_ref: Option<String>,
}

/// `POST /v1/batches` as JSON. As CSV, the same options are query parameters.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// Sender id.
    pub from: String,
    /// Template: `{name}` is replaced by the recipient's variable, `{{` and `}}` are braces.
    pub body: String,
    /// The recipients (for CSV, the rows).
    #[serde(default)]
    pub recipients: Vec<Recipient>,
    /// When to send (RFC 3339).
    pub send_at: Option<String>,
    /// Validity in seconds.
    pub validity: Option<u64>,
    /// Expiry instant (RFC 3339).
    pub expires_at: Option<String>,
    /// Status callback URL.
    pub callback_url: Option<String>,
    /// 0 to 9.
    pub priority: Option<u8>,
    /// Refuse the whole batch if any row is invalid.
    #[serde(default)]
    pub all_or_nothing: bool,
}

/// `202` answer to a batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchAccepted {
    /// Batch id.
    pub batch_id: String,
    /// Rows in the request.
    pub recipients: u64,
    /// Messages accepted.
    pub accepted: u64,
    /// Rows refused.
    pub invalid: u64,
    /// The refused rows (the first 1,000).
    pub errors: Vec<RowError>,
    /// Whether `errors` was cut at 1,000.
    pub errors_truncated: bool,
}

/// `GET /v1/batches/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchStatus {
    /// Batch id.
    pub batch_id: String,
    /// Rows in the request.
    pub recipients: u64,
    /// Messages accepted.
    pub accepted: u64,
    /// Rows refused.
    pub invalid: u64,
    /// Accepted messages by current status.
    pub statuses: BTreeMap<String, u64>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
}

/// `POST /admin/v1/accounts`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// Display name.
    pub name: String,
    /// The reseller it belongs to.
    pub parent_id: Option<String>,
    /// ISO 4217 (default EUR).
    pub currency: Option<String>,
    /// Minor units the balance may go below zero (default 0).
    pub credit_limit: Option<i64>,
    /// Prices per segment.
    #[schema(value_type = Option<Object>)]
    pub price_plan: Option<PricePlan>,
    /// Requests per second (default 200).
    pub requests_per_second: Option<u32>,
    /// Messages per second (default 10,000).
    pub messages_per_second: Option<u32>,
    /// Default status callback URL.
    pub callback_url: Option<String>,
    /// Where inbound messages (replies) for the account are forwarded.
    pub inbound_url: Option<String>,
}

/// `PATCH /admin/v1/accounts/{id}`: only the fields present change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    /// New default status callback URL; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub callback_url: Option<Option<String>>,
    /// New inbound webhook URL; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub inbound_url: Option<Option<String>>,
    /// New credit limit, minor units (not `null`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub credit_limit: Option<Option<i64>>,
    /// New price plan; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub price_plan: Option<Option<PricePlan>>,
    /// New requests per second (not `null`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub requests_per_second: Option<Option<u32>>,
    /// New messages per second (not `null`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub messages_per_second: Option<Option<u32>>,
    /// `true` replaces the webhook signing secret with a new one (the old one
    /// stops verifying at once).
    pub rotate_webhook_secret: Option<bool>,
}

/// A field that is present, `null` or not: with `#[serde(default)]`, an
/// absent field stays `None` while `null` becomes `Some(None)`, which is how
/// a PATCH tells "leave it" from "remove it".
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// An account as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Reseller.
    pub parent_id: Option<String>,
    /// Currency.
    pub currency: String,
    /// Balance, minor units.
    pub balance: i64,
    /// Credit limit.
    pub credit_limit: i64,
    /// Prices.
    #[schema(value_type = Option<Object>)]
    pub price_plan: Option<PricePlan>,
    /// Requests per second.
    pub requests_per_second: u32,
    /// Messages per second.
    pub messages_per_second: u32,
    /// Default callback URL.
    pub callback_url: Option<String>,
    /// Inbound webhook URL.
    pub inbound_url: Option<String>,
    /// Key of the `Tern-Signature` HMAC on the account's webhooks; hand it
    /// to the customer so they can verify them.
    pub webhook_secret: Option<String>,
    /// Suspended.
    pub suspended: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// `POST /admin/v1/accounts/{id}/suspend` and `/reinstate` take no body;
/// top-ups take this.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUpRequest {
    /// Minor units to add (positive).
    pub amount: i64,
    /// Your reference: a top-up is applied once per reference.
    pub reference: String,
}

/// Answer to a top-up.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopUpDone {
    /// Balance after it.
    pub balance: i64,
    /// Whether the reference had been applied before (nothing changed).
    pub duplicate: bool,
}

/// `POST /admin/v1/accounts/{id}/keys`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label.
    pub name: Option<String>,
}

/// A key as listed (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// Key id (the public part of the key).
    pub id: String,
    /// Label.
    pub name: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyCreated {
    /// Key id.
    pub id: String,
    /// The whole key, for `Authorization: Bearer`.
    pub key: String,
    /// The account.
    pub account_id: String,
}

/// `GET /v1/inbound` paging.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListInbound {
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

/// An inbound message (a handset's text to one of the account's numbers).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InboundMessage {
    /// Id of the inbound message.
    pub id: String,
    /// The handset, E.164.
    pub from: String,
    /// The number or short code it was sent to.
    pub to: String,
    /// Text.
    pub body: String,
    /// The SMSC connector it came through.
    pub connector: String,
    /// Id of the outbound message it answers, if it was matched to one.
    pub reply_to: Option<String>,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// The routing table the workers use, as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoutingView {
    /// Version of the stored table, incremented by every `PUT`; 0 when none
    /// was ever stored.
    pub version: i64,
    /// The stored table; `null` when none was stored, in which case the
    /// workers use the table in their configuration (`[routing]`).
    #[schema(value_type = Option<Object>)]
    pub table: Option<serde_json::Value>,
    /// When it was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}
