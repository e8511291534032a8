//! The clock: releases scheduled messages at `send_at`, expires messages
//! whose validity passed, and runs the store's maintenance. Any number of
//! schedulers may run; a lease elects the one that acts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use tern_core::{AccountId, Event, EventKind, MessageId, MessageStatus};
use tern_handlers::billing::{self, reached_smsc};
use tern_queue::{ConsumerOptions, NewEntry, StatusUpdate, Store};
use tokio::sync::watch;

use crate::config::SchedulerConfig;
use crate::leader::Leadership;
use crate::mt::MT_TOPIC;
use crate::{WorkerError, metrics};

/// Topic of scheduled messages (submission publishes them hidden until `send_at`).
pub const SCHEDULED_TOPIC: &str = "scheduled";
/// Name of the scheduler's lease.
pub const SCHEDULER_LEASE: &str = "scheduler";
/// Messages released or expired per step.
const STEP: usize = 500;

/// What one scheduler did (for tests and logs).
#[derive(Debug, Default)]
pub struct SchedulerStats {
    /// Scheduled messages this process released.
    pub released: AtomicU64,
    /// Messages this process expired.
    pub expired: AtomicU64,
}

/// The scheduler.
#[derive(Debug, Clone)]
pub struct Scheduler {
    store: Store,
    config: SchedulerConfig,
    leadership: Leadership,
    stats: Arc<SchedulerStats>,
}

impl Scheduler {
    /// A scheduler over `store`.
    pub fn new(store: Store, config: SchedulerConfig) -> Self {
        let leadership =
            Leadership::new(store.clone(), SCHEDULER_LEASE, Duration::from_millis(config.lease_ms.max(300)));
        Self { store, config, leadership, stats: Arc::default() }
    }

    /// What this process did so far.
    pub fn stats(&self) -> Arc<SchedulerStats> {
        self.stats.clone()
    }

    /// Whether this process is the one acting.
    pub fn is_leader(&self) -> bool {
        self.leadership.is_leader()
    }

