//! Accepting messages on MongoDB without multi-document transactions: an
//! intent log.
//!
//! 1. One document records the whole accept (its events, topic and queue
//!    entries) — a single-document write is atomic and, with `w: majority,
//!    j: true`, durable.
//! 2. The events are appended to the journal, the messages written to the
//!    message index, the entries published to the queue (all idempotent),
//!    and the accept is acknowledged.
//! 3. The intent is deleted.
//!
//! A crash after step 1 leaves the intent behind; [`AcceptBackend::repair`]
//! (run periodically) redoes steps 2 and 3 for intents older than the settle
//! window, publishing only the entries no queue deployment holds. The window
//! keeps repair away from accepts still in flight, which could otherwise put
//! an entry on two different deployments.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::{Collection, Database, IndexModel};
use tern_core::Event;

use super::journal::MongoJournal;
use super::now_millis;
use super::queue::MongoQueue;
use super::records::MongoRecords;
use crate::queue::millis;
use crate::{AcceptBackend, JournalBackend, MessageRow, NewEntry, QueueBackend, QueueError, Result};

/// MongoDB documents are limited to 16 MiB; leave room for the envelope.
const MAX_INTENT_BYTES: usize = 12 * 1024 * 1024;

/// Intents repaired per pass.
const REPAIR_BATCH: i64 = 100;

/// The document recording one accept; checked against MongoDB's size limit.
fn intent_document(events: &[Event], topic: &str, entries: &[NewEntry], created_at: i64) -> Result<Document> {
    let intent_entries: Vec<Document> = entries
        .iter()
        .map(|e| {
            let mut d = doc! {
                "id": &e.id,
                "payload": Binary { subtype: BinarySubtype::Generic, bytes: e.payload.clone() },
            };
            if let Some(at) = e.not_before {
                d.insert("not_before", at.timestamp_millis());
            }
            d
        })
        .collect();
    let intent = doc! {
        "created_at": created_at,
        "topic": topic,
        "events": serde_json::to_string(events)?,
        "entries": intent_entries,
    };
    let size = bson::to_vec(&intent).map_err(|e| QueueError::Corrupt(e.to_string()))?.len();
    if size > MAX_INTENT_BYTES {
        return Err(QueueError::Invalid(format!(
            "an accept of {size} bytes exceeds the {MAX_INTENT_BYTES}-byte limit; accept in smaller batches"
        )));
    }
    Ok(intent)
}

#[derive(Debug)]
pub(super) struct MongoAccept {
    intents: Collection<Document>,
    quarantine: Collection<Document>,
    journal: Arc<MongoJournal>,
    queue: Arc<MongoQueue>,
    records: Arc<MongoRecords>,
    settle: Duration,
}

impl MongoAccept {
    pub(super) fn new(
        db: &Database,
        journal: Arc<MongoJournal>,
        queue: Arc<MongoQueue>,
        records: Arc<MongoRecords>,
        settle: Duration,
    ) -> Self {
        Self {
            intents: db.collection("accept_intents"),
            quarantine: db.collection("accept_intents_quarantine"),
            journal,
            queue,
            records,
            settle,
        }
    }

    pub(super) async fn create_indexes(&self) -> Result<()> {
        self.intents.create_index(IndexModel::builder().keys(doc! { "created_at": 1 }).build()).await?;
        Ok(())
    }

    async fn complete(&self, events: &[Event], topic: &str, entries: Vec<NewEntry>) -> Result<()> {
        self.journal.append(events).await?;
        self.records.insert_message_rows(&MessageRow::from_accept(events)).await?;
        self.queue.publish(topic, entries).await?;
        Ok(())
    }

