//! What Tern POSTs to customers (status callbacks, inbound messages) and how
//! it signs them.
//!
//! Signature: header `Tern-Signature: t=<unix seconds>,v1=<hex>`, where the
//! hex is HMAC-SHA256, keyed with the account's webhook secret, over
//! `"<t>.<raw body>"`. Receivers recompute it, compare in constant time, and
//! refuse timestamps too far from their clock (replays).

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tern_core::{AccountId, EventId, MessageId};

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Tern-Signature";
/// Header carrying the id of the event a webhook reports (stable across retries: dedupe on it).
pub const EVENT_ID_HEADER: &str = "Tern-Event-Id";
/// Topic the webhook sender consumes.
pub const CALLBACKS_TOPIC: &str = "callbacks";

/// A webhook waiting to be delivered: a `callbacks` queue entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEntry {
    /// Whose webhook it is (its secret signs it).
    pub account_id: AccountId,
    /// The message the webhook is about (where the delivery is journaled).
    pub message_id: MessageId,
    /// The event it reports.
    pub event_id: EventId,
    /// Where it goes.
    pub url: String,
    /// The JSON body, exactly as sent (and signed).
    pub body: String,
    /// When the event happened; retries stop a fixed time after it.
    pub first_at: DateTime<Utc>,
}

impl WebhookEntry {
    /// The queue entry id: one webhook per event and endpoint.
    pub fn entry_id(&self) -> String {
        format!("{}:{}", self.event_id, self.url)
    }
}

type HmacSha256 = Hmac<Sha256>;

/// The `Tern-Signature` value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not `t=<digits>,v1=<hex>`.
    #[error("malformed signature header")]
    Malformed,
    /// Signed too long ago (or in the future).
    #[error("signature timestamp is outside the tolerance")]
    Stale,
    /// The MAC does not match.
    #[error("signature does not match")]
    Mismatch,
}

/// Checks a `Tern-Signature` header (what a receiver does).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signature = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Malformed);
    };
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    mac(secret, timestamp, body).verify_slice(&signature).map_err(|_| SignatureError::Mismatch)
}

/// A fresh webhook secret: 32 random bytes, hex, prefixed `whsec_`.
pub fn new_secret() -> String {
    format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let header = sign("whsec_k", 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        verify("whsec_k", &header, b"{\"a\":1}", 1_700_000_100, 300).unwrap();
        assert_eq!(verify("whsec_k", &header, b"{\"a\":2}", 1_700_000_000, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify("other", &header, b"{\"a\":1}", 1_700_000_000, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify("whsec_k", &header, b"{\"a\":1}", 1_700_001_000, 300), Err(SignatureError::Stale));
        assert_eq!(verify("whsec_k", "v1=zz", b"", 0, 300), Err(SignatureError::Malformed));
    }

    #[test]
    fn signs_the_documented_string() {
        // RFC 4231 test case 2 (key "Jefe"), with the message written as "<t>.<body>".
        let header = sign("Jefe", 0, b"what do ya want for nothing?");
        let mut mac = <HmacSha256 as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"0.what do ya want for nothing?");
        assert_eq!(header, format!("t=0,v1={}", hex::encode(mac.finalize().into_bytes())));
    }

    #[test]
    fn secrets_are_distinct() {
        assert_ne!(new_secret(), new_secret());
        assert_eq!(new_secret().len(), "whsec_".len() + 64);
    }
}
