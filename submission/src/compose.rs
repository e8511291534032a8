//! Turning a validated send request into the events and queue entry that
//! accept a message. Shared by single sends and batches.

use chrono::{DateTime, TimeDelta, Utc};
use tern_core::{BatchId, Encoding, Event, EventKind, MessageId, Msisdn, SenderId, encoding};
use tern_queue::{Account, NewEntry};
use url::Url;

use crate::config::SubmissionConfig;

/// Queue topic of messages ready for the pipeline.
pub const MT_TOPIC: &str = "mt";
/// Queue topic of scheduled messages; the scheduler releases them at `send_at`.
pub const SCHEDULED_TOPIC: &str = "scheduled";

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name as the client spelled it.
    pub field: String,
    /// Why.
    pub reason: String,
}

fn bad(field: &str, reason: impl Into<String>) -> FieldError {
    FieldError { field: field.to_owned(), reason: reason.into() }
}

/// Send options shared by every message of a request, as the client gave them.
#[derive(Debug, Clone)]
pub struct RawOptions {
    pub from: String,
    pub send_at: Option<String>,
    pub validity: Option<u64>,
    pub expires_at: Option<String>,
    pub callback_url: Option<String>,
    pub priority: Option<u8>,
}

impl From<&crate::model::SendMessage> for RawOptions {
    fn from(r: &crate::model::SendMessage) -> Self {
        Self {
            from: r.from.clone(),
            send_at: r.send_at.clone(),
            validity: r.validity,
            expires_at: r.expires_at.clone(),
            callback_url: r.callback_url.clone(),
            priority: r.priority,
        }
    }
}

impl From<&crate::model::CreateBatch> for RawOptions {
    fn from(r: &crate::model::CreateBatch) -> Self {
        Self {
            from: r.from.clone(),
            send_at: r.send_at.clone(),
            validity: r.validity,
            expires_at: r.expires_at.clone(),
            callback_url: r.callback_url.clone(),
            priority: r.priority,
        }
    }
}

/// Send options, checked.
#[derive(Debug, Clone)]
pub struct Options {
    pub from: SenderId,
    pub send_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub callback_url: Option<String>,
    pub priority: u8,
}

impl Options {
    /// The topic these messages go to.
    pub fn topic(&self) -> &'static str {
        if self.send_at.is_some() { SCHEDULED_TOPIC } else { MT_TOPIC }
    }
}

/// Seconds from configuration as a duration, capped at a century so that no
/// configured value can overflow the date arithmetic.
pub fn secs(s: u64) -> TimeDelta {
    const CENTURY: u64 = 100 * 365 * 24 * 3600;
    TimeDelta::try_seconds(i64::try_from(s.min(CENTURY)).unwrap_or(0)).unwrap_or(TimeDelta::zero())
}

fn timestamp(field: &str, value: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| bad(field, format!("{value:?} is not an RFC 3339 timestamp such as 2026-01-31T09:30:00Z ({e})")))
}

/// Checks the options against the configuration, at instant `now`.
pub fn check_options(raw: &RawOptions, config: &SubmissionConfig, now: DateTime<Utc>) -> Result<Options, FieldError> {
    let from = SenderId::parse(&raw.from).map_err(|e| bad("from", e.to_string()))?;
    let send_at = raw.send_at.as_deref().map(|v| timestamp("send_at", v)).transpose()?;
    if let Some(at) = send_at {
        // A little slack for clocks: "now" from a client is a few ms old.
        if at < now - TimeDelta::seconds(5) {
            return Err(bad("send_at", format!("{} is in the past", at.to_rfc3339())));
        }
        if at > now + secs(config.max_schedule_ahead_secs) {
            return Err(bad(
                "send_at",
                format!("messages can be scheduled at most {} s ahead", config.max_schedule_ahead_secs),
            ));
        }
    }
    let start = send_at.unwrap_or(now).max(now);
    let expires_at = match (raw.validity, raw.expires_at.as_deref()) {
        (Some(_), Some(_)) => return Err(bad("validity", "give either validity or expires_at, not both")),
        (Some(v), None) => {
            if !(60..=config.max_validity_secs).contains(&v) {
                return Err(bad(
                    "validity",
                    format!("validity must be between 60 and {} seconds", config.max_validity_secs),
                ));
            }
            start + secs(v)
        }
        (None, Some(at)) => {
            let at = timestamp("expires_at", at)?;
            if at <= start {
                return Err(bad("expires_at", "expires_at must be after the send time"));
            }
            if at > start + secs(config.max_validity_secs) {
                return Err(bad(
                    "expires_at",
                    format!("expires_at may be at most {} s after the send time", config.max_validity_secs),
                ));
            }
            at
        }
        (None, None) => start + secs(config.default_validity_secs),
    };
    let callback_url = raw.callback_url.as_deref().map(|url| check_url("callback_url", url)).transpose()?;
    let priority = raw.priority.unwrap_or(0);
    if priority > 9 {
        return Err(bad("priority", "priority must be between 0 and 9"));
    }
    Ok(Options { from, send_at, expires_at, callback_url, priority })
}

