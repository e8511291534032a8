//! Charges, refunds and account updates on MongoDB.
//!
//! A charge moves several balances (a sub-account and the resellers above
//! it) and must happen once per message, so unlike the other account writes
//! it runs in a multi-document transaction: the ledger entries
//! (`charge:{message}:{account}`, unique `_id`) and the balance updates
//! commit together or not at all. Every balance update is guarded by the
//! balance and credit limit the transaction read, so a charge is never
//! decided on a balance that changed underneath it; a transaction that loses
//! such a race (or a write conflict, or a duplicate ledger entry from a
//! concurrent charge of the same message) is retried from the start, where
//! it reads the new state.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bson::{Bson, Document, doc};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::ClientSession;
use mongodb::error::{ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteFailure};
use mongodb::options::ReturnDocument;
use tern_core::{AccountId, MessageId};

use super::is_duplicate_key;
use super::records::{IN_CHUNK, MongoRecords, account_fields, account_from, corrupt, int, parse};
use crate::accounts::{Account, AccountUpdate};
use crate::billing::{Charge, ChargeOutcome, Debit};
use crate::{QueueError, Result};

/// Times a contended transaction is tried before giving up with `Unavailable`.
const TRANSACTION_ATTEMPTS: u32 = 20;

/// Times an unknown commit result is retried (committing again is safe).
const COMMIT_ATTEMPTS: u32 = 5;

/// MongoDB's WriteConflict: another write touched a document this transaction wrote.
const WRITE_CONFLICT: i32 = 112;

/// Ledger kinds, also the prefix of their entries' ids.
const CHARGE: &str = "charge";
const REFUND: &str = "refund";

/// Why one attempt of a transaction did not finish.
enum Abort {
    /// Another writer got there first; the whole transaction is retried.
    Retry,
    /// A failure the caller sees.
    Fail(QueueError),
}

impl From<mongodb::error::Error> for Abort {
    fn from(e: mongodb::error::Error) -> Self {
        if is_contention(&e) { Self::Retry } else { Self::Fail(e.into()) }
    }
}

impl From<QueueError> for Abort {
    fn from(e: QueueError) -> Self {
        Self::Fail(e)
    }
}

/// Whether trying the transaction again can succeed: the server said so,
/// or another transaction or write got to the same document first (a
/// duplicate ledger id is a concurrent charge or refund of the same message,
/// which the next attempt reads and reports).
fn is_contention(e: &mongodb::error::Error) -> bool {
    if e.contains_label(TRANSIENT_TRANSACTION_ERROR) || is_duplicate_key(e) {
        return true;
    }
    match &*e.kind {
        ErrorKind::Command(c) => c.code == WRITE_CONFLICT,
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == WRITE_CONFLICT,
        ErrorKind::InsertMany(m) => {
            m.write_errors.as_ref().is_some_and(|errors| errors.iter().any(|w| w.code == WRITE_CONFLICT))
        }
        _ => false,
    }
}

/// Backoff before attempt `attempt` (1-based) of a contended transaction.
fn backoff(attempt: u32) -> Duration {
    let base = 5_u64.saturating_mul(1 << attempt.min(6));
    // Jitter, so contenders that collided once do not collide again in step.
    Duration::from_millis(base + rand::random_range(0..=base))
}

fn ledger_id(kind: &str, message: MessageId, account: AccountId) -> String {
    format!("{kind}:{message}:{account}")
}

fn debit_from(doc: &Document) -> Result<Debit> {
    Ok(Debit {
        account_id: parse(doc, "account_id")?,
        // Charges are stored as negative amounts, refunds as positive ones.
        amount: int(doc, "amount")?.abs(),
        currency: doc.get_str("currency").unwrap_or_default().to_owned(),
    })
}

fn ledger_entry(kind: &str, message: MessageId, debit: &Debit, amount: i64, at: i64) -> Document {
    doc! {
        "_id": ledger_id(kind, message, debit.account_id),
        "account_id": debit.account_id.to_string(),
        "kind": kind,
        "amount": amount,
        "at": at,
        "currency": &debit.currency,
        "message_id": message.to_string(),
    }
}

