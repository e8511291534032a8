//! Charging messages: debits that are atomic across the payers of one
//! message (a sub-account and the resellers above it) and idempotent per
//! message, and refunds that give exactly those debits back, once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tern_core::{AccountId, MessageId};

/// One account's share of a message's charge, in its own currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Debit {
    /// Account debited.
    pub account_id: AccountId,
    /// Minor units, not negative.
    pub amount: i64,
    /// ISO 4217 currency of `amount` (the account's).
    pub currency: String,
}

/// Everything one message costs: the sender's debit first, then each
/// reseller's wholesale debit up the chain, at most one debit per payer (a
/// charge naming a payer twice is refused as `Invalid`). A charge with no
/// debits records nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The message charged; the charge's idempotency key.
    pub message_id: MessageId,
    /// The debits, applied all together or not at all.
    pub debits: Vec<Debit>,
    /// When the charge is made.
    pub at: DateTime<Utc>,
}

/// What became of one [`Charge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Every debit was applied now.
    Charged,
    /// The message had been charged before (or earlier in the same call);
    /// nothing changed. Carries the debits recorded then, in no particular
    /// order, which are what a refund gives back.
    AlreadyCharged(Vec<Debit>),
    /// This account's balance plus credit limit does not cover its debit;
    /// nothing was applied.
    Insufficient {
        /// The account short of funds.
        account_id: AccountId,
    },
    /// No such account; nothing was applied.
    UnknownAccount {
        /// The missing account.
        account_id: AccountId,
    },
}
