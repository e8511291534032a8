//! The journal on MongoDB, gap-free without transactions.
//!
//! Tailing by `_id` alone skips a document whose insert commits after a later
//! one. So positions are reserved first and filled second:
//!
//! 1. A writer reserves a block of positions with one `$inc` on a counter
//!    document, then inserts its events with `_id` = position.
//! 2. A reader reads positions in order and stops at the first missing one
//!    (a hole): that writer may still be in flight.
//! 3. A hole that outlives the settle window is filled by the reader with a
//!    filler document at that position. The unique `_id` arbitrates: either
//!    the event or the filler lands, never both. A writer whose insert loses
//!    to a filler reserves new positions and inserts again, so its event is
//!    never lost, only placed later; a reader never skips an event.
//! 4. A writer whose event id already exists (a retried stage) fills its own
//!    reserved position at once, so readers do not wait a settle window.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};
use tern_core::{Event, MessageId};

use super::{DUPLICATE_KEY, WriteFailure, insert_many_write_errors, is_duplicate_key};
use crate::{JournalBackend, JournalRecord, Position, QueueError, Result};

/// Events written per insert; a reservation covers one chunk.
const CHUNK: usize = 1_000;

#[derive(Debug)]
pub(super) struct MongoJournal {
    events: Collection<Document>,
    counters: Collection<Document>,
    settle: Duration,
    /// Holes this process has seen, with when it first saw them.
    holes: Mutex<HashMap<u64, Instant>>,
}

fn to_document(event: &Event) -> Result<Document> {
    let json = serde_json::to_value(event)?;
    match Bson::try_from(json).map_err(|e| QueueError::Corrupt(e.to_string()))? {
        Bson::Document(d) => Ok(d),
        _ => Err(QueueError::Corrupt("event did not serialise to a document".into())),
    }
}

fn from_document(doc: &Document) -> Result<Event> {
    let body = doc.get_document("event").map_err(|e| QueueError::Corrupt(e.to_string()))?;
    let json = Bson::Document(body.clone()).into_relaxed_extjson();
    Ok(serde_json::from_value(json)?)
}

fn position_of(doc: &Document) -> Result<u64> {
    match doc.get("_id") {
        Some(Bson::Int64(p)) => u64::try_from(*p).map_err(|e| QueueError::Corrupt(e.to_string())),
        Some(Bson::Int32(p)) => u64::try_from(*p).map_err(|e| QueueError::Corrupt(e.to_string())),
        _ => Err(QueueError::Corrupt("journal document without an integer position".into())),
    }
}

fn as_i64(position: u64) -> i64 {
    i64::try_from(position).unwrap_or(i64::MAX)
}

impl MongoJournal {
    pub(super) fn new(db: &Database, settle: Duration) -> Self {
        Self {
            events: db.collection("journal"),
            counters: db.collection("journal_counters"),
            settle,
            holes: Mutex::new(HashMap::new()),
        }
    }