/// An account as a charge sees it.
#[derive(Clone)]
struct Funds {
    balance: i64,
    credit_limit: i64,
    /// The credit limit as stored, which the balance update is guarded on.
    stored_limit: Bson,
}

/// What one transaction does. An enum rather than a closure: an async
/// closure borrowing the session is not (yet) provably `Send`, which the
/// `async_trait` futures of the backend traits must be.
enum Work<'a> {
    Charge(&'a [Charge]),
    Refund(MessageId, DateTime<Utc>),
}

/// What it did.
enum Done {
    Charged(Vec<ChargeOutcome>),
    Refunded(Vec<Debit>),
}

impl MongoRecords {
    /// Runs `work` in a transaction until it commits, retrying contention.
    async fn in_transaction(&self, work: Work<'_>) -> Result<Done> {
        let mut session = self.client.start_session().await?;
        for round in 1..=TRANSACTION_ATTEMPTS {
            if round > 1 {
                tokio::time::sleep(backoff(round)).await;
            }
            session.start_transaction().await?;
            let attempt = match &work {
                Work::Charge(charges) => self.charge_once(&mut session, charges).await.map(Done::Charged),
                Work::Refund(message, at) => self.refund_once(&mut session, *message, *at).await.map(Done::Refunded),
            };
            let done = match attempt {
                Ok(done) => done,
                Err(abort) => {
                    // Best effort: the server aborts an abandoned transaction by itself.
                    let _ = session.abort_transaction().await;
                    match abort {
                        Abort::Retry => continue,
                        Abort::Fail(e) => return Err(e),
                    }
                }
            };
            match commit(&mut session).await {
                Ok(()) => return Ok(done),
                Err(e) if is_contention(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let what = match work {
            Work::Charge(_) => "charging",
            Work::Refund(..) => "refunding",
        };
        Err(QueueError::Unavailable(format!("{what} is contended: gave up after {TRANSACTION_ATTEMPTS} attempts")))
    }

    /// See [`crate::AccountsBackend::charge`]. One transaction for the whole
    /// call: reads once, inserts the ledger entries with one `insert_many` and
    /// updates each payer's balance once, however many charges name it.
    pub(super) async fn charge_all(&self, charges: &[Charge]) -> Result<Vec<ChargeOutcome>> {
        if charges.is_empty() {
            return Ok(Vec::new());
        }
        for charge in charges {
            let mut payers = HashSet::new();
            if let Some(twice) = charge.debits.iter().find(|d| !payers.insert(d.account_id)) {
                // Its two debits would need the same ledger id; SQLite refuses it too.
                return Err(QueueError::Invalid(format!(
                    "the charge of message {} debits account {} twice",
                    charge.message_id, twice.account_id
                )));
            }
        }
        match self.in_transaction(Work::Charge(charges)).await? {
            Done::Charged(outcomes) => Ok(outcomes),
            Done::Refunded(_) => Err(QueueError::Unexpected(anyhow::anyhow!("a charge returned refunds"))),
        }
    }

    /// See [`crate::AccountsBackend::refund`]. A transaction too: the refund
    /// entries and the credits commit together, so each debit comes back once.
    pub(super) async fn refund_message(&self, message: MessageId, at: DateTime<Utc>) -> Result<Vec<Debit>> {
        match self.in_transaction(Work::Refund(message, at)).await? {
            Done::Refunded(credits) => Ok(credits),
            Done::Charged(_) => Err(QueueError::Unexpected(anyhow::anyhow!("a refund returned charges"))),
        }
    }

    /// The `kind` entries of these messages, each message's ordered by time then id.
    async fn recorded(
        &self,
        session: &mut ClientSession,
        kind: &str,
        messages: &[MessageId],
    ) -> std::result::Result<HashMap<MessageId, Vec<Debit>>, Abort> {
        let mut found: HashMap<MessageId, Vec<Debit>> = HashMap::new();
        let mut ids: Vec<String> = messages.iter().map(ToString::to_string).collect();
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(IN_CHUNK) {
            let mut cursor = self
                .ledger
                .find(doc! { "message_id": { "$in": chunk }, "kind": kind })
                .sort(doc! { "at": 1, "_id": 1 })
                .session(&mut *session)
                .await?;
            let docs: Vec<Document> = cursor.stream(&mut *session).try_collect().await?;
            for doc in &docs {
                found.entry(parse(doc, "message_id")?).or_default().push(debit_from(doc)?);
            }
        }
        Ok(found)
    }

    /// Balance and credit limit of those of `accounts` that exist.
    async fn funds(
        &self,
        session: &mut ClientSession,
        accounts: &[AccountId],
    ) -> std::result::Result<HashMap<AccountId, Funds>, Abort> {
        let mut ids: Vec<String> = accounts.iter().map(ToString::to_string).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut funds = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let mut cursor = self
                .accounts
                .find(doc! { "_id": { "$in": chunk } })
                .projection(doc! { "balance": 1, "credit_limit": 1 })
                .session(&mut *session)
                .await?;
            let docs: Vec<Document> = cursor.stream(&mut *session).try_collect().await?;
            for doc in &docs {
                // As on SQLite, an account stored without a credit limit has none.
                let stored_limit = doc.get("credit_limit").cloned().unwrap_or(Bson::Null);
                let credit_limit = if stored_limit == Bson::Null { 0 } else { int(doc, "credit_limit")? };
                let balance = int(doc, "balance")?;
                funds.insert(parse(doc, "_id")?, Funds { balance, credit_limit, stored_limit });
            }
        }
        Ok(funds)
    }

    async fn refund_once(
        &self,
        session: &mut ClientSession,
        message: MessageId,
        at: DateTime<Utc>,
    ) -> std::result::Result<Vec<Debit>, Abort> {
        let charged = self.recorded(session, CHARGE, &[message]).await?.remove(&message).unwrap_or_default();
        if charged.is_empty() {
            return Ok(Vec::new());
        }
        let refunded: HashSet<AccountId> = self
            .recorded(session, REFUND, &[message])
            .await?
            .remove(&message)
            .unwrap_or_default()
            .iter()
            .map(|d| d.account_id)
            .collect();
        let credits: Vec<Debit> = charged.into_iter().filter(|d| !refunded.contains(&d.account_id)).collect();
        if credits.is_empty() {
            return Ok(credits);
        }
        let at = at.timestamp_millis();
        let entries: Vec<Document> = credits.iter().map(|d| ledger_entry(REFUND, message, d, d.amount, at)).collect();
        self.ledger.insert_many(entries).session(&mut *session).await?;
        for credit in &credits {
            let update = doc! { "$inc": { "balance": credit.amount } };
            self.accounts
                .update_one(doc! { "_id": credit.account_id.to_string() }, update)
                .session(&mut *session)
                .await?;
        }
        Ok(credits)
    }

    async fn charge_once(
        &self,
        session: &mut ClientSession,
        charges: &[Charge],
    ) -> std::result::Result<Vec<ChargeOutcome>, Abort> {
        let messages: Vec<MessageId> = charges.iter().map(|c| c.message_id).collect();
        let mut recorded = self.recorded(session, CHARGE, &messages).await?;
        let payers: Vec<AccountId> = charges.iter().flat_map(|c| c.debits.iter().map(|d| d.account_id)).collect();
        let read = self.funds(session, &payers).await?;
        let mut funds = read.clone();
        let mut ledger = Vec::new();
        let mut outcomes = Vec::with_capacity(charges.len());
        'charges: for charge in charges {
            if let Some(debits) = recorded.get(&charge.message_id) {
                outcomes.push(ChargeOutcome::AlreadyCharged(debits.clone()));
                continue;
            }
            // Check every payer before touching any balance: all or nothing.
            let mut planned: HashMap<AccountId, i64> = HashMap::new();
            for debit in &charge.debits {
                let Some(current) = funds.get(&debit.account_id) else {
                    outcomes.push(ChargeOutcome::UnknownAccount { account_id: debit.account_id });
                    continue 'charges;
                };
                let before = planned.get(&debit.account_id).copied().unwrap_or(current.balance);
                match before.checked_sub(debit.amount) {
                    Some(after) if debit.amount >= 0 && after >= -current.credit_limit.max(0) => {
                        planned.insert(debit.account_id, after);
                    }
                    _ => {
                        outcomes.push(ChargeOutcome::Insufficient { account_id: debit.account_id });
                        continue 'charges;
                    }
                }
            }
            for (account, balance) in planned {
                if let Some(current) = funds.get_mut(&account) {
                    current.balance = balance;
                }
            }
            let at = charge.at.timestamp_millis();
            for debit in &charge.debits {
                ledger.push(ledger_entry(CHARGE, charge.message_id, debit, -debit.amount, at));
            }
            // A message charged twice in one call is charged once: the second
            // sees the first's debits, in the order a later call would.
            if !charge.debits.is_empty() {
                let mut debits = charge.debits.clone();
                debits.sort_by_key(|d| d.account_id.to_string());
                recorded.insert(charge.message_id, debits);
            }
            outcomes.push(ChargeOutcome::Charged);
        }
        for chunk in ledger.chunks(IN_CHUNK) {
            self.ledger.insert_many(chunk.to_vec()).session(&mut *session).await?;
        }
        for (account, after) in &funds {
            let Some(before) = read.get(account) else { continue };
            if after.balance == before.balance {
                continue;
            }
            // Guarded on what was read: a top-up, another charge or a new
            // credit limit since then sends the whole call round again.
            let filter = doc! {
                "_id": account.to_string(),
                "balance": before.balance,
                "credit_limit": before.stored_limit.clone(),
            };
            let update = doc! { "$inc": { "balance": after.balance - before.balance } };
            let done = self.accounts.update_one(filter, update).session(&mut *session).await?;
            if done.matched_count == 0 {
                return Err(Abort::Retry);
            }
        }
        Ok(outcomes)
    }

    /// See [`crate::AccountsBackend::update_account`]. Sets only the fields
    /// the update changes, in one atomic update, so it neither undoes a
    /// concurrent balance movement or suspension nor needs a transaction.
    pub(super) async fn update_account_fields(&self, id: AccountId, update: &AccountUpdate) -> Result<Option<Account>> {
        let filter = doc! { "_id": id.to_string() };
        let Some(stored) = self.accounts.find_one(filter.clone()).projection(account_fields()).await? else {
            return Ok(None);
        };
        let current = account_from(stored)?;
        let mut updated = current.clone();
        update.apply(&mut updated);
        let (before, after) = (settings_of(&current)?, settings_of(&updated)?);
        let mut set = Document::new();
        for (key, value) in &after {
            if before.get(key) != Some(value) {
                set.insert(key, value.clone());
            }
        }
        let mut unset = Document::new();
        for key in before.keys().filter(|k| !after.contains_key(k.as_str())) {
            unset.insert(key, "");
        }
        if set.is_empty() && unset.is_empty() {
            return Ok(Some(current));
        }
        let mut change = Document::new();
        if !set.is_empty() {
            change.insert("$set", set);
        }
        if !unset.is_empty() {
            change.insert("$unset", unset);
        }
        let changed = self
            .accounts
            .find_one_and_update(filter, change)
            .projection(account_fields())
            .return_document(ReturnDocument::After)
            .await?;
        changed.map(account_from).transpose()
    }
}

/// The account's fields as stored, without those the store maintains itself
/// (id, balance, suspension), which an update must never overwrite.
fn settings_of(account: &Account) -> Result<Document> {
    let Bson::Document(mut fields) = Bson::try_from(serde_json::to_value(account)?).map_err(corrupt)? else {
        return Err(corrupt("account did not serialise to a document"));
    };
    for maintained in ["id", "balance", "suspended"] {
        fields.remove(maintained);
    }
    Ok(fields)
}

/// Commits, retrying while the outcome is unknown (a commit is idempotent).
async fn commit(session: &mut ClientSession) -> mongodb::error::Result<()> {
    let mut attempt = 1;
    loop {
        match session.commit_transaction().await {
            Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) && attempt < COMMIT_ATTEMPTS => {
                attempt += 1;
            }
            other => return other,
        }
    }
}
