//! What the simulator does: credentials, receipt timing and outcomes, and
//! the faults it injects. Every field has a default, so a config file only
//! names what it changes.

use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The simulator's behaviour; see each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free one (tests).
    pub listen: SocketAddr,
    /// Who may bind.
    pub accounts: Vec<SimAccount>,
    /// A receipt comes after a uniformly random delay in `[min, max]` ms.
    pub receipt_delay_ms: (u64, u64),
    /// What receipts report, by weight.
    pub outcomes: Outcomes,
    /// Where a receipt carries its facts.
    pub receipts_as: ReceiptForm,
    /// Share of delivered messages the handset answers with an MO.
    pub mo_share: f64,
    /// The text of those answers.
    pub mo_text: String,
    /// Share of `submit_sm` answered `ESME_RTHROTTLED` (0x58).
    pub throttle_share: f64,
    /// Share of `submit_sm` answered `ESME_RINVDSTADR` (0x0B), a permanent error.
    pub reject_share: f64,
    /// Share of `submit_sm` whose response waits `slow_ms`.
    pub slow_share: f64,
    /// How long a slow response waits, in ms.
    pub slow_ms: u64,
    /// Share of `submit_sm` accepted (id assigned, receipt to follow) whose
    /// response is never sent: a lost `submit_sm_resp`.
    pub drop_response_share: f64,
    /// Close the link (no unbind) on every N-th `submit_sm` received on it,
    /// before answering it.
    pub disconnect_every: Option<u64>,
    /// Send the receipt with no delay, and on a transceiver before the
    /// `submit_sm_resp` (unless its window is full). A transmitter's
    /// receipt goes over another link, where no order between the two holds.
    pub receipt_before_response: bool,
    /// How message ids look.
    pub message_ids: MessageIdForm,
    /// Most `deliver_sm` kept outstanding per bind, waiting for their resp.
    pub window: usize,
    /// A `deliver_sm` unanswered this long (ms) is sent again later.
    pub deliver_timeout_ms: u64,
    /// How long (ms) a refused or timed-out `deliver_sm` waits before it is
    /// sent again.
    pub redeliver_after_ms: u64,
    /// Most receipts and MOs kept for a system_id while none of its binds
    /// can receive them; beyond that they are dropped and counted.
    pub max_stored: usize,
    /// Most accepted messages remembered for [`SimHandle::submitted`]
    /// (duplicates are counted beyond it all the same).
    ///
    /// [`SimHandle::submitted`]: super::SimHandle::submitted
    pub max_recorded: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 2775)),
            accounts: vec![SimAccount::default()],
            receipt_delay_ms: (10, 50),
            outcomes: Outcomes::default(),
            receipts_as: ReceiptForm::default(),
            mo_share: 0.0,
            mo_text: "Thanks!".to_owned(),
            throttle_share: 0.0,
            reject_share: 0.0,
            slow_share: 0.0,
            slow_ms: 0,
            drop_response_share: 0.0,
            disconnect_every: None,
            receipt_before_response: false,
            message_ids: MessageIdForm::default(),
            window: 100,
            deliver_timeout_ms: 10_000,
            redeliver_after_ms: 1_000,
            max_stored: 1_000_000,
            max_recorded: 1_000_000,
        }
    }
}

/// Credentials a client may bind with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimAccount {
    /// `system_id`.
    pub system_id: String,
    /// `password`.
    pub password: String,
}

impl Default for SimAccount {
    fn default() -> Self {
        Self { system_id: "tern".to_owned(), password: "secret".to_owned() }
    }
}

/// Relative weights of what receipts report; they need not sum to 1. A
/// weight a config leaves out is 0, so `{ delivered = 1 }` means all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcomes {
    /// `DELIVRD`.
    #[serde(default)]
    pub delivered: f64,
    /// `UNDELIV`.
    #[serde(default)]
    pub undeliverable: f64,
    /// `EXPIRED`.
    #[serde(default)]
    pub expired: f64,
}

impl Default for Outcomes {
    fn default() -> Self {
        Self { delivered: 0.9, undeliverable: 0.07, expired: 0.03 }
    }
}

impl Outcomes {
    /// Every receipt reports the message delivered.
    pub fn all_delivered() -> Self {
        Self { delivered: 1.0, undeliverable: 0.0, expired: 0.0 }
    }
}

/// Where a receipt carries its facts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptForm {
    /// The `receipted_message_id`/`message_state` TLVs and the text.
    #[default]
    Both,
    /// Only the Appendix B text in `short_message`, as many SMSCs do.
    TextOnly,
    /// Only the TLVs; `short_message` is empty.
    TlvOnly,
}

/// How message ids look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageIdForm {
    /// Ten lower-case hex digits, like `5f3c1a0b9e`.
    #[default]
    Hex,
    /// Decimal digits.
    Decimal,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_config_names_only_what_it_changes() {
        let config: SimConfig = serde_json::from_str(
            r#"{"listen": "127.0.0.1:0", "receipt_delay_ms": [0, 5], "outcomes": {"delivered": 1.0},
                "receipts_as": "text_only", "message_ids": "decimal", "disconnect_every": 7}"#,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.receipt_delay_ms, (0, 5));
        assert_eq!(config.outcomes.delivered, 1.0);
        assert_eq!(config.outcomes.undeliverable, 0.0, "a weight left out is 0");
        assert_eq!(SimConfig::default().outcomes.undeliverable, 0.07);
        assert_eq!(config.receipts_as, ReceiptForm::TextOnly);
        assert_eq!(config.message_ids, MessageIdForm::Decimal);
        assert_eq!(config.disconnect_every, Some(7));
        assert_eq!(config.accounts, vec![SimAccount::default()]);
        assert!(serde_json::from_str::<SimConfig>(r#"{"windw": 3}"#).is_err(), "a typo is an error");
    }
}
