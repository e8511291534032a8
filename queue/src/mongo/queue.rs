//! The queue on one or more MongoDB deployments.
//!
//! Claims are batched, not one findAndModify per entry: find the ids of the
//! oldest visible entries, lease them with one `update_many` guarded by
//! "still visible" (so of two racing claimers each entry goes to one), then
//! read back what this lease token won.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use mongodb::{Collection, Database, IndexModel};

use super::{DUPLICATE_KEY, insert_many_write_errors, now_millis};
use crate::queue::{millis, new_lease_token};
use crate::{
    Claim, ClaimedEntry, Depth, LeaseRef, NackOutcome, NewEntry, PublishReceipt, QueueBackend, QueueError, Result,
};

const PENDING: i32 = 0;
const ACKED: i32 = 1;
const DEAD: i32 = 2;

/// Rounds a claim makes when other claimers keep winning its candidates.
const CLAIM_ROUNDS: usize = 3;

/// How long a deployment that failed is skipped before being tried again.
const DOWN_BACKOFF_MS: i64 = 1_000;

/// One independent deployment holding part of the queue.
#[derive(Debug)]
pub(super) struct Deployment {
    name: String,
    entries: Collection<Document>,
    down_until: AtomicI64,
}

impl Deployment {
    pub(super) fn new(name: String, db: Database) -> Self {
        Self { name, entries: db.collection("queue_entries"), down_until: AtomicI64::new(0) }
    }

    fn is_up(&self) -> bool {
        self.down_until.load(Ordering::Relaxed) <= now_millis()
    }

    /// Remembers a transient failure so the next calls skip this deployment for a while.
    fn observe<T>(&self, result: Result<T>) -> Result<T> {
        if let Some(e) = result.as_ref().err().filter(|e| e.is_transient()) {
            tracing::warn!(deployment = %self.name, error = %e, "queue deployment unavailable; skipping it for a while");
            self.down_until.store(now_millis() + DOWN_BACKOFF_MS, Ordering::Relaxed);
        }
        result
    }
}

/// The queue over its deployments.
#[derive(Debug)]
pub(super) struct MongoQueue {
    deployments: Vec<Deployment>,
}

/// An entry a claim may lease.
struct Candidate {
    shard: usize,
    id: Bson,
    visible_at: i64,
    seq: ObjectId,
}

/// The terms of one claim's lease.
#[derive(Clone, Copy)]
struct Lease<'a> {
    token: &'a str,
    now: i64,
    until: i64,
    max_attempts: u32,
}

/// The deployment an entry lives on while it is up: a stable hash of its
/// key, which spreads entries as evenly as a random choice would but sends a
/// re-published id to the same place, so publishing stays idempotent.
fn home(topic: &str, id: &str, deployments: usize) -> usize {
    // FNV-1a: stable across processes and releases, unlike std's hasher.
    let hash = key(topic, id)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash % deployments.max(1) as u64) as usize
}

fn key(topic: &str, id: &str) -> String {
    format!("{topic}\u{1f}{id}")
}

fn entry_id(topic: &str, doc: &Document) -> Result<String> {
    let key = doc.get_str("_id").map_err(|e| QueueError::Corrupt(e.to_string()))?;
    Ok(key.strip_prefix(topic).and_then(|k| k.strip_prefix('\u{1f}')).unwrap_or(key).to_owned())
}

fn claimed(topic: &str, token: &str, shard: usize, doc: &Document) -> Result<ClaimedEntry> {
    let payload = match doc.get("payload") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        _ => return Err(QueueError::Corrupt("queue entry without a binary payload".into())),
    };
    let attempts = doc.get_i32("attempts").map_err(|e| QueueError::Corrupt(e.to_string()))?;
    Ok(ClaimedEntry {
        lease: LeaseRef { topic: topic.to_owned(), id: entry_id(topic, doc)?, token: token.to_owned(), shard },
        payload,
        attempts: u32::try_from(attempts).unwrap_or(0),
    })
}

