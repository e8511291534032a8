//! Accounts, keys, idempotency records and the message index on MongoDB, in
//! the main database. No multi-document transactions here: every write is one
//! atomic single-document update or an idempotent insert, ordered so that a
//! retry after a crash finishes what the crashed call started. Charges and
//! refunds, which move several balances at once, are in `billing`.

use std::future::IntoFuture;

use async_trait::async_trait;
use bson::oid::ObjectId;
use bson::{Bson, Document, doc};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use mongodb::options::ReturnDocument;
use mongodb::{Client, Collection, Database, IndexModel};
use tern_core::{AccountId, BatchId, MessageId, MessageStatus};

use super::{DUPLICATE_KEY, insert_many_write_errors, is_duplicate_key};
use crate::accounts::{Account, AccountUpdate, AccountsBackend, ApiKeyRecord, Begin, IdempotencyRecord, TopUp};
use crate::billing::{Charge, ChargeOutcome, Debit};
use crate::messages::{BatchRecord, MessageIndexBackend, MessagePage, MessageQuery, MessageRow, StatusUpdate};
use crate::{QueueError, Result};

/// Index status updates in flight at once.
pub(super) const UPDATE_CONCURRENCY: usize = 16;

/// Ids per `$in` query, so a huge request never nears the 16 MiB command limit.
pub(super) const IN_CHUNK: usize = 1_000;

/// The statuses `expirable` looks at: in flight and not yet with an SMSC.
const UNSENT: [&str; 3] = ["accepted", "scheduled", "routed"];

/// Rounds `begin_request` makes while other requests keep replacing the same expired record.
const BEGIN_ROUNDS: usize = 5;

#[derive(Debug)]
pub(super) struct MongoRecords {
    /// For the sessions of multi-document transactions (charges, refunds).
    pub(super) client: Client,
    pub(super) accounts: Collection<Document>,
    api_keys: Collection<Document>,
    pub(super) ledger: Collection<Document>,
    idempotency: Collection<Document>,
    messages: Collection<Document>,
    batches: Collection<Document>,
}

impl MongoRecords {
    pub(super) fn new(db: &Database) -> Self {
        Self {
            client: db.client().clone(),
            accounts: db.collection("accounts"),
            api_keys: db.collection("api_keys"),
            ledger: db.collection("ledger"),
            idempotency: db.collection("idempotency"),
            messages: db.collection("messages"),
            batches: db.collection("batches"),
        }
    }

    pub(super) async fn create_indexes(&self) -> Result<()> {
        let index = |keys: Document| IndexModel::builder().keys(keys).build();
        self.accounts.create_index(index(doc! { "parent_id": 1, "_id": 1 })).await?;
        self.api_keys.create_index(index(doc! { "account_id": 1, "created_at": 1 })).await?;
        self.idempotency.create_index(index(doc! { "created_at": 1 })).await?;
        // A message's charge and refund entries, in the order `AlreadyCharged` reports them.
        self.ledger.create_index(index(doc! { "message_id": 1, "kind": 1, "at": 1, "_id": 1 })).await?;
        self.messages
            .create_indexes([
                index(doc! { "account_id": 1, "_id": -1 }),
                index(doc! { "account_id": 1, "to": 1, "_id": -1 }),
                index(doc! { "batch_id": 1, "status": 1 }),
                // `expirable`: one range per in-flight status, merged in expiry order.
                index(doc! { "status": 1, "expires_at": 1 }),
            ])
            .await?;
        Ok(())
    }

    /// Writes the index rows of accepted messages; rows already there stay as
    /// they are, so an accept redone by a retry or by repair changes nothing.
    pub(super) async fn insert_message_rows(&self, rows: &[MessageRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let docs: Vec<Document> = rows.iter().map(message_document).collect();
        match self.messages.insert_many(docs).ordered(false).await {
            Ok(_) => Ok(()),
            Err(e) => match insert_many_write_errors(e)?.iter().find(|f| f.code != DUPLICATE_KEY) {
                Some(f) => Err(QueueError::Unexpected(anyhow::anyhow!("message index insert failed: {}", f.message))),
                None => Ok(()),
            },
        }
    }

    async fn balance(&self, filter: Document) -> Result<Option<i64>> {
        let found = self.accounts.find_one(filter).projection(doc! { "balance": 1 }).await?;
        found.map(|d| int(&d, "balance")).transpose()
    }
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> QueueError {
    QueueError::Corrupt(what.to_string())
}

pub(super) fn int(doc: &Document, field: &str) -> Result<i64> {
    match doc.get(field) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        other => Err(corrupt(format!("field {field} is not an integer: {other:?}"))),
    }
}

pub(super) fn opt_int(doc: &Document, field: &str) -> Result<Option<i64>> {
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(_) => int(doc, field).map(Some),
    }
}

