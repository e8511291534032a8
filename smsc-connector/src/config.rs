//! `[connectors.<name>]`: one SMSC link each.

use std::collections::BTreeMap;

use serde::Deserialize;

/// How a connector binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// One transceiver bind both sends and receives.
    Transceiver,
    /// A transmitter bind sends; a separate receiver bind takes receipts and MO.
    Pair,
}

/// How a message longer than one segment is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongMessages {
    /// One `submit_sm` per segment with a concatenation UDH (8-bit reference).
    Udh,
    /// One `submit_sm` carrying the whole text in `message_payload`.
    Payload,
}

/// How a receipt's message id relates to the one in `submit_sm_resp`: some
/// SMSCs answer in hex and report in decimal or the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptIds {
    /// The same string.
    Same,
    /// The receipt has in decimal what the response had in hex.
    DecimalOfHex,
    /// The receipt has in hex what the response had in decimal.
    HexOfDecimal,
}

impl ReceiptIds {
    /// The key a `submit_sm_resp` id is stored under.
    pub fn from_response(self, id: &str) -> String {
        match self {
            Self::Same => id.to_owned(),
            Self::DecimalOfHex => u128::from_str_radix(id, 16).map_or_else(|_| id.to_owned(), |n| n.to_string()),
            Self::HexOfDecimal => id.parse::<u128>().map_or_else(|_| id.to_owned(), |n| format!("{n:x}")),
        }
    }

    /// The key a receipt's id is looked up under (case and leading zeros
    /// of converted ids do not matter).
    pub fn from_receipt(self, id: &str) -> String {
        match self {
            Self::Same => id.to_owned(),
            Self::DecimalOfHex => id.parse::<u128>().map_or_else(|_| id.to_owned(), |n| n.to_string()),
            Self::HexOfDecimal => u128::from_str_radix(id, 16).map_or_else(|_| id.to_owned(), |n| format!("{n:x}")),
        }
    }
}

/// One connector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorConfig {
    /// SMSC host.
    pub host: String,
    /// SMSC port.
    pub port: u16,
    /// `system_id` of the binds.
    pub system_id: String,
    /// `password` of the binds.
    pub password: String,
    /// `system_type` of the binds (often empty).
    pub system_type: String,
    /// Transceiver, or transmitter + receiver pairs.
    pub bind_mode: BindMode,
    /// Binds (or pairs) kept up at once.
    pub binds: usize,
    /// Outstanding `submit_sm` per bind waiting for their response.
    pub window: usize,
    /// Messages per second across all binds (segments count one each); 0 = no limit.
    pub throughput: u32,
    /// How long a request may wait for its response.
    pub response_timeout_ms: u64,
    /// Seconds between `enquire_link`s.
    pub enquire_link_secs: u64,
    /// How long a connect and bind may take.
    pub connect_timeout_ms: u64,
    /// First reconnect delay; doubles (with jitter) up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay.
    pub reconnect_max_ms: u64,
    /// UDH segments or `message_payload`.
    pub long_messages: LongMessages,
    /// Ask for delivery receipts (`registered_delivery` 1).
    pub receipts: bool,
    /// How receipt ids relate to response ids.
    pub receipt_ids: ReceiptIds,
    /// How long a receipt whose message is not known yet is kept trying
    /// (it may arrive before its `submit_sm_resp` was recorded).
    pub receipt_match_window_secs: u64,
    /// `source_addr_ton`/`npi` for alphanumeric senders.
    pub alphanumeric_ton_npi: (u8, u8),
    /// For numeric senders of up to `short_code_max_len` digits.
    pub short_code_ton_npi: (u8, u8),
    /// Longest sender treated as a short code.
    pub short_code_max_len: usize,
    /// For longer numeric senders and for destinations.
    pub international_ton_npi: (u8, u8),
    /// Queue entries claimed at once.
    pub batch_size: usize,
    /// Batches in flight.
    pub concurrency: usize,
    /// Lease of a claimed batch (extended while it is sent).
    pub lease_ms: u64,
    /// Deliveries of one message before it is given up (throttling and
    /// timeouts each cost one; a link down costs none).
    pub max_attempts: u32,
    /// First delay before a throttled (or unanswered) message is tried
    /// again; doubles per attempt, with jitter.
    pub retry_min_ms: u64,
    /// Longest delay between two tries of a throttled message.
    pub retry_max_ms: u64,
    /// How long the binds must all be down before the connector holds the
    /// `connector-down/<name>` lease, so that failover routes skip it.
    pub down_after_ms: u64,
    /// How long shutdown waits for outstanding requests before unbinding.
    pub drain_timeout_ms: u64,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 2775,
            system_id: "tern".into(),
            password: "secret".into(),
            system_type: String::new(),
            bind_mode: BindMode::Transceiver,
            binds: 1,
            window: 100,
            throughput: 0,
            response_timeout_ms: 10_000,
            enquire_link_secs: 30,
            connect_timeout_ms: 5_000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            long_messages: LongMessages::Udh,
            receipts: true,
            receipt_ids: ReceiptIds::Same,
            receipt_match_window_secs: 3_600,
            alphanumeric_ton_npi: (5, 0),
            short_code_ton_npi: (3, 0),
            short_code_max_len: 8,
            international_ton_npi: (1, 1),
            batch_size: 500,
            concurrency: 4,
            lease_ms: 60_000,
            max_attempts: 30,
            retry_min_ms: 1_000,
            retry_max_ms: 60_000,
            down_after_ms: 5_000,
            drain_timeout_ms: 10_000,
        }
    }
}