impl MongoQueue {
    pub(super) fn new(deployments: Vec<Deployment>) -> Self {
        Self { deployments }
    }

    pub(super) async fn create_indexes(&self) -> Result<()> {
        for d in &self.deployments {
            let index = |keys: Document| IndexModel::builder().keys(keys).build();
            d.entries.create_index(index(doc! { "topic": 1, "state": 1, "visible_at": 1, "seq": 1 })).await?;
            d.entries.create_index(index(doc! { "state": 1, "settled_at": 1 })).await?;
        }
        Ok(())
    }

    fn deployment(&self, shard: usize) -> Result<&Deployment> {
        self.deployments.get(shard).ok_or_else(|| QueueError::Invalid(format!("no queue deployment {shard}")))
    }

    /// Publishes entries that share a home deployment there, or, while it
    /// is down, on the next deployment that takes them.
    async fn publish_from_home(&self, home: usize, docs: &[Document]) -> Result<PublishReceipt> {
        let n = self.deployments.len();
        let mut order: Vec<usize> = (0..n).map(|i| (home + i) % n).collect();
        // Keep the ring order, but try deployments known to be down last.
        order.sort_by_key(|&i| !self.deployments[i].is_up());
        let mut last_error = None;
        for shard in order {
            match self.publish_to(shard, docs).await {
                Ok(receipt) => return Ok(receipt),
                Err(e) if e.is_transient() => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| QueueError::Unavailable("no queue deployment configured".into())))
    }

    async fn publish_to(&self, shard: usize, docs: &[Document]) -> Result<PublishReceipt> {
        let d = self.deployment(shard)?;
        let result = match d.entries.insert_many(docs).ordered(false).await {
            Ok(r) => {
                Ok(PublishReceipt { inserted: r.inserted_ids.len(), duplicates: docs.len() - r.inserted_ids.len() })
            }
            Err(e) => insert_many_write_errors(e).and_then(|errors| {
                if let Some(e) = errors.iter().find(|e| e.code != DUPLICATE_KEY) {
                    return Err(QueueError::Unexpected(anyhow::anyhow!("queue insert failed: {}", e.message)));
                }
                Ok(PublishReceipt { inserted: docs.len() - errors.len(), duplicates: errors.len() })
            }),
        };
        d.observe(result)
    }

    /// Which of `ids` some deployment holds; an error if a deployment could not be asked.
    pub(super) async fn existing(&self, topic: &str, ids: &[String]) -> Result<HashSet<String>> {
        let keys: Vec<String> = ids.iter().map(|id| key(topic, id)).collect();
        let mut found = HashSet::new();
        for d in &self.deployments {
            let docs: Vec<Document> = d.observe(
                async {
                    Ok(d.entries
                        .find(doc! { "_id": { "$in": &keys } })
                        .projection(doc! { "_id": 1 })
                        .await?
                        .try_collect()
                        .await?)
                }
                .await,
            )?;
            for doc in &docs {
                found.insert(entry_id(topic, doc)?);
            }
        }
        Ok(found)
    }

    /// The ids of up to `max` visible entries of one deployment, oldest first.
    async fn candidates(&self, shard: usize, topic: &str, max: usize, now: i64) -> Result<Vec<Candidate>> {
        let d = self.deployment(shard)?;
        let docs: Vec<Document> = d
            .entries
            .find(doc! { "topic": topic, "state": PENDING, "visible_at": { "$lte": now } })
            .sort(doc! { "visible_at": 1, "seq": 1 })
            .limit(i64::try_from(max).unwrap_or(i64::MAX))
            .projection(doc! { "_id": 1, "visible_at": 1, "seq": 1 })
            .await?
            .try_collect()
            .await?;
        docs.into_iter()
            .map(|mut doc| {
                let corrupt = |e: bson::document::ValueAccessError| QueueError::Corrupt(e.to_string());
                Ok(Candidate {
                    shard,
                    visible_at: doc.get_i64("visible_at").map_err(corrupt)?,
                    seq: doc.get_object_id("seq").map_err(corrupt)?,
                    id: doc.remove("_id").unwrap_or(Bson::Null),
                })
            })
            .collect()
    }

