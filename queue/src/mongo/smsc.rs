//! SMSC id records and inbound parts on MongoDB, in the main database.
//! Records are keyed by connector and SMSC id, parts by their message and
//! place, so every write is a single-document insert or replace.

use std::time::Duration;

use async_trait::async_trait;
use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::{Collection, Database, IndexModel};

use super::records::{IN_CHUNK, corrupt, from_millis, int, opt_text, parse, text};
use super::{DUPLICATE_KEY, insert_many_write_errors, is_duplicate_key, now_millis};
use crate::queue::millis;
use crate::smsc::{MoPart, MoPartKey, SmscBackend, SmscIdRecord};
use crate::{QueueError, Result};

#[derive(Debug)]
pub(super) struct MongoSmsc {
    smsc_ids: Collection<Document>,
    mo_parts: Collection<Document>,
}

/// Length-prefixed, so no connector and id pair can share a key with another.
fn record_id(connector: &str, smsc_id: &str) -> String {
    format!("{}:{connector}/{smsc_id}", connector.len())
}

fn record_document(r: &SmscIdRecord) -> Document {
    doc! {
        "_id": record_id(&r.connector, &r.smsc_id),
        "connector": &r.connector,
        "smsc_id": &r.smsc_id,
        "message_id": r.message_id.to_string(),
        "account_id": r.account_id.map(|a| a.to_string()),
        "first_segment": i32::from(r.first_segment),
        "last_segment": i32::from(r.last_segment),
        "at": r.at.timestamp_millis(),
    }
}

fn record_from(doc: &Document) -> Result<SmscIdRecord> {
    let segment = |field: &str| -> Result<u16> {
        let value = int(doc, field)?;
        u16::try_from(value).map_err(|_| corrupt(format!("smsc_ids.{field} = {value}")))
    };
    Ok(SmscIdRecord {
        connector: text(doc, "connector")?.to_owned(),
        smsc_id: text(doc, "smsc_id")?.to_owned(),
        message_id: parse(doc, "message_id")?,
        account_id: opt_text(doc, "account_id")?
            .map(|a| a.parse().map_err(|_| corrupt(format!("smsc_ids.account_id {a:?}"))))
            .transpose()?,
        first_segment: segment("first_segment")?,
        last_segment: segment("last_segment")?,
        at: from_millis(int(doc, "at")?),
    })
}

fn key_filter(key: &MoPartKey) -> Document {
    doc! {
        "connector": &key.connector,
        "from": &key.from,
        "to": &key.to,
        "reference": i32::from(key.reference),
        "total": i32::from(key.total),
    }
}

fn part_document(part: &MoPart) -> Document {
    let key = &part.key;
    let mut document = key_filter(key);
    let id = format!(
        "{}:{}/{}:{}/{}:{}/{}/{}/{}",
        key.connector.len(),
        key.connector,
        key.from.len(),
        key.from,
        key.to.len(),
        key.to,
        key.reference,
        key.total,
        part.seq
    );
    document.insert("_id", id);
    document.insert("seq", i32::from(part.seq));
    document.insert("data_coding", i32::from(part.data_coding));
    document.insert("payload", Binary { subtype: BinarySubtype::Generic, bytes: part.payload.clone() });
    document.insert("received_at", part.received_at.timestamp_millis());
    document
}

fn part_from(key: &MoPartKey, doc: &Document) -> Result<MoPart> {
    let small = |field: &str| -> Result<u8> {
        let value = int(doc, field)?;
        u8::try_from(value).map_err(|_| corrupt(format!("mo_parts.{field} = {value}")))
    };
    let payload = match doc.get("payload") {
        Some(Bson::Binary(binary)) => binary.bytes.clone(),
        other => return Err(corrupt(format!("mo_parts.payload is not binary: {other:?}"))),
    };
    Ok(MoPart {
        key: key.clone(),
        seq: small("seq")?,
        data_coding: small("data_coding")?,
        payload,
        received_at: from_millis(int(doc, "received_at")?),
    })
}

impl MongoSmsc {
    pub(super) fn new(db: &Database) -> Self {
        Self { smsc_ids: db.collection("smsc_ids"), mo_parts: db.collection("mo_parts") }
    }

    pub(super) async fn create_indexes(&self) -> Result<()> {
        self.smsc_ids.create_index(IndexModel::builder().keys(doc! { "at": 1 }).build()).await?;
        let parts = doc! { "connector": 1, "from": 1, "to": 1, "reference": 1, "total": 1, "seq": 1 };
        self.mo_parts.create_index(IndexModel::builder().keys(parts).build()).await?;
        self.mo_parts.create_index(IndexModel::builder().keys(doc! { "received_at": 1 }).build()).await?;
        Ok(())
    }
}

#[async_trait]
impl SmscBackend for MongoSmsc {
    async fn put_smsc_ids(&self, records: &[SmscIdRecord]) -> Result<()> {
        for chunk in records.chunks(IN_CHUNK) {
            let documents: Vec<Document> = chunk.iter().map(record_document).collect();
            // Nearly every id is new: one unordered insert, then a replace for
            // the few that were there (a retried batch, or an SMSC reusing ids).
            let failures = match self.smsc_ids.insert_many(&documents).ordered(false).await {
                Ok(_) => continue,
                Err(e) => insert_many_write_errors(e)?,
            };
            for failure in failures {
                if failure.code != DUPLICATE_KEY {
                    return Err(QueueError::Unavailable(format!("cannot store an SMSC id: {}", failure.message)));
                }
                let Some(document) = documents.get(failure.index) else { continue };
                let id = document.get("_id").cloned().unwrap_or(Bson::Null);
                self.smsc_ids.replace_one(doc! { "_id": id }, document.clone()).upsert(true).await?;
            }
        }
        Ok(())
    }

    async fn smsc_ids(&self, connector: &str, smsc_ids: &[String]) -> Result<Vec<SmscIdRecord>> {
        let mut found = Vec::with_capacity(smsc_ids.len());
        for chunk in smsc_ids.chunks(IN_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| record_id(connector, id)).collect();
            let mut cursor = self.smsc_ids.find(doc! { "_id": { "$in": keys } }).await?;
            while let Some(document) = cursor.try_next().await? {
                found.push(record_from(&document)?);
            }
        }
        Ok(found)
    }

    async fn purge_smsc_ids(&self, older_than: Duration) -> Result<u64> {
        let cutoff = now_millis().saturating_sub(millis(older_than));
        Ok(self.smsc_ids.delete_many(doc! { "at": { "$lt": cutoff } }).await?.deleted_count)
    }

    async fn put_mo_part(&self, part: &MoPart) -> Result<Vec<MoPart>> {
        match self.mo_parts.insert_one(part_document(part)).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let documents: Vec<Document> =
            self.mo_parts.find(key_filter(&part.key)).sort(doc! { "seq": 1 }).await?.try_collect().await?;
        documents.iter().map(|d| part_from(&part.key, d)).collect()
    }

    async fn delete_mo_parts(&self, key: &MoPartKey) -> Result<()> {
        self.mo_parts.delete_many(key_filter(key)).await?;
        Ok(())
    }

    async fn purge_mo_parts(&self, older_than: Duration) -> Result<u64> {
        let cutoff = now_millis().saturating_sub(millis(older_than));
        Ok(self.mo_parts.delete_many(doc! { "received_at": { "$lt": cutoff } }).await?.deleted_count)
    }
}