impl ConnectorConfig {
    /// Checks what serde cannot; the message names the connector and the key.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let bad = |key: &str, why: &str| Err(format!("[connectors.{name}] {key}: {why}"));
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) || name.is_empty() {
            return Err(format!("connector names are ASCII letters, digits, '_' or '-'; got {name:?}"));
        }
        if self.host.trim().is_empty() {
            return bad("host", "must not be empty");
        }
        if self.system_id.is_empty() || self.system_id.len() > 15 {
            return bad("system_id", "must be 1 to 15 characters");
        }
        if self.password.len() > 8 {
            return bad("password", "SMPP 3.4 passwords are at most 8 characters");
        }
        if self.system_type.len() > 12 {
            return bad("system_type", "must be at most 12 characters");
        }
        if self.binds == 0 {
            return bad("binds", "must be at least 1");
        }
        if self.window == 0 {
            return bad("window", "must be at least 1");
        }
        if self.response_timeout_ms == 0 || self.enquire_link_secs == 0 {
            return bad("response_timeout_ms/enquire_link_secs", "must be positive");
        }
        if self.reconnect_min_ms == 0 || self.reconnect_max_ms < self.reconnect_min_ms {
            return bad("reconnect_min_ms/reconnect_max_ms", "need 0 < min <= max");
        }
        if self.retry_min_ms == 0 || self.retry_max_ms < self.retry_min_ms {
            return bad("retry_min_ms/retry_max_ms", "need 0 < min <= max");
        }
        if self.batch_size == 0 || self.concurrency == 0 || self.max_attempts == 0 {
            return bad("batch_size/concurrency/max_attempts", "must be at least 1");
        }
        if self.lease_ms < 3 * self.response_timeout_ms {
            return bad(
                "lease_ms",
                "must be at least three response timeouts, or batches would be redelivered while sent",
            );
        }
        Ok(())
    }
}

/// `[connector]`: which connectors a `tern connector` process runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorRole {
    /// Names from `[connectors]`; empty runs them all.
    pub run: Vec<String>,
}

/// Every configured connector, by name.
pub type Connectors = BTreeMap<String, ConnectorConfig>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_mistakes_are_named() {
        assert_eq!(ConnectorConfig::default().validate("c1"), Ok(()));
        let long_password = ConnectorConfig { password: "123456789".into(), ..ConnectorConfig::default() };
        assert!(long_password.validate("c1").unwrap_err().contains("[connectors.c1] password"));
        assert!(ConnectorConfig::default().validate("a b").unwrap_err().contains("connector names"));
        let short_lease = ConnectorConfig { lease_ms: 1_000, ..ConnectorConfig::default() };
        assert!(short_lease.validate("c1").unwrap_err().contains("lease_ms"));
    }

    #[test]
    fn receipt_ids_meet_response_ids_whatever_the_base() {
        for (mode, response, receipt) in [
            (ReceiptIds::Same, "AbC1", "AbC1"),
            (ReceiptIds::DecimalOfHex, "00FF", "255"),
            (ReceiptIds::DecimalOfHex, "1a2b3c", "0001715004"),
            (ReceiptIds::HexOfDecimal, "255", "00ff"),
            (ReceiptIds::HexOfDecimal, "4096", "1000"),
        ] {
            assert_eq!(mode.from_response(response), mode.from_receipt(receipt), "{mode:?} {response} {receipt}");
        }
        assert_eq!(ReceiptIds::DecimalOfHex.from_response("not-hex"), "not-hex");
    }
}