pub(super) fn text<'a>(doc: &'a Document, field: &str) -> Result<&'a str> {
    doc.get_str(field).map_err(|e| corrupt(format!("field {field}: {e}")))
}

pub(super) fn opt_text(doc: &Document, field: &str) -> Result<Option<String>> {
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(_) => text(doc, field).map(|s| Some(s.to_owned())),
    }
}

pub(super) fn parse<T: std::str::FromStr>(doc: &Document, field: &str) -> Result<T> {
    let value = text(doc, field)?;
    value.parse().map_err(|_| corrupt(format!("stored {field} {value:?} does not parse")))
}

pub(super) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The account as stored: its own fields (through JSON, as the journal does,
/// so new fields are stored without changes here) under `_id` = its id.
pub(super) fn account_document(account: &Account) -> Result<Document> {
    let Bson::Document(fields) = Bson::try_from(serde_json::to_value(account)?).map_err(corrupt)? else {
        return Err(corrupt("account did not serialise to a document"));
    };
    let mut doc = doc! { "_id": account.id.to_string() };
    doc.extend(fields.into_iter().filter(|(k, _)| k != "id"));
    // The store's own fields, as on SQLite: $inc needs an Int64 balance, and
    // `applied_refs` makes each top-up reference count once (see `top_up`).
    doc.insert("balance", 0_i64);
    doc.insert("suspended", false);
    doc.insert("applied_refs", Bson::Array(Vec::new()));
    Ok(doc)
}

/// Every account field but the (growing) list of applied top-up references.
pub(super) fn account_fields() -> Document {
    doc! { "applied_refs": 0 }
}

pub(super) fn account_from(mut doc: Document) -> Result<Account> {
    let id = doc.remove("_id").ok_or_else(|| corrupt("account without an id"))?;
    doc.remove("applied_refs");
    doc.insert("id", id);
    Ok(serde_json::from_value(Bson::Document(doc).into_relaxed_extjson())?)
}

fn key_document(key: &ApiKeyRecord) -> Document {
    doc! {
        "_id": &key.id,
        "account_id": key.account_id.to_string(),
        "secret_hash": &key.secret_hash,
        "name": key.name.as_deref(),
        "created_at": key.created_at.timestamp_millis(),
        "revoked_at": key.revoked_at.map(|at| at.timestamp_millis()),
    }
}

fn key_from(doc: &Document) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: text(doc, "_id")?.to_owned(),
        account_id: parse(doc, "account_id")?,
        secret_hash: text(doc, "secret_hash")?.to_owned(),
        name: opt_text(doc, "name")?,
        created_at: from_millis(int(doc, "created_at")?),
        revoked_at: opt_int(doc, "revoked_at")?.map(from_millis),
    })
}

fn request_id(account: AccountId, key: &str) -> String {
    // Account ids are UUIDs, so the first '/' ends the account part.
    format!("{account}/{key}")
}

fn request_from(doc: &Document) -> Result<IdempotencyRecord> {
    let response = match (opt_int(doc, "status")?, opt_text(doc, "body")?) {
        (Some(status), Some(body)) => Some((u16::try_from(status).unwrap_or(500), body)),
        _ => None,
    };
    Ok(IdempotencyRecord {
        request_hash: text(doc, "request_hash")?.to_owned(),
        plan: text(doc, "plan")?.to_owned(),
        response,
        created_at: from_millis(int(doc, "created_at")?),
    })
}

fn message_document(row: &MessageRow) -> Document {
    doc! {
        "_id": row.message_id.to_string(),
        "account_id": row.account_id.to_string(),
        "batch_id": row.batch_id.map(|b| b.to_string()),
        "to": &row.to,
        "client_ref": row.client_ref.as_deref(),
        "status": row.status.as_str(),
        "created_at": row.created_at.timestamp_millis(),
        "updated_at": row.updated_at.timestamp_millis(),
        "expires_at": row.expires_at.map(|at| at.timestamp_millis()),
    }
}

