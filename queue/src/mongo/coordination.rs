//! Leases and settings on MongoDB, in the main database: one document each,
//! changed by single-document atomic updates.
//!
//! Lease times come from this process's clock, as on SQLite: the holders of
//! one lease are expected to run on machines whose clocks agree to well
//! within the lease's ttl.

use std::time::Duration;

use async_trait::async_trait;
use bson::{Document, doc};
use chrono::{DateTime, Utc};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};

use super::records::{from_millis, int, text};
use super::{is_duplicate_key, now_millis};
use crate::coordination::{CoordinationBackend, Setting};
use crate::queue::millis;
use crate::{QueueError, Result};

/// Rounds `put_setting` makes while concurrent writers race to create the
/// same setting (the second round always finds it created).
const UPSERT_ROUNDS: usize = 3;

#[derive(Debug)]
pub(super) struct MongoCoordination {
    leases: Collection<Document>,
    settings: Collection<Document>,
}

impl MongoCoordination {
    pub(super) fn new(db: &Database) -> Self {
        Self { leases: db.collection("leases"), settings: db.collection("settings") }
    }
}

#[async_trait]
impl CoordinationBackend for MongoCoordination {
    /// One upsert guarded by "mine, or expired": when another holder's lease
    /// is live the filter matches nothing, the upsert tries to insert a
    /// second document with the same `_id`, and the duplicate key says no.
    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = now_millis();
        let until = now.saturating_add(millis(ttl));
        let filter = doc! { "_id": name, "$or": [{ "holder": holder }, { "expires_at": { "$lte": now } }] };
        let update = doc! { "$set": { "holder": holder, "expires_at": until } };
        match self.leases.update_one(filter, update).upsert(true).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.leases.delete_one(doc! { "_id": name, "holder": holder }).await?;
        Ok(())
    }

    async fn lease_holder(&self, name: &str) -> Result<Option<(String, DateTime<Utc>)>> {
        let filter = doc! { "_id": name, "expires_at": { "$gt": now_millis() } };
        let Some(lease) = self.leases.find_one(filter).await? else {
            return Ok(None);
        };
        Ok(Some((text(&lease, "holder")?.to_owned(), from_millis(int(&lease, "expires_at")?))))
    }

    async fn setting(&self, key: &str) -> Result<Option<Setting>> {
        let Some(doc) = self.settings.find_one(doc! { "_id": key }).await? else {
            return Ok(None);
        };
        Ok(Some(Setting {
            value: text(&doc, "value")?.to_owned(),
            version: int(&doc, "version")?,
            updated_at: from_millis(int(&doc, "updated_at")?),
        }))
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<i64> {
        // `$inc` on the missing field of a new document starts it at 1.
        let update = doc! {
            "$set": { "value": value, "updated_at": now_millis() },
            "$inc": { "version": 1_i64 },
        };
        for _ in 0..UPSERT_ROUNDS {
            // Two first writes can both try to insert; the loser updates the winner's.
            match self
                .settings
                .find_one_and_update(doc! { "_id": key }, update.clone())
                .upsert(true)
                .return_document(ReturnDocument::After)
                .projection(doc! { "version": 1 })
                .await
            {
                Ok(Some(doc)) => return int(&doc, "version"),
                Ok(None) => return Err(QueueError::Corrupt(format!("setting {key:?} vanished during its upsert"))),
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(QueueError::Unavailable(format!("setting {key:?} is contended")))
    }
}