    async fn repair_intent(&self, intent: &Document) -> Result<usize> {
        let corrupt = |e: bson::document::ValueAccessError| QueueError::Corrupt(format!("accept intent: {e}"));
        let topic = intent.get_str("topic").map_err(corrupt)?;
        let events: Vec<Event> = serde_json::from_str(intent.get_str("events").map_err(corrupt)?)?;
        let mut entries = Vec::new();
        for entry in intent.get_array("entries").map_err(corrupt)? {
            let Bson::Document(entry) = entry else {
                return Err(QueueError::Corrupt("accept intent entry is not a document".into()));
            };
            let payload = match entry.get("payload") {
                Some(Bson::Binary(b)) => b.bytes.clone(),
                _ => return Err(QueueError::Corrupt("accept intent entry without payload".into())),
            };
            let not_before = match entry.get("not_before") {
                Some(Bson::Int64(ms)) => chrono::DateTime::from_timestamp_millis(*ms),
                _ => None,
            };
            entries.push(NewEntry { id: entry.get_str("id").map_err(corrupt)?.to_owned(), payload, not_before });
        }
        self.journal.append(&events).await?;
        // Before publishing: a stage may record a status as soon as the entry is claimable.
        self.records.insert_message_rows(&MessageRow::from_accept(&events)).await?;
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        let present = self.queue.existing(topic, &ids).await?;
        entries.retain(|e| !present.contains(&e.id));
        let published = entries.len();
        if !entries.is_empty() {
            self.queue.publish(topic, entries).await?;
        }
        Ok(published)
    }
}

#[async_trait]
impl AcceptBackend for MongoAccept {
    async fn accept(&self, events: &[Event], topic: &str, entries: Vec<NewEntry>) -> Result<()> {
        let intent = intent_document(events, topic, &entries, now_millis())?;
        let id = self.intents.insert_one(intent).await?.inserted_id;
        self.complete(events, topic, entries).await?;
        // Best effort: a leftover intent is only re-checked by repair, which finds nothing to do.
        if let Err(e) = self.intents.delete_one(doc! { "_id": id }).await {
            tracing::warn!(error = %e, "could not delete a completed accept intent; repair will clear it");
        }
        Ok(())
    }

