//! Group commit for MongoDB accepts: concurrent small accepts (single sends)
//! are merged into one accept — one intent, one journal append, one index
//! insert, one publish — instead of six majority writes each.
//!
//! A merged accept is as atomic as any other (one intent, finished by
//! repair if interrupted), and answers every caller with its outcome. Large
//! accepts (batches) go straight through: they are groups already.

use std::sync::Arc;

use async_trait::async_trait;
use tern_core::Event;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::accept::MongoAccept;
use crate::{AcceptBackend, NewEntry, QueueError, Result};

/// Accepts of at most this many entries are grouped.
const SMALL: usize = 8;
/// Most accepts merged into one.
const MAX_GROUP: usize = 256;
/// Merged accepts in flight at once; more callers wait and form bigger groups.
const IN_FLIGHT: usize = 4;
/// Rough bytes of one merged accept's intent; well under the intent limit.
const MAX_GROUP_BYTES: usize = 4 * 1024 * 1024;

impl Pending {
    /// An estimate of its share of an intent document (its payloads, and its
    /// events, which are about as large).
    fn weight(&self) -> usize {
        self.entries.iter().map(|e| 2 * e.payload.len() + 512).sum::<usize>() + 512
    }
}

struct Pending {
    events: Vec<Event>,
    topic: String,
    entries: Vec<NewEntry>,
    reply: oneshot::Sender<Result<()>>,
}

#[derive(Debug)]
pub(super) struct GroupedAccept {
    inner: Arc<MongoAccept>,
    pending: mpsc::Sender<Pending>,
}

impl GroupedAccept {
    pub(super) fn new(inner: Arc<MongoAccept>) -> Self {
        let (pending, inbox) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(inner.clone(), inbox));
        Self { inner, pending }
    }
}

/// Copies an outcome for every caller of a group; the kind (transient or
/// not) is kept, which is what callers decide on.
fn share(outcome: &Result<()>) -> Result<()> {
    match outcome {
        Ok(()) => Ok(()),
        Err(e) if e.is_transient() => Err(QueueError::Unavailable(e.to_string())),
        Err(QueueError::Invalid(m)) => Err(QueueError::Invalid(m.clone())),
        Err(e) => Err(QueueError::Unexpected(anyhow::anyhow!("{e}"))),
    }
}

async fn run(inner: Arc<MongoAccept>, mut inbox: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut group = Vec::with_capacity(MAX_GROUP);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        if inbox.recv_many(&mut group, MAX_GROUP).await == 0 {
            return;
        }
        let batch: Vec<Pending> = std::mem::take(&mut group);
        let inner = inner.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut by_topic: Vec<(String, Vec<Pending>)> = Vec::new();
            for p in batch {
                match by_topic.iter_mut().find(|(t, _)| *t == p.topic) {
                    Some((_, list)) => list.push(p),
                    None => by_topic.push((p.topic.clone(), vec![p])),
                }
            }
            for (topic, list) in by_topic {
                for group in split_by_weight(list) {
                    accept_group(&inner, &topic, group).await;
                }
            }
        });
    }
}

fn split_by_weight(list: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut groups: Vec<Vec<Pending>> = Vec::new();
    let mut weight = 0;
    for p in list {
        let w = p.weight();
        match groups.last_mut() {
            Some(group) if weight + w <= MAX_GROUP_BYTES => {
                weight += w;
                group.push(p);
            }
            _ => {
                weight = w;
                groups.push(vec![p]);
            }
        }
    }
    groups
}

/// Accepts a group as one; if that fails for a reason other than the store
/// being unavailable, each member is tried alone, so one bad accept fails
/// only its own caller.
async fn accept_group(inner: &MongoAccept, topic: &str, group: Vec<Pending>) {
    let events: Vec<Event> = group.iter().flat_map(|p| p.events.iter().cloned()).collect();
    let entries: Vec<NewEntry> = group.iter().flat_map(|p| p.entries.iter().cloned()).collect();
    let outcome = inner.accept(&events, topic, entries).await;
    if group.len() > 1 && matches!(&outcome, Err(e) if !e.is_transient()) {
        for p in group {
            let alone = inner.accept(&p.events, topic, p.entries).await;
            // A caller that gave up waiting is not an error.
            let _ = p.reply.send(alone);
        }
        return;
    }
    for p in group {
        let _ = p.reply.send(share(&outcome));
    }
}

#[async_trait]
impl AcceptBackend for GroupedAccept {
    async fn accept(&self, events: &[Event], topic: &str, entries: Vec<NewEntry>) -> Result<()> {
        if entries.len() > SMALL {
            return self.inner.accept(events, topic, entries).await;
        }
        let (reply, answer) = oneshot::channel();
        let pending = Pending { events: events.to_vec(), topic: topic.to_owned(), entries, reply };
        if let Err(mpsc::error::SendError(pending)) = self.pending.send(pending).await {
            return self.inner.accept(&pending.events, &pending.topic, pending.entries).await;
        }
        answer.await.map_err(|_| QueueError::Unavailable("the accept group was dropped".into()))?
    }

    async fn repair(&self) -> Result<usize> {
        self.inner.repair().await
    }
}
