//! Opt-outs, conversations and inbound messages on MongoDB, in the main
//! database. Each write is a single-document insert, delete or guarded
//! upsert, so none needs a transaction.

use std::collections::HashMap;

use async_trait::async_trait;
use bson::{Document, doc};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use mongodb::{Collection, Database, IndexModel};
use tern_core::{AccountId, MessageId};

use super::records::{IN_CHUNK, UPDATE_CONCURRENCY, corrupt, from_millis, int, limit, opt_text, parse, text};
use super::{DUPLICATE_KEY, insert_many_write_errors, is_duplicate_key};
use crate::contacts::{ContactsBackend, Conversation, InboundRow};
use crate::{QueueError, Result};

/// Rounds a conversation upsert makes when concurrent writers keep creating
/// the same document first (the second round always settles it).
const UPSERT_ROUNDS: usize = 3;

#[derive(Debug)]
pub(super) struct MongoContacts {
    opt_outs: Collection<Document>,
    conversations: Collection<Document>,
    inbound: Collection<Document>,
}

/// Account ids are UUIDs, so the first '/' ends the account part.
fn opt_out_id(account: AccountId, number: &str) -> String {
    format!("{account}/{number}")
}

/// Length-prefixed, so no sender and handset pair can share an id with another.
fn conversation_id(sender: &str, handset: &str) -> String {
    format!("{}:{sender}/{handset}", sender.len())
}

fn inbound_id(account: AccountId, message: MessageId) -> String {
    format!("{account}/{message}")
}

fn inbound_document(row: &InboundRow) -> Document {
    doc! {
        "_id": inbound_id(row.account_id, row.message_id),
        "account_id": row.account_id.to_string(),
        "message_id": row.message_id.to_string(),
        "from": &row.from,
        "to": &row.to,
        "body": &row.body,
        "connector": &row.connector,
        "reply_to": row.reply_to.map(|m| m.to_string()),
        "received_at": row.received_at.timestamp_millis(),
    }
}

fn inbound_from(doc: &Document) -> Result<InboundRow> {
    Ok(InboundRow {
        message_id: parse(doc, "message_id")?,
        account_id: parse(doc, "account_id")?,
        from: text(doc, "from")?.to_owned(),
        to: text(doc, "to")?.to_owned(),
        body: text(doc, "body")?.to_owned(),
        connector: text(doc, "connector")?.to_owned(),
        reply_to: opt_text(doc, "reply_to")?
            .map(|m| m.parse().map_err(|_| corrupt(format!("reply_to {m:?}"))))
            .transpose()?,
        received_at: from_millis(int(doc, "received_at")?),
    })
}

fn conversation_from(doc: &Document) -> Result<Conversation> {
    Ok(Conversation {
        sender: text(doc, "sender")?.to_owned(),
        handset: text(doc, "handset")?.to_owned(),
        account_id: parse(doc, "account_id")?,
        message_id: parse(doc, "message_id")?,
        at: from_millis(int(doc, "at")?),
    })
}

impl MongoContacts {
    pub(super) fn new(db: &Database) -> Self {
        Self {
            opt_outs: db.collection("opt_outs"),
            conversations: db.collection("conversations"),
            inbound: db.collection("inbound"),
        }
    }

    pub(super) async fn create_indexes(&self) -> Result<()> {
        let listing = IndexModel::builder().keys(doc! { "account_id": 1, "message_id": -1 }).build();
        self.inbound.create_index(listing).await?;
        Ok(())
    }