    async fn repair(&self) -> Result<usize> {
        let cutoff = now_millis().saturating_sub(millis(self.settle));
        let mut repaired = 0;
        loop {
            let intents: Vec<Document> = self
                .intents
                .find(doc! { "created_at": { "$lt": cutoff } })
                .sort(doc! { "created_at": 1 })
                .limit(REPAIR_BATCH)
                .await?
                .try_collect()
                .await?;
            for intent in &intents {
                match self.repair_intent(intent).await {
                    Ok(published) => repaired += published,
                    // The store is down: the next pass tries again.
                    Err(e) if e.is_transient() => return Err(e),
                    // An intent that cannot be read must not block the ones
                    // after it: set it aside for an operator, loudly.
                    Err(e) => {
                        tracing::error!(error = %e, intent = ?intent.get("_id"), "accept intent quarantined");
                        self.quarantine.insert_one(intent.clone()).await?;
                    }
                }
                if let Some(id) = intent.get("_id") {
                    self.intents.delete_one(doc! { "_id": id.clone() }).await?;
                }
            }
            if (intents.len() as i64) < REPAIR_BATCH {
                return Ok(repaired);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tern_core::{AccountId, EventKind, MessageId, MessageStatus};

    use super::*;
    use crate::{MessageIndexBackend, MongoConfig, QueueBackend};

    /// A store on a fresh database of the test deployment.
    async fn fresh_store(outbox_settle_ms: u64) -> super::super::MongoStore {
        let uri = std::env::var("TERN_TEST_MONGODB_URI")
            .expect("TERN_TEST_MONGODB_URI is not set: run the suite through scripts/test.sh");
        let database = format!("t_{}", uuid::Uuid::new_v4().simple());
        let config = MongoConfig { outbox_settle_ms, ..MongoConfig::new(uri, database) };
        super::super::MongoStore::connect(&config).await.unwrap()
    }

    /// An accept interrupted after its intent was written (the events made it
    /// to the journal, one of two entries to the queue) is finished by repair,
    /// once it is older than the settle window, without duplicating anything.
    #[tokio::test]
    async fn repair_finishes_an_interrupted_accept_exactly_once() {
        let store = fresh_store(200).await;
        let message = MessageId::new();
        let events = vec![Event::new(message, None, Utc::now(), EventKind::Released)];
        let entries = vec![NewEntry::new("m1", "one"), NewEntry::new("m2", "two")];
        let crashed_at = now_millis();
        let intent = intent_document(&events, "mt", &entries, crashed_at).unwrap();
        store.accept.intents.insert_one(intent).await.unwrap();
        store.journal.append(&events).await.unwrap();
        store.queue.publish("mt", vec![entries[0].clone()]).await.unwrap();

        assert_eq!(store.accept.repair().await.unwrap(), 0, "too young: it may still be in flight");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.accept.repair().await.unwrap(), 1, "only the missing entry is published");
        assert_eq!(store.accept.repair().await.unwrap(), 0, "the intent is gone");
        assert_eq!(store.journal.message_events(message).await.unwrap(), events);
        let claim = store.queue.claim("mt", 10, Duration::from_secs(30), 5).await.unwrap();
        let mut ids: Vec<&str> = claim.entries.iter().map(|e| e.lease.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["m1", "m2"]);
        assert_eq!(store.accept.intents.count_documents(doc! {}).await.unwrap(), 0);
    }

    /// An intent that cannot be read is set aside, and the ones after it are still repaired.
    #[tokio::test]
    async fn a_corrupt_intent_is_quarantined_and_does_not_block_the_others() {
        let store = fresh_store(0).await;
        let past = now_millis() - 1_000;
        let mut corrupt = intent_document(&[], "mt", &[NewEntry::new("bad", "x")], past - 1).unwrap();
        corrupt.insert("events", "not json");
        store.accept.intents.insert_one(corrupt).await.unwrap();
        let good = intent_document(&[], "mt", &[NewEntry::new("good", "y")], past).unwrap();
        store.accept.intents.insert_one(good).await.unwrap();

        assert_eq!(store.accept.repair().await.unwrap(), 1, "the good intent is finished");
        assert_eq!(store.accept.quarantine.count_documents(doc! {}).await.unwrap(), 1);
        assert_eq!(store.accept.intents.count_documents(doc! {}).await.unwrap(), 0);
        let claim = store.queue.claim("mt", 10, Duration::from_secs(30), 5).await.unwrap();
        assert_eq!(claim.entries.iter().map(|e| e.lease.id.as_str()).collect::<Vec<_>>(), ["good"]);
    }

    /// An accept that crashed after its journal append still gets its index rows, from repair.
    #[tokio::test]
    async fn repair_indexes_the_messages_of_an_interrupted_accept() {
        let store = fresh_store(0).await;
        let (message, account) = (MessageId::new(), AccountId::new());
        let events = vec![crate::test_suite::accepted(message, account)];
        let intent = intent_document(&events, "mt", &[NewEntry::new("m1", "one")], now_millis() - 1_000).unwrap();
        store.accept.intents.insert_one(intent).await.unwrap();
        store.journal.append(&events).await.unwrap();
        assert!(store.records.get(account, message).await.unwrap().is_none());

        assert_eq!(store.accept.repair().await.unwrap(), 1);
        assert_eq!(store.records.get(account, message).await.unwrap().unwrap().status, MessageStatus::Accepted);
    }

    #[test]
    fn an_accept_too_big_for_one_document_is_refused() {
        let entries = vec![NewEntry::new("big", vec![0_u8; MAX_INTENT_BYTES + 1])];
        let err = intent_document(&[], "mt", &entries, 0).unwrap_err();
        assert!(matches!(err, QueueError::Invalid(_)), "{err}");
    }
}