pub(super) fn status_from(value: &str) -> Result<MessageStatus> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| corrupt(format!("stored status {value:?} is unknown")))
}

pub(super) fn message_from(doc: &Document) -> Result<MessageRow> {
    Ok(MessageRow {
        message_id: parse(doc, "_id")?,
        account_id: parse(doc, "account_id")?,
        batch_id: match doc.get("batch_id") {
            None | Some(Bson::Null) => None,
            Some(_) => Some(parse(doc, "batch_id")?),
        },
        to: text(doc, "to")?.to_owned(),
        client_ref: opt_text(doc, "client_ref")?,
        status: status_from(text(doc, "status")?)?,
        created_at: from_millis(int(doc, "created_at")?),
        updated_at: from_millis(int(doc, "updated_at")?),
        expires_at: opt_int(doc, "expires_at")?.map(from_millis),
    })
}

fn batch_from(doc: &Document) -> Result<BatchRecord> {
    let n = |field: &str| -> Result<u64> { Ok(u64::try_from(int(doc, field)?).unwrap_or(0)) };
    Ok(BatchRecord {
        batch_id: parse(doc, "_id")?,
        account_id: parse(doc, "account_id")?,
        recipients: n("recipients")?,
        accepted: n("accepted")?,
        invalid: n("invalid")?,
        created_at: from_millis(int(doc, "created_at")?),
    })
}

#[async_trait]
impl AccountsBackend for MongoRecords {
    async fn create_account(&self, account: &Account) -> Result<()> {
        match self.accounts.insert_one(account_document(account)?).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => {
                Err(QueueError::Invalid(format!("account {} exists already", account.id)))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>> {
        let found = self.accounts.find_one(doc! { "_id": id.to_string() }).projection(account_fields()).await?;
        found.map(account_from).transpose()
    }

    async fn list_accounts(
        &self,
        parent: Option<AccountId>,
        after: Option<AccountId>,
        limit_to: usize,
    ) -> Result<Vec<Account>> {
        // A limit of 0 means "no limit" to MongoDB.
        if limit_to == 0 {
            return Ok(Vec::new());
        }
        let mut filter = Document::new();
        if let Some(parent) = parent {
            filter.insert("parent_id", parent.to_string());
        }
        if let Some(after) = after {
            filter.insert("_id", doc! { "$gt": after.to_string() });
        }
        let docs: Vec<Document> = self
            .accounts
            .find(filter)
            .projection(account_fields())
            .sort(doc! { "_id": 1 })
            .limit(limit(limit_to))
            .await?
            .try_collect()
            .await?;
        docs.into_iter().map(account_from).collect()
    }

    async fn set_suspended(&self, id: AccountId, suspended: bool) -> Result<Option<Account>> {
        let updated = self
            .accounts
            .find_one_and_update(doc! { "_id": id.to_string() }, doc! { "$set": { "suspended": suspended } })
            .projection(account_fields())
            .return_document(ReturnDocument::After)
            .await?;
        updated.map(account_from).transpose()
    }

    /// The ledger entry claims the reference (unique across accounts, as on
    /// SQLite); the credit itself is one guarded update that also records the
    /// reference on the account, so it happens once whatever crashes between
    /// the two writes: a retry with the same reference finds the ledger entry
    /// and lets the guarded update decide.
    async fn top_up(&self, id: AccountId, amount: i64, reference: &str, at: DateTime<Utc>) -> Result<Option<TopUp>> {
        let account = id.to_string();
        let Some(current) = self.balance(doc! { "_id": &account }).await? else {
            return Ok(None);
        };
        let entry = doc! {
            "_id": reference,
            "account_id": &account,
            "kind": "top_up",
            "amount": amount,
            "at": at.timestamp_millis(),
        };
        let claimed = match self.ledger.insert_one(entry).await {
            Ok(_) => true,
            Err(e) if is_duplicate_key(&e) => {
                let owner = self.ledger.find_one(doc! { "_id": reference }).await?;
                if owner.as_ref().and_then(|d| d.get_str("account_id").ok()) != Some(account.as_str()) {
                    return Ok(Some(TopUp { balance: current, duplicate: true }));
                }
                false
            }
            Err(e) => return Err(e.into()),
        };
        let headroom = if amount >= 0 {
            doc! { "$lte": i64::MAX.saturating_sub(amount) }
        } else {
            doc! { "$gte": i64::MIN.saturating_sub(amount) }
        };
        let credited = self
            .accounts
            .find_one_and_update(
                doc! { "_id": &account, "applied_refs": { "$ne": reference }, "balance": headroom },
                doc! { "$inc": { "balance": amount }, "$push": { "applied_refs": reference } },
            )
            .projection(doc! { "balance": 1 })
            .return_document(ReturnDocument::After)
            .await?;
        if let Some(credited) = credited {
            return Ok(Some(TopUp { balance: int(&credited, "balance")?, duplicate: false }));
        }
        if let Some(balance) = self.balance(doc! { "_id": &account, "applied_refs": reference }).await? {
            return Ok(Some(TopUp { balance, duplicate: true }));
        }
        // Refused for the overflow: release the reference, as SQLite's rollback would.
        if claimed {
            self.ledger.delete_one(doc! { "_id": reference, "account_id": &account }).await?;
        }
        Err(QueueError::Invalid(format!("a top-up of {amount} would overflow the balance")))
    }

    async fn create_key(&self, key: &ApiKeyRecord) -> Result<()> {
        match self.api_keys.insert_one(key_document(key)).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(QueueError::Invalid(format!("API key {} exists already", key.id))),
            Err(e) => Err(e.into()),
        }
    }

    async fn key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        self.api_keys.find_one(doc! { "_id": key_id }).await?.as_ref().map(key_from).transpose()
    }