    /// Keeps the stored conversation unless it is newer than `c`; an equal
    /// time is overwritten (the later write wins).
    async fn remember(&self, c: &Conversation) -> Result<()> {
        let id = conversation_id(&c.sender, &c.handset);
        let at = c.at.timestamp_millis();
        let update = doc! { "$set": {
            "sender": &c.sender,
            "handset": &c.handset,
            "account_id": c.account_id.to_string(),
            "message_id": c.message_id.to_string(),
            "at": at,
        } };
        for _ in 0..UPSERT_ROUNDS {
            // No match means either no document (the upsert inserts it) or a
            // newer one (the upsert's insert fails on the id: keep the newer).
            // A duplicate can also be a concurrent first insert, older or not,
            // so the guard is evaluated again against what is there now.
            match self
                .conversations
                .update_one(doc! { "_id": &id, "at": { "$lte": at } }, update.clone())
                .upsert(true)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_duplicate_key(&e) => {
                    let stored = self.conversations.find_one(doc! { "_id": &id }).projection(doc! { "at": 1 }).await?;
                    if stored.map(|d| int(&d, "at")).transpose()?.is_some_and(|stored| stored > at) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(QueueError::Unavailable(format!("the conversation of {} with {} is contended", c.sender, c.handset)))
    }
}

#[async_trait]
impl ContactsBackend for MongoContacts {
    async fn set_opt_out(&self, account: AccountId, number: &str, opted_out: bool, at: DateTime<Utc>) -> Result<bool> {
        let id = opt_out_id(account, number);
        if !opted_out {
            return Ok(self.opt_outs.delete_one(doc! { "_id": id }).await?.deleted_count > 0);
        }
        let record = doc! {
            "_id": id,
            "account_id": account.to_string(),
            "number": number,
            "at": at.timestamp_millis(),
        };
        match self.opt_outs.insert_one(record).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn opted_out(&self, account: AccountId, numbers: &[String]) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for chunk in numbers.chunks(IN_CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|n| opt_out_id(account, n)).collect();
            let docs: Vec<Document> = self
                .opt_outs
                .find(doc! { "_id": { "$in": ids } })
                .projection(doc! { "number": 1 })
                .await?
                .try_collect()
                .await?;
            for doc in &docs {
                found.push(text(doc, "number")?.to_owned());
            }
        }
        Ok(found)
    }

    async fn remember_conversations(&self, conversations: &[Conversation]) -> Result<()> {
        // The latest of each pair in this call first (a later one on a tie),
        // so the concurrent upserts below never race each other.
        let mut latest: HashMap<(&str, &str), &Conversation> = HashMap::new();
        for c in conversations {
            let key = (c.sender.as_str(), c.handset.as_str());
            if latest.get(&key).is_none_or(|kept| c.at >= kept.at) {
                latest.insert(key, c);
            }
        }
        // Made before the stream so it holds futures, not a closure over borrowed conversations.
        let upserts: Vec<_> = latest.into_values().map(|c| self.remember(c)).collect();
        futures::stream::iter(upserts).buffer_unordered(UPDATE_CONCURRENCY).try_for_each(|()| async { Ok(()) }).await
    }

    async fn latest_conversation(
        &self,
        sender: &str,
        handset: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<Conversation>> {
        let filter = doc! { "_id": conversation_id(sender, handset), "at": { "$gte": since.timestamp_millis() } };
        self.conversations.find_one(filter).await?.as_ref().map(conversation_from).transpose()
    }

    async fn put_inbound(&self, rows: &[InboundRow]) -> Result<()> {
        for chunk in rows.chunks(IN_CHUNK) {
            let docs: Vec<Document> = chunk.iter().map(inbound_document).collect();
            match self.inbound.insert_many(docs).ordered(false).await {
                Ok(_) => {}
                Err(e) => {
                    if let Some(f) = insert_many_write_errors(e)?.iter().find(|f| f.code != DUPLICATE_KEY) {
                        return Err(QueueError::Unexpected(anyhow::anyhow!("inbound insert failed: {}", f.message)));
                    }
                }
            }
        }
        Ok(())
    }

    async fn list_inbound(
        &self,
        account: AccountId,
        before: Option<MessageId>,
        limit_to: usize,
    ) -> Result<Vec<InboundRow>> {
        // A limit of 0 means "no limit" to MongoDB.
        if limit_to == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "account_id": account.to_string() };
        if let Some(before) = before {
            filter.insert("message_id", doc! { "$lt": before.to_string() });
        }
        let docs: Vec<Document> = self
            .inbound
            .find(filter)
            .sort(doc! { "message_id": -1 })
            .limit(limit(limit_to))
            .await?
            .try_collect()
            .await?;
        docs.iter().map(inbound_from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_ids_never_collide() {
        assert_ne!(conversation_id("a/b", "c"), conversation_id("a", "b/c"));
        assert_eq!(conversation_id("Tern", "+447700900123"), "4:Tern/+447700900123");
    }
}