/// Checks a message's own reference.
pub fn check_client_ref(client_ref: Option<&str>) -> Result<(), FieldError> {
    match client_ref {
        Some(r) if r.is_empty() || r.chars().count() > 128 || r.chars().any(char::is_control) => {
            Err(bad("client_ref", "client_ref must be 1 to 128 printable characters"))
        }
        _ => Ok(()),
    }
}

/// Checks a webhook URL (status callbacks, inbound forwarding); `field` is
/// the name the client gave it, so the problem names the right one.
pub fn check_url(field: &str, value: &str) -> Result<String, FieldError> {
    let url = Url::parse(value).map_err(|e| bad(field, format!("{value:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad(field, format!("{field} must be an http or https URL with a host")));
    }
    if value.len() > 2048 {
        return Err(bad(field, format!("{field} is longer than 2048 characters")));
    }
    Ok(url.into())
}

/// A message ready to accept.
#[derive(Debug, Clone)]
pub struct Composed {
    pub id: MessageId,
    pub to: Msisdn,
    pub encoding: Encoding,
    pub segments: u16,
    pub price: Option<i64>,
    pub events: Vec<Event>,
    pub entry: NewEntry,
}

/// A recipient and text that passed [`check_message`].
#[derive(Debug, Clone)]
pub struct Checked {
    pub to: Msisdn,
    pub body: String,
    pub encoding: Encoding,
    pub segments: u16,
    pub client_ref: Option<String>,
}

/// Checks a recipient, a body and a reference: the normalised number, the
/// encoding and the segment count.
pub fn check_message(
    to: &str,
    body: String,
    client_ref: Option<String>,
    max_segments: u16,
) -> Result<Checked, FieldError> {
    let to = Msisdn::parse(to).map_err(|e| bad("to", e.to_string()))?;
    if body.is_empty() {
        return Err(bad("body", "body is empty"));
    }
    if body.contains('\0') {
        return Err(bad("body", "body contains a NUL character"));
    }
    let info = encoding::analyze(&body);
    let segments = u16::try_from(info.segments).unwrap_or(u16::MAX);
    if segments > max_segments {
        return Err(bad(
            "body",
            format!("body needs {segments} SMS segments ({:?}); the limit is {max_segments}", info.encoding),
        ));
    }
    check_client_ref(client_ref.as_deref())?;
    Ok(Checked { to, body, encoding: info.encoding, segments, client_ref })
}

/// Builds a checked message's accept events and queue entry.
pub fn compose(
    account: &Account,
    id: MessageId,
    message: Checked,
    options: &Options,
    batch_id: Option<BatchId>,
    at: DateTime<Utc>,
) -> anyhow::Result<Composed> {
    let Checked { to, body, encoding, segments, client_ref } = message;
    let price = account.price_plan.as_ref().and_then(|plan| plan.price(&to, segments));
    let kind = EventKind::Accepted {
        to: to.as_str().to_owned(),
        country: to.country().map(str::to_owned),
        from: options.from.as_str().to_owned(),
        body,
        encoding,
        segments,
        batch_id,
        client_ref,
        callback_url: options.callback_url.clone(),
        priority: options.priority,
        expires_at: options.expires_at,
        price,
        currency: price.map(|_| account.currency.clone()),
    };
    let accepted = Event::new(id, Some(account.id), at, kind);
    let payload = serde_json::to_vec(&accepted)?;
    let mut entry = NewEntry::new(id.to_string(), payload);
    let mut events = vec![accepted];
    if let Some(send_at) = options.send_at {
        entry = entry.not_before(send_at);
        events.push(Event::new(id, Some(account.id), at, EventKind::Scheduled { send_at }));
    }
    Ok(Composed { id, to, encoding, segments, price, events, entry })
}