    async fn list_keys(&self, account: AccountId) -> Result<Vec<ApiKeyRecord>> {
        let docs: Vec<Document> = self
            .api_keys
            .find(doc! { "account_id": account.to_string() })
            .sort(doc! { "created_at": 1, "_id": 1 })
            .await?
            .try_collect()
            .await?;
        docs.iter().map(key_from).collect()
    }

    async fn revoke_key(&self, account: AccountId, key_id: &str, at: DateTime<Utc>) -> Result<bool> {
        let filter = doc! { "_id": key_id, "account_id": account.to_string() };
        let mut unrevoked = filter.clone();
        unrevoked.insert("revoked_at", Bson::Null);
        let revoked =
            self.api_keys.update_one(unrevoked, doc! { "$set": { "revoked_at": at.timestamp_millis() } }).await?;
        if revoked.matched_count > 0 {
            return Ok(true);
        }
        // Revoked before: the first time stays.
        Ok(self.api_keys.find_one(filter).projection(doc! { "_id": 1 }).await?.is_some())
    }

    async fn begin_request(
        &self,
        account: AccountId,
        key: &str,
        record: &IdempotencyRecord,
        expire_before: DateTime<Utc>,
    ) -> Result<Begin> {
        let id = request_id(account, key);
        // `rev` identifies this write, so replacing an expired record can be
        // guarded on exactly the record that was read.
        let fresh = doc! {
            "_id": &id,
            "account_id": account.to_string(),
            "key": key,
            "request_hash": &record.request_hash,
            "plan": &record.plan,
            "created_at": record.created_at.timestamp_millis(),
            "rev": ObjectId::new(),
        };
        for _ in 0..BEGIN_ROUNDS {
            match self.idempotency.insert_one(fresh.clone()).await {
                Ok(_) => return Ok(Begin::Started),
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(e.into()),
            }
            // Purged since the insert failed: try the insert again.
            let Some(existing) = self.idempotency.find_one(doc! { "_id": &id }).await? else {
                continue;
            };
            if int(&existing, "created_at")? >= expire_before.timestamp_millis() {
                return Ok(Begin::Existing(request_from(&existing)?));
            }
            let guard = doc! { "_id": &id, "rev": existing.get("rev").cloned().unwrap_or(Bson::Null) };
            if self.idempotency.replace_one(guard, fresh.clone()).await?.matched_count > 0 {
                return Ok(Begin::Started);
            }
        }
        Err(QueueError::Unavailable(format!("idempotency key {key:?} of account {account} is contended")))
    }

