//! The projector: tails the journal from the store's checkpoint and applies
//! it in batches, each in one SQL transaction with the checkpoint.
//!
//! The next batch is read from the journal while the current one is
//! written, so reading and writing use both cores. A failure drops the
//! read-ahead and starts again from the stored checkpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tern_queue::{Journal, Position};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::EventRow;
use crate::store::ReportStore;
use crate::{ReportingError, metrics as names};

/// Where the projector stands, shared with `/readyz`.
#[derive(Debug, Default)]
pub struct Progress {
    checkpoint: AtomicU64,
    head: AtomicU64,
    lag_ms: AtomicU64,
    healthy: AtomicBool,
}

/// A snapshot of [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Lag {
    /// Last journal position projected.
    pub checkpoint: u64,
    /// Journal head when last looked at.
    pub head: u64,
    /// Records not yet projected.
    pub events: u64,
    /// Age of the last projected event while records remain, in seconds (0 when caught up).
    pub seconds: f64,
    /// Whether the last step succeeded.
    pub healthy: bool,
}

impl Progress {
    /// The current figures.
    pub fn lag(&self) -> Lag {
        let checkpoint = self.checkpoint.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Relaxed);
        Lag {
            checkpoint,
            head,
            events: head.saturating_sub(checkpoint),
            seconds: self.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            healthy: self.healthy.load(Ordering::Relaxed),
        }
    }

    fn record(&self, checkpoint: Position, head: Position, last_at: Option<DateTime<Utc>>) {
        let behind = head.0.saturating_sub(checkpoint.0);
        let lag_ms = match last_at {
            Some(at) if behind > 0 => u64::try_from((Utc::now() - at).num_milliseconds()).unwrap_or(0),
            _ => 0,
        };
        self.checkpoint.store(checkpoint.0, Ordering::Relaxed);
        self.head.store(head.0.max(checkpoint.0), Ordering::Relaxed);
        self.lag_ms.store(lag_ms, Ordering::Relaxed);
        self.healthy.store(true, Ordering::Relaxed);
        ::metrics::gauge!(names::CHECKPOINT).set(checkpoint.0 as f64);
        ::metrics::gauge!(names::LAG_EVENTS).set(behind as f64);
        ::metrics::gauge!(names::LAG_SECONDS).set(lag_ms as f64 / 1000.0);
    }
}

/// What a catch-up or a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    /// Records applied.
    pub events: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The checkpoint at the end.
    pub checkpoint: Position,
}

impl Run {
    /// Records applied per second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Projects one journal into one reporting store.
#[derive(Debug, Clone)]
pub struct Projector {
    journal: Journal,
    store: ReportStore,
    batch_size: usize,
    progress: Arc<Progress>,
}

/// Reads the journal one batch ahead of the writer, and makes its rows.
struct ReadAhead {
    journal: Journal,
    limit: usize,
    next: JoinHandle<Result<Vec<EventRow>, ReportingError>>,
}

impl ReadAhead {
    fn start(journal: Journal, after: Position, limit: usize) -> Self {
        let next = Self::spawn(&journal, after, limit);
        Self { journal, limit, next }
    }

    fn spawn(journal: &Journal, after: Position, limit: usize) -> JoinHandle<Result<Vec<EventRow>, ReportingError>> {
        let journal = journal.clone();
        tokio::spawn(async move { read(&journal, after, limit).await })
    }

    /// The next batch; the read of the one after it starts at once.
    async fn next(&mut self, fallback: Position) -> Result<Vec<EventRow>, ReportingError> {
        let records = (&mut self.next).await.map_err(|e| anyhow::anyhow!("journal reader stopped: {e}"))??;
        let after = records.last().map_or(fallback, EventRow::position);
        self.next = Self::spawn(&self.journal, after, self.limit);
        Ok(records)
    }
}

async fn read(journal: &Journal, after: Position, limit: usize) -> Result<Vec<EventRow>, ReportingError> {
    journal.read_from(after, limit).await?.into_iter().map(EventRow::new).collect()
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.next.abort();
    }
}

