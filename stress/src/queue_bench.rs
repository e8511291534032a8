//! `tern bench queue`: publish → claim → ack and journal-append throughput
//! of a store, durable commits on, printed as a table.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use tern_core::{AccountId, Event, EventKind, MessageId};
use tern_queue::{ConsumerOptions, NewEntry, Store};

/// What to measure.
#[derive(Debug, Clone)]
pub struct QueueBenchPlan {
    /// Publish/claim/ack batch sizes.
    pub batch_sizes: Vec<usize>,
    /// Concurrent consumers.
    pub consumer_counts: Vec<usize>,
    /// Concurrent producers (submission has many requests publishing at once).
    pub producer_counts: Vec<usize>,
    /// Messages per run = `batch × runs_per_batch`, clamped to `[min_messages, max_messages]`.
    pub batches_per_run: usize,
    /// Smallest run.
    pub min_messages: usize,
    /// Largest run.
    pub max_messages: usize,
    /// Journal append batch sizes.
    pub journal_batch_sizes: Vec<usize>,
    /// Concurrent journal appenders.
    pub journal_appenders: usize,
}

impl Default for QueueBenchPlan {
    fn default() -> Self {
        Self {
            batch_sizes: vec![1, 100, 1_000],
            consumer_counts: vec![1, 4],
            producer_counts: vec![1, 4],
            batches_per_run: 500,
            min_messages: 2_000,
            max_messages: 100_000,
            journal_batch_sizes: vec![1, 100, 1_000],
            journal_appenders: 4,
        }
    }
}

/// One measured row.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// What was measured.
    pub name: String,
    /// Items moved.
    pub items: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl BenchRow {
    /// Items per second.
    pub fn rate(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs the plan against `store`, printing each row as it completes.
pub async fn run(store: &Store, plan: &QueueBenchPlan) -> anyhow::Result<Vec<BenchRow>> {
    let backend = store.backend_name();
    println!("| backend | measurement | items | seconds | per second |");
    println!("|---|---|---:|---:|---:|");
    let mut rows = Vec::new();
    let mut report = |row: BenchRow| {
        println!("| {backend} | {} | {} | {:.2} | {:.0} |", row.name, row.items, row.elapsed.as_secs_f64(), row.rate());
        rows.push(row);
    };
    for &batch in &plan.batch_sizes {
        for &producers in &plan.producer_counts {
            for &consumers in &plan.consumer_counts {
                let messages = (batch * plan.batches_per_run).clamp(plan.min_messages, plan.max_messages);
                let elapsed = pipeline(store, batch, producers, consumers, messages).await?;
                report(BenchRow {
                    name: format!("publish+claim+ack, batch {batch}, {producers} producer(s), {consumers} consumer(s)"),
                    items: messages,
                    elapsed,
                });
            }
        }
    }
    for &batch in &plan.journal_batch_sizes {
        let events = (batch * plan.batches_per_run).clamp(plan.min_messages, plan.max_messages);
        let elapsed = journal(store, batch, plan.journal_appenders, events).await?;
        report(BenchRow {
            name: format!("journal append, batch {batch}, {} appenders", plan.journal_appenders),
            items: events,
            elapsed,
        });
    }
    Ok(rows)
}

/// Moves `messages` entries through a fresh topic: `producers` publishing in
/// batches while `consumers` claim and ack in batches. Returns the time until
/// the last ack.
async fn pipeline(
    store: &Store,
    batch: usize,
    producers: usize,
    consumers: usize,
    messages: usize,
) -> anyhow::Result<Duration> {
    // Short, like Tern's stage topics ("mt", "dlr"): the name is stored with every entry.
    let topic = format!("b{}", &MessageId::new().to_string()[28..]);
    let acked = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let batches: Vec<usize> = (0..messages).step_by(batch).collect();
    let mut publishers = Vec::new();
    for p in 0..producers {
        let producer = store.queue().producer(&topic);
        let mine: Vec<usize> = batches.iter().copied().skip(p).step_by(producers).collect();
        publishers.push(tokio::spawn(async move {
            let payload = vec![b'x'; 256];
            for first in mine {
                // Entry ids are message ids in Tern (UUIDv7, time-ordered), as here.
                let entries = (first..(first + batch).min(messages))
                    .map(|_| NewEntry::new(MessageId::new().to_string(), payload.clone()))
                    .collect();
                producer.publish(entries).await?;
            }
            anyhow::Ok(())
        }));
    }
    let options = ConsumerOptions { lease: Duration::from_secs(60), max_attempts: 5 };
    let mut workers = Vec::new();
    for _ in 0..consumers {
        let consumer = store.queue().consumer(&topic, options);
        let acked = acked.clone();
        workers.push(tokio::spawn(async move {
            while acked.load(Ordering::Relaxed) < messages {
                let claim = consumer.claim(batch).await?;
                if claim.deliveries.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let n = claim.deliveries.len();
                let lost = consumer.ack_all(claim.deliveries).await?;
                if !lost.is_empty() {
                    bail!("{} leases lost during the benchmark", lost.len());
                }
                acked.fetch_add(n, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for publisher in publishers {
        publisher.await.context("publisher panicked")??;
    }
    for worker in workers {
        worker.await.context("consumer panicked")??;
    }
    let elapsed = started.elapsed();
    let depth = store.queue().depth(&topic).await?;
    if depth.pending() != 0 || acked.load(Ordering::Relaxed) != messages {
        bail!("benchmark lost track of entries: {depth:?}, acked {}", acked.load(Ordering::Relaxed));
    }
    store.queue().purge_acked(Duration::ZERO).await?;
    Ok(elapsed)
}

/// Appends `events` events with `appenders` concurrent writers in batches of `batch`.
async fn journal(store: &Store, batch: usize, appenders: usize, events: usize) -> anyhow::Result<Duration> {
    let account = Some(AccountId::new());
    let started = Instant::now();
    let per_appender = events.div_ceil(appenders);
    let mut tasks = Vec::new();
    for _ in 0..appenders {
        let journal = store.journal().clone();
        tasks.push(tokio::spawn(async move {
            let mut written = 0;
            while written < per_appender {
                let n = batch.min(per_appender - written);
                let batch: Vec<Event> =
                    (0..n).map(|_| Event::new(MessageId::new(), account, Utc::now(), EventKind::Released)).collect();
                journal.append(&batch).await?;
                written += n;
            }
            anyhow::Ok(written)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.context("appender panicked")??;
    }
    let elapsed = started.elapsed();
    if total < events {
        bail!("appended {total} of {events} events");
    }
    Ok(elapsed)
}