    async fn find_request(
        &self,
        account: AccountId,
        key: &str,
        expire_before: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>> {
        let filter = doc! {
            "_id": request_id(account, key),
            "created_at": { "$gte": expire_before.timestamp_millis() },
        };
        self.idempotency.find_one(filter).await?.as_ref().map(request_from).transpose()
    }

    async fn finish_request(&self, account: AccountId, key: &str, status: u16, body: &str) -> Result<()> {
        let update = doc! { "$set": { "status": i32::from(status), "body": body } };
        self.idempotency.update_one(doc! { "_id": request_id(account, key) }, update).await?;
        Ok(())
    }

    async fn purge_requests(&self, before: DateTime<Utc>) -> Result<u64> {
        let filter = doc! { "created_at": { "$lt": before.timestamp_millis() } };
        Ok(self.idempotency.delete_many(filter).await?.deleted_count)
    }

    async fn update_account(&self, id: AccountId, update: &AccountUpdate) -> Result<Option<Account>> {
        self.update_account_fields(id, update).await
    }

    async fn charge(&self, charges: &[Charge]) -> Result<Vec<ChargeOutcome>> {
        self.charge_all(charges).await
    }

    async fn refund(&self, message: MessageId, at: DateTime<Utc>) -> Result<Vec<Debit>> {
        self.refund_message(message, at).await
    }
}

#[async_trait]
impl MessageIndexBackend for MongoRecords {
    /// An update older than the row's status is skipped: two stages
    /// recording at once may write their folds in either order, and the fold
    /// of more events is never older. A stage's updates mostly share a status
    /// and an instant (one batch, one clock reading): one `update_many` per
    /// such group instead of one round trip per message.
    async fn update_statuses(&self, updates: &[StatusUpdate]) -> Result<()> {
        let mut groups: std::collections::BTreeMap<(String, i64, u32), Vec<String>> = Default::default();
        for u in updates {
            let key = (u.status.as_str().to_owned(), u.at.timestamp_millis(), u.events);
            groups.entry(key).or_default().push(u.message_id.to_string());
        }
        let updates: Vec<(Document, Document)> = groups
            .into_iter()
            .map(|((status, at, events), ids)| {
                // Older, or as old and folding no more events; a row written
                // at accept has no count yet, which `$not` matches. The `$or`
                // sits inside an `$and`: beside a top-level `$or` the
                // stand-in's planner leaves the `_id` index unused and scans
                // (25 ms at 20k messages instead of 1).
                let newer = doc! { "$or": [
                    { "updated_at": { "$lt": at } },
                    { "updated_at": at, "events": { "$not": { "$gt": i64::from(events) } } },
                ] };
                let filter = doc! { "$and": [ { "_id": { "$in": ids } }, newer ] };
                (filter, doc! { "$set": { "status": status, "updated_at": at, "events": i64::from(events) } })
            })
            .collect();
        futures::stream::iter(updates)
            .map(|(filter, update)| self.messages.update_many(filter, update).into_future())
            .buffer_unordered(UPDATE_CONCURRENCY)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        Ok(())
    }

    /// Every filter has an index here, so pages are always full until the last.
    async fn list(&self, q: &MessageQuery) -> Result<MessagePage> {
        if q.limit == 0 {
            return Ok(MessagePage::default());
        }
        let mut filter = doc! { "account_id": q.account_id.to_string() };
        if let Some(status) = q.status {
            filter.insert("status", status.as_str());
        }
        if let Some(to) = &q.to {
            filter.insert("to", to.as_str());
        }
        if let Some(batch) = q.batch_id {
            filter.insert("batch_id", batch.to_string());
        }
        let (mut id, mut created) = (Document::new(), Document::new());
        // Ids are UUIDv7: bounding the id by time lets the account index do the range.
        if let Some(since) = q.since {
            // A second of margin: an id is made a moment before its accept time, checked exactly below.
            id.insert("$gte", MessageId::lower_bound(since - chrono::TimeDelta::seconds(1)).to_string());
            created.insert("$gte", since.timestamp_millis());
        }
        if let Some(until) = q.until {
            created.insert("$lt", until.timestamp_millis());
        }
        if let Some(before) = q.before {
            id.insert("$lt", before.to_string());
        }
        if !id.is_empty() {
            filter.insert("_id", id);
        }
        if !created.is_empty() {
            filter.insert("created_at", created);
        }
        let docs: Vec<Document> =
            self.messages.find(filter).sort(doc! { "_id": -1 }).limit(limit(q.limit)).await?.try_collect().await?;
        let rows = docs.iter().map(message_from).collect::<Result<Vec<_>>>()?;
        let next = if rows.len() == q.limit { rows.last().map(|r| r.message_id) } else { None };
        Ok(MessagePage { rows, next })
    }