impl Projector {
    /// A projector applying up to `batch_size` records per transaction.
    pub fn new(journal: Journal, store: ReportStore, batch_size: usize) -> Self {
        Self { journal, store, batch_size: batch_size.max(1), progress: Arc::new(Progress::default()) }
    }

    /// Where it stands (for `/readyz` and tests).
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// The store it writes.
    pub fn store(&self) -> &ReportStore {
        &self.store
    }

    /// Reads one batch after the stored checkpoint and applies it (without
    /// reading ahead); returns how many records it applied.
    pub async fn step(&self) -> Result<usize, ReportingError> {
        let checkpoint = self.store.checkpoint().await?;
        let records = read(&self.journal, checkpoint, self.batch_size).await?;
        if records.is_empty() {
            let head = self.journal.head().await?;
            self.progress.record(checkpoint, head, None);
            return Ok(0);
        }
        Ok(self.apply(records).await?.applied)
    }

    /// Applies everything the journal holds now; returns when a read comes
    /// back empty.
    #[tracing::instrument(skip_all, fields(dialect = self.store.dialect()))]
    pub async fn catch_up(&self) -> Result<Run, ReportingError> {
        self.catch_up_with(&indicatif::ProgressBar::hidden()).await
    }

    async fn catch_up_with(&self, bar: &indicatif::ProgressBar) -> Result<Run, ReportingError> {
        let started = Instant::now();
        let mut checkpoint = self.store.checkpoint().await?;
        let mut events = 0u64;
        let mut reader = ReadAhead::start(self.journal.clone(), checkpoint, self.batch_size);
        loop {
            let records = reader.next(checkpoint).await?;
            if records.is_empty() {
                let head = self.journal.head().await?;
                self.progress.record(checkpoint, head, None);
                return Ok(Run { events, elapsed: started.elapsed(), checkpoint });
            }
            let outcome = self.apply(records).await?;
            checkpoint = outcome.checkpoint;
            events += outcome.applied as u64;
            bar.set_position(checkpoint.0);
        }
    }

    async fn apply(&self, records: Vec<EventRow>) -> Result<crate::store::BatchOutcome, ReportingError> {
        let started = Instant::now();
        let (count, last_at) = (records.len(), records.last().map(|r| r.event.at));
        let outcome = self.store.apply_rows(records).await;
        let result = if outcome.is_ok() { "ok" } else { "error" };
        ::metrics::counter!(names::BATCHES, "result" => result).increment(1);
        let outcome = outcome?;
        ::metrics::histogram!(names::BATCH_SECONDS).record(started.elapsed().as_secs_f64());
        ::metrics::counter!(names::EVENTS).increment(outcome.applied as u64);
        let head = if count < self.batch_size { outcome.checkpoint } else { self.journal.head().await? };
        self.progress.record(outcome.checkpoint, head, last_at);
        Ok(outcome)
    }

    /// Tails the journal until `shutdown`, polling every `poll` once caught
    /// up and backing off (up to 10 s) while the journal or the store fails.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>, poll: Duration) {
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            let wait = match self.catch_up().await {
                Ok(_) => {
                    failures = 0;
                    poll
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.progress.healthy.store(false, Ordering::Relaxed);
                    let wait = Duration::from_millis(100u64.saturating_mul(2u64.pow(failures.min(7))))
                        .min(Duration::from_secs(10));
                    tracing::warn!(error = %e, retry_in = ?wait, "projection failed; retrying from the stored checkpoint");
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Drops the store, creates it again and replays the whole journal,
    /// with a progress bar on the terminal when `show_progress`.
    #[tracing::instrument(skip_all, fields(dialect = self.store.dialect()))]
    pub async fn rebuild(&self, show_progress: bool) -> Result<Run, ReportingError> {
        let head = self.journal.head().await?;
        let bar = if show_progress {
            let bar = indicatif::ProgressBar::new(head.0);
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} positions, {per_sec}, eta {eta}",
            )
            .map_err(anyhow::Error::from)?;
            bar.set_style(style);
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        self.store.reset().await?;
        let run = self.catch_up_with(&bar).await;
        bar.finish_and_clear();
        run
    }
}