    /// Leases the given candidates of one deployment; returns what this token won.
    async fn lease(&self, shard: usize, topic: &str, ids: Vec<Bson>, lease: Lease<'_>) -> Result<Claim> {
        let d = self.deployment(shard)?;
        let still_visible = doc! {
            "_id": { "$in": &ids }, "topic": topic, "state": PENDING, "visible_at": { "$lte": lease.now },
        };
        d.entries
            .update_many(
                still_visible,
                doc! {
                    "$set": { "lease_token": lease.token, "visible_at": lease.until },
                    "$inc": { "attempts": 1 },
                },
            )
            .await?;
        let won: Vec<Document> = d
            .entries
            .find(doc! { "_id": { "$in": &ids }, "lease_token": lease.token, "state": PENDING })
            .await?
            .try_collect()
            .await?;
        let mut claim = Claim::default();
        let mut exhausted = Vec::new();
        for doc in &won {
            let mut entry = claimed(topic, lease.token, shard, doc)?;
            if entry.attempts > lease.max_attempts {
                // This claim does not deliver it: report (and keep) the deliveries made.
                entry.attempts -= 1;
                exhausted.push(Bson::String(key(topic, &entry.lease.id)));
                claim.dead_lettered.push(entry);
            } else {
                claim.entries.push(entry);
            }
        }
        if !exhausted.is_empty() {
            d.entries
                .update_many(
                    doc! { "_id": { "$in": exhausted }, "lease_token": lease.token },
                    doc! {
                        "$set": { "state": DEAD, "settled_at": lease.now },
                        "$unset": { "lease_token": "" },
                        "$inc": { "attempts": -1 },
                    },
                )
                .await?;
        }
        Ok(claim)
    }