    /// Runs until `shutdown`; gives up the lease on the way out.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let keeper = tokio::spawn(self.leadership.clone().keep(shutdown.clone()));
        let mut shutdown = shutdown;
        let tick = Duration::from_millis(self.config.tick_ms.max(10));
        let (mut last_repair, mut last_purge) = (None::<Instant>, None::<Instant>);
        while !*shutdown.borrow() {
            if self.leadership.is_leader()
                && let Err(e) = self.tick(&mut last_repair, &mut last_purge).await
            {
                tracing::warn!(error = %e, "scheduler step failed; retrying next tick");
            }
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => {}
            }
        }
        let _ = keeper.await;
    }

    async fn tick(
        &self,
        last_repair: &mut Option<Instant>,
        last_purge: &mut Option<Instant>,
    ) -> Result<(), WorkerError> {
        while self.release_due().await? == STEP && self.leadership.is_leader() {}
        while self.expire_due().await? == STEP && self.leadership.is_leader() {}
        let due = |last: &Option<Instant>, every: u64| last.is_none_or(|t| t.elapsed() >= Duration::from_secs(every));
        if due(last_repair, self.config.repair_every_secs) {
            let repaired = self.store.repair().await?;
            if repaired > 0 {
                tracing::info!(repaired, "finished interrupted accepts");
            }
            *last_repair = Some(Instant::now());
        }
        if due(last_purge, self.config.purge_every_secs) {
            let entries = self.store.queue().purge_acked(Duration::from_secs(self.config.queue_retention_secs)).await?;
            let before = Utc::now()
                - chrono::TimeDelta::seconds(i64::try_from(self.config.idempotency_retention_secs).unwrap_or(i64::MAX));
            let requests = self.store.accounts().purge_requests(before).await?;
            let smsc_ids =
                self.store.smsc().purge_smsc_ids(Duration::from_secs(self.config.smsc_id_retention_secs)).await?;
            let mo_parts =
                self.store.smsc().purge_mo_parts(Duration::from_secs(self.config.mo_part_retention_secs)).await?;
            tracing::info!(
                entries,
                requests,
                smsc_ids,
                mo_parts,
                "purged acked queue entries, expired idempotency records, old SMSC ids and orphan inbound parts"
            );
            *last_purge = Some(Instant::now());
        }
        Ok(())
    }

    /// Releases scheduled messages whose time came; returns how many entries it took.
    pub async fn release_due(&self) -> Result<usize, WorkerError> {
        let consumer = self.store.queue().consumer(SCHEDULED_TOPIC, ConsumerOptions::default());
        let claimed = consumer.claim(STEP).await?;
        let taken = claimed.deliveries.len();
        if taken == 0 {
            return Ok(0);
        }
        let now = Utc::now();
        let mut accepted: Vec<(Event, Vec<u8>)> = Vec::with_capacity(taken);
        for delivery in &claimed.deliveries {
            match delivery.payload_json::<Event>() {
                Ok(event) if event.account_id.is_some() => accepted.push((event, delivery.payload().to_vec())),
                _ => tracing::error!(entry = delivery.id(), "unreadable scheduled entry; dropped"),
            }
        }
        let keys: Vec<(AccountId, MessageId)> =
            accepted.iter().filter_map(|(e, _)| Some((e.account_id?, e.message_id))).collect();
        let finished = self.store.messages().finished(&keys).await?;
        let mut events = Vec::new();
        let mut entries = Vec::new();
        for (event, payload) in accepted.into_iter().filter(|(e, _)| !finished.contains(&e.message_id)) {
            events.push(Event::new(event.message_id, event.account_id, now, EventKind::Released));
            entries.push(NewEntry::new(event.message_id.to_string(), payload));
        }
        let released = entries.len();
        self.store.record(&events).await?;
        self.store.queue().producer(MT_TOPIC).publish(entries).await?;
        consumer.ack_all(claimed.deliveries).await?;
        self.stats.released.fetch_add(released as u64, Ordering::Relaxed);
        ::metrics::counter!(metrics::RELEASED).increment(released as u64);
        Ok(taken)
    }

    /// Expires messages past their validity; returns how many it examined.
    pub async fn expire_due(&self) -> Result<usize, WorkerError> {
        self.expire_as_of(Utc::now()).await
    }

    /// Expires messages whose validity had passed at `now` (tests move the clock).
    pub async fn expire_as_of(&self, now: chrono::DateTime<Utc>) -> Result<usize, WorkerError> {
        let grace = chrono::TimeDelta::seconds(i64::try_from(self.config.submitted_grace_secs).unwrap_or(i64::MAX));
        let rows = self.store.messages().expirable(now, now - grace, STEP).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<MessageId> = rows.iter().map(|r| r.message_id).collect();
        let mut histories: HashMap<MessageId, Vec<Event>> = HashMap::new();
        for event in self.store.journal().messages_events(&ids).await? {
            histories.entry(event.message_id).or_default().push(event);
        }
        let mut events = Vec::new();
        let mut stale = Vec::new();
        let mut expired = 0u64;
        for row in &rows {
            let history = histories.remove(&row.message_id).unwrap_or_default();
            match MessageStatus::fold(&history) {
                // The index lagged behind the journal: bring it up to date instead.
                Some(status) if status.is_terminal() => {
                    let at = history.iter().map(|e| e.at).max().unwrap_or(now);
                    let events = u32::try_from(history.len()).unwrap_or(u32::MAX);
                    let (account_id, message_id) = (row.account_id, row.message_id);
                    stale.push(StatusUpdate { account_id, message_id, status, at, events });
                }
                Some(_) => {
                    expired += 1;
                    events.push(Event::new(row.message_id, Some(row.account_id), now, EventKind::Expired));
                    if !reached_smsc(&history) {
                        events.extend(
                            billing::refund(&self.store, row.message_id, Some(row.account_id), "expired", now).await?,
                        );
                    }
                }
                None => {}
            }
        }
        self.store.record(&events).await?;
        self.store.messages().update_statuses(&stale).await?;
        self.stats.expired.fetch_add(expired, Ordering::Relaxed);
        ::metrics::counter!(metrics::EXPIRED).increment(expired);
        Ok(rows.len())
    }
}