    async fn get(&self, account_id: AccountId, message_id: MessageId) -> Result<Option<MessageRow>> {
        let filter = doc! { "_id": message_id.to_string(), "account_id": account_id.to_string() };
        self.messages.find_one(filter).await?.as_ref().map(message_from).transpose()
    }

    async fn put_batch(&self, batch: &BatchRecord) -> Result<()> {
        let record = doc! {
            "_id": batch.batch_id.to_string(),
            "account_id": batch.account_id.to_string(),
            "recipients": count(batch.recipients),
            "accepted": count(batch.accepted),
            "invalid": count(batch.invalid),
            "created_at": batch.created_at.timestamp_millis(),
        };
        match self.batches.insert_one(record).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn batch(&self, batch_id: BatchId) -> Result<Option<BatchRecord>> {
        self.batches.find_one(doc! { "_id": batch_id.to_string() }).await?.as_ref().map(batch_from).transpose()
    }

    async fn batch_counts(&self, batch_id: BatchId) -> Result<Vec<(MessageStatus, u64)>> {
        let pipeline = [
            doc! { "$match": { "batch_id": batch_id.to_string() } },
            doc! { "$group": { "_id": "$status", "n": { "$sum": 1 } } },
            doc! { "$sort": { "_id": 1 } },
        ];
        let groups: Vec<Document> = self.messages.aggregate(pipeline).await?.try_collect().await?;
        groups.iter().map(|g| Ok((status_from(text(g, "_id")?)?, u64::try_from(int(g, "n")?).unwrap_or(0)))).collect()
    }

    async fn statuses(&self, messages: &[(AccountId, MessageId)]) -> Result<Vec<(MessageId, MessageStatus)>> {
        let mut found = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(IN_CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|(_, m)| m.to_string()).collect();
            let docs: Vec<Document> = self
                .messages
                .find(doc! { "_id": { "$in": ids } })
                .projection(doc! { "account_id": 1, "status": 1 })
                .await?
                .try_collect()
                .await?;
            // The owner is checked here rather than in the filter: one `$in` on
            // the primary key instead of an `$or` of pairs.
            let asked: std::collections::HashSet<(String, String)> =
                chunk.iter().map(|(a, m)| (a.to_string(), m.to_string())).collect();
            for doc in &docs {
                let key = (text(doc, "account_id")?.to_owned(), text(doc, "_id")?.to_owned());
                if asked.contains(&key) {
                    found.push((parse(doc, "_id")?, status_from(text(doc, "status")?)?));
                }
            }
        }
        Ok(found)
    }

    async fn expirable(
        &self,
        due: DateTime<Utc>,
        submitted_due: DateTime<Utc>,
        limit_to: usize,
    ) -> Result<Vec<MessageRow>> {
        // A limit of 0 means "no limit" to MongoDB.
        if limit_to == 0 {
            return Ok(Vec::new());
        }
        // One equality range per status, merged here: an `$or` of ranges
        // sorted together costs the stand-in a scan (30× slower at 10k
        // messages), and on MongoDB it is at best the same merge.
        let ranges = UNSENT.iter().map(|&status| (status, due)).chain([("submitted", submitted_due)]);
        let reads = ranges.map(|(status, until)| async move {
            let docs: Vec<Document> = self
                .messages
                .find(doc! { "status": status, "expires_at": { "$lte": until.timestamp_millis() } })
                .sort(doc! { "expires_at": 1, "_id": 1 })
                .limit(limit(limit_to))
                .await?
                .try_collect()
                .await?;
            Ok::<_, QueueError>(docs)
        });
        let mut rows = Vec::new();
        for docs in futures::future::try_join_all(reads).await? {
            for doc in &docs {
                rows.push(message_from(doc)?);
            }
        }
        rows.sort_by_key(|row| (row.expires_at, row.message_id));
        rows.truncate(limit_to);
        Ok(rows)
    }
}