    /// One claim round; also says whether another claimer won some of the
    /// entries this one proposed.
    async fn claim_round(&self, topic: &str, max: usize, lease: Duration, max_attempts: u32) -> Result<(Claim, bool)> {
        let now = now_millis();
        let up: Vec<usize> = (0..self.deployments.len()).filter(|&i| self.deployments[i].is_up()).collect();
        if up.is_empty() {
            return Err(QueueError::Unavailable("every queue deployment is down".into()));
        }
        // Oldest first across deployments: each proposes its oldest, the merge picks.
        let asks = up.iter().map(|&shard| async move {
            self.deployments[shard].observe(self.candidates(shard, topic, max, now).await)
        });
        let mut candidates = Vec::new();
        let mut last_error = None;
        for answer in futures::future::join_all(asks).await {
            match answer {
                Ok(found) => candidates.extend(found),
                Err(e) if e.is_transient() => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        if candidates.is_empty() {
            return last_error.map_or_else(|| Ok((Claim::default(), false)), Err);
        }
        candidates.sort_by_key(|c| (c.visible_at, c.seq));
        candidates.truncate(max);
        let proposed = candidates.len();
        let rank: HashMap<(usize, String), usize> = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| ((c.shard, c.id.as_str().unwrap_or_default().to_owned()), i))
            .collect();
        let mut by_shard: HashMap<usize, Vec<Bson>> = HashMap::new();
        for c in candidates {
            by_shard.entry(c.shard).or_default().push(c.id);
        }
        let token = new_lease_token();
        let terms = Lease { token: &token, now, until: now.saturating_add(millis(lease)), max_attempts };
        let leases = by_shard.into_iter().map(|(shard, ids)| async move {
            self.deployments[shard].observe(self.lease(shard, topic, ids, terms).await)
        });
        let mut claim = Claim::default();
        for part in futures::future::join_all(leases).await {
            match part {
                Ok(part) => {
                    claim.entries.extend(part.entries);
                    claim.dead_lettered.extend(part.dead_lettered);
                }
                // Entries leased on a deployment that failed mid-claim come back when their lease runs out.
                Err(e) if e.is_transient() => tracing::warn!(error = %e, "claim lost a deployment"),
                Err(e) => return Err(e),
            }
        }
        claim.entries.sort_by_key(|e| rank.get(&(e.lease.shard, key(topic, &e.lease.id))).copied());
        let contended = claim.entries.len() + claim.dead_lettered.len() < proposed;
        Ok((claim, contended))
    }

    /// Applies `update` to the entries of `leases` still held; returns those
    /// that were not. For an ack, an entry this very token already acked
    /// (a retried ack) counts as held.
    async fn settle(
        &self,
        leases: &[LeaseRef],
        is_ack: bool,
        update: impl Fn(&str) -> Document,
    ) -> Result<Vec<LeaseRef>> {
        let mut groups: HashMap<(usize, &str, &str), Vec<&LeaseRef>> = HashMap::new();
        for lease in leases {
            groups.entry((lease.shard, &lease.topic, &lease.token)).or_default().push(lease);
        }
        let mut lost = Vec::new();
        for ((shard, topic, token), group) in groups {
            let d = self.deployment(shard)?;
            let keys: Vec<String> = group.iter().map(|l| key(topic, &l.id)).collect();
            let held = doc! { "_id": { "$in": &keys }, "lease_token": token, "state": PENDING };
            let result = d.observe(d.entries.update_many(held, update(token)).await.map_err(QueueError::from))?;
            if result.matched_count as usize == group.len() {
                continue;
            }
            // Some leases were lost: find which of the group now carry our mark.
            let marked: Vec<Document> = d
                .entries
                .find(if is_ack {
                    doc! { "$and": [
                        { "_id": { "$in": &keys } },
                        { "$or": [ { "lease_token": token }, { "settled_by": token } ] },
                    ] }
                } else {
                    doc! { "_id": { "$in": &keys }, "lease_token": token, "state": PENDING }
                })
                .projection(doc! { "_id": 1 })
                .await?
                .try_collect()
                .await?;
            let marked: HashSet<String> = marked.iter().map(|d| entry_id(topic, d)).collect::<Result<_>>()?;
            lost.extend(group.into_iter().filter(|l| !marked.contains(&l.id)).cloned());
        }
        Ok(lost)
    }
}

#[async_trait]
impl QueueBackend for MongoQueue {
    async fn publish(&self, topic: &str, entries: Vec<NewEntry>) -> Result<PublishReceipt> {
        let n = self.deployments.len();
        let now = now_millis();
        // Stamped here, in publish order, so FIFO holds across deployments.
        let mut by_home: Vec<Vec<Document>> = (0..n).map(|_| Vec::new()).collect();
        for e in &entries {
            by_home[home(topic, &e.id, n)].push(doc! {
                "_id": key(topic, &e.id),
                "topic": topic,
                "payload": Binary { subtype: BinarySubtype::Generic, bytes: e.payload.clone() },
                "state": PENDING,
                "visible_at": e.not_before.map_or(now, |t| t.timestamp_millis()),
                "seq": ObjectId::new(),
                "attempts": 0,
            });
        }
        let sends = by_home
            .into_iter()
            .enumerate()
            .filter(|(_, docs)| !docs.is_empty())
            .map(|(home, docs)| async move { self.publish_from_home(home, &docs).await });
        let mut receipt = PublishReceipt::default();
        for part in futures::future::join_all(sends).await {
            let part = part?;
            receipt.inserted += part.inserted;
            receipt.duplicates += part.duplicates;
        }
        Ok(receipt)
    }

    async fn claim(&self, topic: &str, max: usize, lease: Duration, max_attempts: u32) -> Result<Claim> {
        // Concurrent claimers propose the same oldest entries and the losers
        // of each race come back short; they go again for the next oldest.
        let mut claim = Claim::default();
        for _ in 0..CLAIM_ROUNDS {
            let wanted = max - claim.entries.len();
            let (part, contended) = self.claim_round(topic, wanted, lease, max_attempts).await?;
            claim.entries.extend(part.entries);
            claim.dead_lettered.extend(part.dead_lettered);
            if !contended || claim.entries.len() >= max {
                break;
            }
        }
        Ok(claim)
    }

