//! What one batch of journal records changes in the store, computed in
//! memory from the rows it touches: rows to write, and the deltas that move
//! each message between `daily_stats` buckets and `batches` counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tern_core::{BatchId, Event, MessageId};
use tern_queue::Position;

use crate::fold::{Applied, FoldState};
use crate::model::{BatchDelta, EventRow, InboundRow, MessageRow, StatsCounts, StatsKey, is_inbound, is_outbound};

/// Everything one transaction writes.
#[derive(Debug, Default)]
pub struct Changes {
    /// New `message_events` rows.
    pub events: Vec<EventRow>,
    /// `messages` rows to write whole.
    pub messages: Vec<MessageRow>,
    /// `inbound_messages` rows to merge (known fields only).
    pub inbound: Vec<InboundRow>,
    /// Changes to add to `daily_stats` buckets.
    pub stats: Vec<(StatsKey, StatsCounts)>,
    /// Buckets that lost messages: deleted if they are now empty.
    pub shrunk: Vec<StatsKey>,
    /// Changes to add to `batches` rows.
    pub batches: Vec<BatchDelta>,
    /// The checkpoint to store with them.
    pub checkpoint: Position,
}

type Contribution =
    (Option<(StatsKey, StatsCounts)>, Option<(BatchId, tern_core::AccountId, tern_core::MessageStatus)>);

fn contribution(row: &MessageRow) -> Contribution {
    (row.bucket(), row.batch_status().map(|(b, a, s, _)| (b, a, s)))
}

/// One batch's changes, being worked out.
#[derive(Debug)]
pub struct Plan {
    rows: HashMap<MessageId, MessageRow>,
    before: HashMap<MessageId, Contribution>,
    fresh: HashMap<MessageId, Vec<Event>>,
    refold: BTreeSet<MessageId>,
    inbound: BTreeMap<MessageId, InboundRow>,
    events: Vec<EventRow>,
    checkpoint: Position,
}

/// The outbound messages some records are about: the rows to load first.
pub fn outbound_ids(records: &[EventRow]) -> Vec<MessageId> {
    let mut ids: Vec<MessageId> =
        records.iter().filter(|r| is_outbound(&r.event.kind)).map(|r| r.event.message_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl Plan {
    /// Applies `records` (in position order, all after the stored
    /// checkpoint) to the `existing` rows of the messages they touch.
    pub fn new(records: Vec<EventRow>, existing: Vec<MessageRow>) -> Self {
        let mut rows: HashMap<MessageId, MessageRow> = existing.into_iter().map(|r| (r.message_id, r)).collect();
        let before = rows.iter().map(|(id, row)| (*id, contribution(row))).collect();
        let mut plan = Self {
            rows: HashMap::new(),
            before,
            fresh: HashMap::new(),
            refold: BTreeSet::new(),
            inbound: BTreeMap::new(),
            events: Vec::new(),
            checkpoint: records.last().map_or(Position::START, EventRow::position),
        };
        for record in &records {
            let event = &record.event;
            if is_inbound(&event.kind) {
                plan.inbound.entry(event.message_id).or_default().absorb(event);
            } else if is_outbound(&event.kind) {
                let row = rows.remove(&event.message_id);
                let row = plan
                    .rows
                    .entry(event.message_id)
                    .or_insert_with(|| row.unwrap_or_else(|| MessageRow::new(event.message_id)));
                row.absorb(event);
                if !plan.refold.contains(&event.message_id) && row.fold.apply(event) == Applied::Refold {
                    plan.refold.insert(event.message_id);
                }
                plan.fresh.entry(event.message_id).or_default().push(event.clone());
            }
        }
        plan.events = records;
        plan
    }

    /// Messages whose status must be folded again from their whole history
    /// (an event arrived out of canonical order).
    pub fn needs_refold(&self) -> Vec<MessageId> {
        self.refold.iter().copied().collect()
    }

    /// Folds again the messages [`Plan::needs_refold`] named, from the
    /// events projected before this batch (`prior`) and this batch's.
    pub fn refold(&mut self, prior: Vec<Event>) {
        let mut histories: HashMap<MessageId, Vec<Event>> = HashMap::new();
        // Only the facts the incremental path folds: an inbound fact filed
        // under an outbound message's id must not end it as `received`.
        for event in prior.into_iter().filter(|e| is_outbound(&e.kind)) {
            histories.entry(event.message_id).or_default().push(event);
        }
        for id in std::mem::take(&mut self.refold) {
            let history = histories.remove(&id).unwrap_or_default();
            let fresh = self.fresh.get(&id).map(Vec::as_slice).unwrap_or_default();
            if let Some(row) = self.rows.get_mut(&id) {
                row.fold = FoldState::refold(history.iter().chain(fresh));
            }
        }
    }

    /// The writes, with the stats and batch deltas.
    pub fn finish(self) -> Changes {
        let mut stats: BTreeMap<StatsKey, StatsCounts> = BTreeMap::new();
        let mut shrunk = BTreeSet::new();
        let mut batches: BTreeMap<BatchId, BatchDelta> = BTreeMap::new();
        let mut messages: Vec<MessageRow> = self.rows.into_values().collect();
        messages.sort_by_key(|r| r.message_id);
        for row in &messages {
            let (old_bucket, old_batch) = self.before.get(&row.message_id).cloned().unwrap_or((None, None));
            let (new_bucket, new_batch) = contribution(row);
            if old_bucket != new_bucket {
                if let Some((key, counts)) = old_bucket {
                    stats.entry(key.clone()).or_default().add(counts, -1);
                    shrunk.insert(key);
                }
                if let Some((key, counts)) = new_bucket {
                    stats.entry(key).or_default().add(counts, 1);
                }
            }
            if old_batch != new_batch
                && let Some((_, _, _, accepted_at)) = row.batch_status()
            {
                let mut delta = |batch: BatchId, account, status, sign| {
                    batches
                        .entry(batch)
                        .or_insert_with(|| BatchDelta {
                            batch_id: batch,
                            account_id: account,
                            messages: 0,
                            by_status: [0; 10],
                            first_accepted_at: accepted_at,
                            last_accepted_at: accepted_at,
                        })
                        .count(status, sign);
                };
                if let Some((batch, account, status)) = old_batch {
                    delta(batch, account, status, -1);
                }
                if let Some((batch, account, status)) = new_batch {
                    delta(batch, account, status, 1);
                }
                if let Some(entry) = new_batch.and_then(|(batch, ..)| batches.get_mut(&batch)) {
                    entry.first_accepted_at = entry.first_accepted_at.min(accepted_at);
                    entry.last_accepted_at = entry.last_accepted_at.max(accepted_at);
                }
            }
        }
        Changes {
            events: self.events,
            messages,
            inbound: self.inbound.into_values().collect(),
            stats: stats.into_iter().filter(|(_, c)| !c.is_zero()).collect(),
            shrunk: shrunk.into_iter().collect(),
            batches: batches.into_values().filter(|d| d.by_status.iter().any(|n| *n != 0)).collect(),
            checkpoint: self.checkpoint,
        }
    }
}
