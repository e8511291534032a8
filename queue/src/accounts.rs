//! The accounts contract: customer accounts, their API keys, balances and
//! the idempotency records of their requests.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tern_core::{AccountId, MessageId, PricePlan};

use crate::Result;
use crate::billing::{Charge, ChargeOutcome, Debit};

/// A customer: an enterprise, a reseller, or a reseller's sub-account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// Display name.
    pub name: String,
    /// The reseller it belongs to, if any.
    pub parent_id: Option<AccountId>,
    /// ISO 4217 currency of its balance and prices.
    pub currency: String,
    /// Balance in minor units (maintained by the store; ignored on create).
    pub balance: i64,
    /// How far below zero the balance may go, in minor units.
    pub credit_limit: i64,
    /// What a segment costs it.
    pub price_plan: Option<PricePlan>,
    /// Its rate limits.
    pub limits: RateLimits,
    /// Where status callbacks go when a message names none.
    pub callback_url: Option<String>,
    /// Where inbound messages (replies) attributed to it are forwarded.
    #[serde(default)]
    pub inbound_url: Option<String>,
    /// Key of the HMAC-SHA256 signature on its callbacks and inbound webhooks.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// A suspended account can neither send nor read.
    pub suspended: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Per-account rate limits, enforced by the submission role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    /// API requests per second.
    pub requests_per_second: u32,
    /// Messages accepted per second (a batch of 1,000 counts 1,000).
    pub messages_per_second: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { requests_per_second: 200, messages_per_second: 10_000 }
    }
}

/// An API key as stored: never the key itself, only a hash of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public part of the key, also its lookup id.
    pub id: String,
    /// The account it authenticates.
    pub account_id: AccountId,
    /// SHA-256 of the whole key, hex.
    pub secret_hash: String,
    /// A label chosen by the operator.
    pub name: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a top-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopUp {
    /// Balance after the top-up.
    pub balance: i64,
    /// Whether this reference had been applied already (nothing changed).
    pub duplicate: bool,
}

/// A request remembered under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Hash of the request (method, path, body) that first used the key.
    pub request_hash: String,
    /// What the first request decided before doing anything (ids, timestamps),
    /// so that a retry of an unfinished request redoes the same thing.
    pub plan: String,
    /// The response, once the first request finished: status and body.
    pub response: Option<(u16, String)>,
    /// When the key was first used.
    pub created_at: DateTime<Utc>,
}

/// What [`Accounts::begin_request`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The key was new (or had expired): the request goes ahead with its plan.
    Started,
    /// The key is in use; the caller compares hashes and replays or refuses.
    Existing(IdempotencyRecord),
}

/// Changes to an account's settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountUpdate {
    /// New default status-callback URL (`Some(None)` removes it).
    pub callback_url: Option<Option<String>>,
    /// New inbound webhook URL (`Some(None)` removes it).
    pub inbound_url: Option<Option<String>>,
    /// New webhook signing secret.
    pub webhook_secret: Option<String>,
    /// New price plan (`Some(None)` removes it).
    pub price_plan: Option<Option<PricePlan>>,
    /// New credit limit.
    pub credit_limit: Option<i64>,
    /// New rate limits.
    pub limits: Option<RateLimits>,
}

impl AccountUpdate {
    /// Applies the update to an account document.
    pub fn apply(&self, account: &mut Account) {
        if let Some(url) = &self.callback_url {
            account.callback_url.clone_from(url);
        }
        if let Some(url) = &self.inbound_url {
            account.inbound_url.clone_from(url);
        }
        if let Some(secret) = &self.webhook_secret {
            account.webhook_secret = Some(secret.clone());
        }
        if let Some(plan) = &self.price_plan {
            account.price_plan.clone_from(plan);
        }
        if let Some(limit) = self.credit_limit {
            account.credit_limit = limit;
        }
        if let Some(limits) = self.limits {
            account.limits = limits;
        }
    }
}

/// What one accounts backend implements. Callers use [`Accounts`].
#[async_trait]
pub trait AccountsBackend: Send + Sync + fmt::Debug + 'static {
    /// Stores a new account with a zero balance; `Invalid` if the id exists.
    async fn create_account(&self, account: &Account) -> Result<()>;
    /// One account.
    async fn account(&self, id: AccountId) -> Result<Option<Account>>;
    /// Accounts in id order after `after`; only `parent`'s children when given.
    async fn list_accounts(
        &self,
        parent: Option<AccountId>,
        after: Option<AccountId>,
        limit: usize,
    ) -> Result<Vec<Account>>;
    /// Suspends or reinstates; returns the updated account.
    async fn set_suspended(&self, id: AccountId, suspended: bool) -> Result<Option<Account>>;
    /// Adds `amount` to the balance once per `reference`; `None` if no such account.
    async fn top_up(&self, id: AccountId, amount: i64, reference: &str, at: DateTime<Utc>) -> Result<Option<TopUp>>;
    /// Changes an account's settings; returns the updated account.
    async fn update_account(&self, id: AccountId, update: &AccountUpdate) -> Result<Option<Account>>;
    /// Applies each charge atomically and at most once per message (see
    /// [`ChargeOutcome`]); one outcome per charge, in order. A debit may take
    /// a balance down to minus the account's credit limit, no further.
    async fn charge(&self, charges: &[Charge]) -> Result<Vec<ChargeOutcome>>;
    /// Gives back every debit of `message`'s charge, once: returns the credits
    /// made now (none if it was never charged or was refunded already).
    async fn refund(&self, message: MessageId, at: DateTime<Utc>) -> Result<Vec<Debit>>;
    /// Stores a key.
    async fn create_key(&self, key: &ApiKeyRecord) -> Result<()>;
    /// Looks a key up by its public id.
    async fn key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>>;
    /// An account's keys, oldest first.
    async fn list_keys(&self, account: AccountId) -> Result<Vec<ApiKeyRecord>>;
    /// Revokes a key of `account`; `false` if it has no such key.
    async fn revoke_key(&self, account: AccountId, key_id: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Records `key` as used by a request with `record`'s hash and plan, unless
    /// it is in use and younger than `expire_before` (then returns the record).
    async fn begin_request(
        &self,
        account: AccountId,
        key: &str,
        record: &IdempotencyRecord,
        expire_before: DateTime<Utc>,
    ) -> Result<Begin>;
    /// The record of `key` if it is in use and was created at or after
    /// `expire_before`; writes nothing.
    async fn find_request(
        &self,
        account: AccountId,
        key: &str,
        expire_before: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>>;
    /// Stores the response of a request begun with `key`.
    async fn finish_request(&self, account: AccountId, key: &str, status: u16, body: &str) -> Result<()>;
    /// Deletes idempotency records created before `before`; returns how many.
    async fn purge_requests(&self, before: DateTime<Utc>) -> Result<u64>;
}

/// Accounts, keys, balances and idempotency records, whatever the backend.
#[derive(Debug, Clone)]
pub struct Accounts {
    backend: Arc<dyn AccountsBackend>,
}

impl std::ops::Deref for Accounts {
    type Target = dyn AccountsBackend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl Accounts {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn AccountsBackend>) -> Self {
        Self { backend }
    }
}