    async fn ack(&self, leases: &[LeaseRef]) -> Result<Vec<LeaseRef>> {
        let now = now_millis();
        self.settle(leases, true, |token| {
            doc! {
                "$set": { "state": ACKED, "settled_at": now, "settled_by": token },
                "$unset": { "lease_token": "" },
            }
        })
        .await
    }

    async fn nack(&self, lease: &LeaseRef, delay: Duration, max_attempts: u32) -> Result<NackOutcome> {
        let d = self.deployment(lease.shard)?;
        let held = doc! { "_id": key(&lease.topic, &lease.id), "lease_token": &lease.token, "state": PENDING };
        let current = d.observe(d.entries.find_one(held.clone()).await.map_err(QueueError::from))?;
        let Some(current) = current else {
            return Err(QueueError::LeaseLost { topic: lease.topic.clone(), id: lease.id.clone() });
        };
        let attempts = current.get_i32("attempts").map_err(|e| QueueError::Corrupt(e.to_string()))?;
        let now = now_millis();
        let (update, outcome) = if i64::from(attempts) >= i64::from(max_attempts) {
            (
                doc! { "$set": { "state": DEAD, "settled_at": now }, "$unset": { "lease_token": "" } },
                NackOutcome::DeadLettered,
            )
        } else {
            let at = now.saturating_add(millis(delay));
            let when = chrono::DateTime::from_timestamp_millis(at).unwrap_or_default();
            (doc! { "$set": { "visible_at": at }, "$unset": { "lease_token": "" } }, NackOutcome::Retrying { at: when })
        };
        let result = d.entries.update_one(held, update).await?;
        if result.matched_count == 0 {
            return Err(QueueError::LeaseLost { topic: lease.topic.clone(), id: lease.id.clone() });
        }
        Ok(outcome)
    }

    async fn extend(&self, leases: &[LeaseRef], lease: Duration) -> Result<Vec<LeaseRef>> {
        let until = now_millis().saturating_add(millis(lease));
        self.settle(leases, false, |_| doc! { "$set": { "visible_at": until } }).await
    }

    async fn depth(&self, topic: &str) -> Result<Depth> {
        let now = now_millis();
        let mut depth = Depth::default();
        for d in &self.deployments {
            let count = |filter: Document| async {
                d.observe(d.entries.count_documents(filter).await.map_err(QueueError::from))
            };
            depth.ready += count(doc! { "topic": topic, "state": PENDING, "visible_at": { "$lte": now } }).await?;
            depth.leased += count(doc! {
                "topic": topic, "state": PENDING, "visible_at": { "$gt": now }, "lease_token": { "$exists": true }
            })
            .await?;
            depth.delayed += count(doc! {
                "topic": topic, "state": PENDING, "visible_at": { "$gt": now }, "lease_token": { "$exists": false }
            })
            .await?;
            depth.dead += count(doc! { "topic": topic, "state": DEAD }).await?;
        }
        Ok(depth)
    }

    async fn dead_letters(&self, topic: &str, limit: usize) -> Result<Vec<ClaimedEntry>> {
        let mut dead = Vec::new();
        for (shard, d) in self.deployments.iter().enumerate() {
            let docs: Vec<Document> = d
                .entries
                .find(doc! { "topic": topic, "state": DEAD })
                .sort(doc! { "seq": 1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .await?
                .try_collect()
                .await?;
            for doc in &docs {
                dead.push(claimed(topic, "", shard, doc)?);
            }
        }
        dead.truncate(limit);
        Ok(dead)
    }

    async fn purge_acked(&self, older_than: Duration) -> Result<u64> {
        let cutoff = now_millis().saturating_sub(millis(older_than));
        let mut purged = 0;
        for d in &self.deployments {
            purged +=
                d.entries.delete_many(doc! { "state": ACKED, "settled_at": { "$lt": cutoff } }).await?.deleted_count;
        }
        Ok(purged)
    }
}