    pub(super) async fn create_indexes(&self) -> Result<()> {
        let unique = IndexOptions::builder().unique(true).build();
        self.events.create_index(IndexModel::builder().keys(doc! { "event_id": 1 }).options(unique).build()).await?;
        self.events.create_index(IndexModel::builder().keys(doc! { "message_id": 1, "_id": 1 }).build()).await?;
        // Created here, once, rather than upserted by appenders, which can race on a fresh database.
        match self.counters.insert_one(doc! { "_id": "journal", "next": 0_i64 }).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reserves `n` positions; returns the first.
    async fn reserve(&self, n: usize) -> Result<u64> {
        let n = as_i64(n as u64);
        let counter = self
            .counters
            .find_one_and_update(doc! { "_id": "journal" }, doc! { "$inc": { "next": n } })
            .return_document(ReturnDocument::After)
            .await?
            .ok_or_else(|| QueueError::Corrupt("the journal position counter is missing".into()))?;
        let last = match counter.get("next") {
            Some(Bson::Int64(v)) => *v,
            Some(Bson::Int32(v)) => i64::from(*v),
            _ => return Err(QueueError::Corrupt("journal counter is not an integer".into())),
        };
        u64::try_from(last - n + 1).map_err(|e| QueueError::Corrupt(e.to_string()))
    }

    /// Puts a filler at `position` unless something is there already.
    async fn fill(&self, position: u64) -> Result<()> {
        let filler = doc! { "_id": as_i64(position), "event_id": format!("filler:{position}"), "filler": true };
        match self.events.insert_one(filler).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn existing_ids(&self, ids: &[String]) -> Result<HashSet<String>> {
        let docs: Vec<Document> = self
            .events
            .find(doc! { "event_id": { "$in": ids } })
            .projection(doc! { "event_id": 1 })
            .await?
            .try_collect()
            .await?;
        Ok(docs.iter().filter_map(|d| d.get_str("event_id").ok().map(str::to_owned)).collect())
    }

    /// Appends events not yet in the journal; returns how many it wrote.
    async fn append_chunk(&self, mut pending: Vec<(String, Document)>) -> Result<usize> {
        let mut appended = 0;
        while !pending.is_empty() {
            let ids: Vec<String> = pending.iter().map(|(id, _)| id.clone()).collect();
            let present = self.existing_ids(&ids).await?;
            pending.retain(|(id, _)| !present.contains(id));
            if pending.is_empty() {
                break;
            }
            let first = self.reserve(pending.len()).await?;
            let docs: Vec<Document> = pending
                .iter()
                .enumerate()
                .map(|(i, (_, d))| {
                    let mut d = d.clone();
                    d.insert("_id", as_i64(first + i as u64));
                    d
                })
                .collect();
            let failed: Vec<WriteFailure> = match self.events.insert_many(docs).ordered(false).await {
                Ok(_) => Vec::new(),
                Err(e) => {
                    let errors = insert_many_write_errors(e)?;
                    if let Some(e) = errors.iter().find(|e| e.code != DUPLICATE_KEY) {
                        return Err(QueueError::Unexpected(anyhow::anyhow!("journal insert failed: {}", e.message)));
                    }
                    errors
                }
            };
            appended += pending.len() - failed.len();
            // A failed insert either met its own event id (a concurrent
            // duplicate, perhaps not yet majority-visible: done, but its
            // reserved position must not stay a hole) or lost its position
            // to a filler (retry at a new position). The duplicate-key message
            // names the index; where it does not, look the id up.
            let unclear: Vec<String> = failed
                .iter()
                .filter(|e| !e.message.contains("event_id") && !e.message.contains("_id_"))
                .map(|e| pending[e.index].0.clone())
                .collect();
            let present = if unclear.is_empty() { HashSet::new() } else { self.existing_ids(&unclear).await? };
            let mut retry = Vec::new();
            for e in &failed {
                let id = &pending[e.index].0;
                if e.message.contains("event_id") || present.contains(id) {
                    self.fill(first + e.index as u64).await?;
                } else {
                    retry.push(pending[e.index].clone());
                }
            }
            pending = retry;
        }
        Ok(appended)
    }

    fn note_hole(&self, position: u64) -> bool {
        let mut holes = self.holes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget holes long filled, whoever's they were (several readers may share this journal).
        let stale = self.settle.saturating_mul(10).max(Duration::from_secs(60));
        holes.retain(|_, seen| seen.elapsed() < stale);
        let first_seen = *holes.entry(position).or_insert_with(Instant::now);
        first_seen.elapsed() >= self.settle
    }
}

#[async_trait]
impl JournalBackend for MongoJournal {
    async fn append(&self, events: &[Event]) -> Result<usize> {
        let mut seen = HashSet::new();
        let mut docs = Vec::with_capacity(events.len());
        for event in events {
            let id = event.id.to_string();
            if !seen.insert(id.clone()) {
                continue;
            }
            let doc = doc! {
                "event_id": &id,
                "message_id": event.message_id.to_string(),
                "type": event.kind.type_name(),
                "event": to_document(event)?,
            };
            docs.push((id, doc));
        }
        let mut appended = 0;
        while !docs.is_empty() {
            let rest = docs.split_off(docs.len().min(CHUNK));
            appended += self.append_chunk(std::mem::replace(&mut docs, rest)).await?;
        }
        Ok(appended)
    }

    async fn message_events(&self, message_id: MessageId) -> Result<Vec<Event>> {
        let docs: Vec<Document> = self
            .events
            .find(doc! { "message_id": message_id.to_string() })
            .sort(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        docs.iter().map(from_document).collect()
    }

    /// One `$in` per thousand messages over the `(message_id, _id)` index;
    /// sorting by position keeps each message's events in journal order.
    async fn messages_events(&self, message_ids: &[MessageId]) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        for chunk in message_ids.chunks(CHUNK) {
            let ids: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            let docs: Vec<Document> = self
                .events
                .find(doc! { "message_id": { "$in": ids } })
                .sort(doc! { "_id": 1 })
                .await?
                .try_collect()
                .await?;
            for doc in &docs {
                events.push(from_document(doc)?);
            }
        }
        Ok(events)
    }

    async fn read_from(&self, after: Position, limit: usize) -> Result<Vec<JournalRecord>> {
        let mut records = Vec::new();
        let mut expected = after.0 + 1;
        let mut just_filled = None;
        loop {
            let docs: Vec<Document> = self
                .events
                .find(doc! { "_id": { "$gte": as_i64(expected) } })
                .sort(doc! { "_id": 1 })
                .limit(as_i64((limit - records.len()) as u64))
                .await?
                .try_collect()
                .await?;
            let mut hole = None;
            for doc in &docs {
                let position = position_of(doc)?;
                if position != expected {
                    hole = Some(expected);
                    break;
                }
                expected += 1;
                if !doc.get_bool("filler").unwrap_or(false) {
                    records.push(JournalRecord { position: Position(position), event: from_document(doc)? });
                }
            }
            match hole {
                // Still a hole right after filling it: the position holds a
                // write not yet majority-committed. Come back later.
                Some(position) if just_filled == Some(position) => return Ok(records),
                // Past the settle window: whoever reserved it is gone or too
                // late. Fill it and read on from there.
                Some(position) if self.note_hole(position) => {
                    self.fill(position).await?;
                    just_filled = Some(position);
                }
                Some(_) => return Ok(records),
                None if docs.is_empty() || records.len() >= limit => return Ok(records),
                None => {}
            }
        }
    }

    /// The highest event position written; a reader reaches it once the
    /// holes below it (appends in flight) are written or filled.
    async fn head(&self) -> Result<Position> {
        let last = self
            .events
            .find_one(doc! { "filler": { "$exists": false } })
            .sort(doc! { "_id": -1 })
            .projection(doc! { "_id": 1 })
            .await?;
        Ok(Position(last.as_ref().map(position_of).transpose()?.unwrap_or(0)))
    }
}
