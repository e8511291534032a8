//! Group commit with a decoupled flush, as databases do it.
//!
//! Every write of the process goes to one task that owns the write
//! connection. It takes whatever operations are waiting, runs them in one
//! transaction and commits — writing the WAL frames, without waiting for the
//! disk (`synchronous = NORMAL`). Every committed group then goes, in commit
//! order, to the [`Syncer`]: it fsyncs the WAL file (covering every frame
//! committed before the call) when a group holds a durable write, and
//! answers the callers in commit order. The writer meanwhile executes the
//! next group, so the flush of one group overlaps the work of the next, and
//! one fsync covers every group committed while the previous one ran.
//!
//! So a caller is answered only when its writes, and every write committed
//! before them, are on disk — a claim never hands out an entry whose publish
//! a power cut could still take back. Readers on other connections may see
//! a commit up to one fsync earlier; journal reads flush before returning
//! what they saw (see `SqliteStore::read_from`).
//!
//! A failed fsync is fatal for the writer, as in PostgreSQL: after an I/O
//! error the kernel may drop the dirty pages and report the next fsync as a
//! success, so nothing written after it could be trusted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::ops::{Op, Outcome};
use crate::{QueueError, Result};

/// Most operations folded into one transaction; bounds a commit's latency.
const MAX_GROUP: usize = 512;

/// Where the writer answers one operation.
pub(super) type Reply = oneshot::Sender<Result<Outcome>>;

/// An operation and where to answer it.
pub(super) type Job = (Op, Reply);

/// One committed group, waiting to be answered.
struct Committed {
    /// Whether it holds a write that must be on disk before anyone is answered.
    durable: bool,
    answers: Vec<(Reply, Result<Outcome>)>,
}

fn answer(reply: Reply, outcome: Result<Outcome>) {
    // The caller may have given up waiting; its loss.
    let _ = reply.send(outcome);
}

fn fail_all(replies: impl IntoIterator<Item = Reply>, message: &str) {
    for reply in replies {
        answer(reply, Err(QueueError::Unavailable(message.to_owned())));
    }
}

const BROKEN: &str = "the SQLite WAL could not be flushed; the store refuses writes until the process restarts";

pub(super) struct Writer {
    conn: SqliteConnection,
    inbox: mpsc::Receiver<Job>,
    syncer: mpsc::UnboundedSender<Committed>,
    broken: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the writer on `conn` (which must be in WAL mode with
    /// `synchronous = NORMAL`) and its syncer on the WAL file `wal`.
    pub(super) fn spawn(conn: SqliteConnection, wal: PathBuf) -> mpsc::Sender<Job> {
        let (tx, inbox) = mpsc::channel(4 * MAX_GROUP);
        let (syncer, committed) = mpsc::unbounded_channel();
        let broken = Arc::new(AtomicBool::new(false));
        tokio::spawn(Syncer { wal, committed, broken: broken.clone() }.run());
        tokio::spawn(Self { conn, inbox, syncer, broken }.run());
        tx
    }

    async fn run(mut self) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while self.inbox.recv_many(&mut group, MAX_GROUP).await > 0 {
            // The callers answered by the last flush are about to send their
            // next operations; yielding once lets them join this group.
            tokio::task::yield_now().await;
            while group.len() < MAX_GROUP {
                match self.inbox.try_recv() {
                    Ok(op) => group.push(op),
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group).await;
        }
        // Every sender is gone: the store was dropped. Closing checkpoints the WAL.
        let _ = self.conn.close().await;
    }

    async fn commit_group(&mut self, group: &mut Vec<Job>) {
        let started = std::time::Instant::now();
        if self.broken.load(Ordering::Acquire) {
            return fail_all(group.drain(..).map(|(_, reply)| reply), BROKEN);
        }
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut self.conn).await {
            return fail_all(group.drain(..).map(|(_, reply)| reply), &e.to_string());
        }
        let now = chrono::Utc::now().timestamp_millis();
        let durable = group.iter().any(|(op, _)| op.needs_fsync());
        let mut answers = Vec::with_capacity(group.len());
        let (accepts, others): (Vec<Job>, Vec<Job>) = group.drain(..).partition(|(op, _)| op.is_accept());
        if accepts.len() > 1 && self.accept_together(&accepts, now).await {
            answers.extend(accepts.into_iter().map(|(_, reply)| (reply, Ok(Outcome::Done))));
        } else {
            for (op, reply) in accepts {
                let outcome = self.run_op(&op, now).await;
                answers.push((reply, outcome));
            }
        }
        for (op, reply) in others {
            let outcome = self.run_op(&op, now).await;
            answers.push((reply, outcome));
        }
        let executed = started.elapsed();
        if let Err(e) = sqlx::query("COMMIT").execute(&mut self.conn).await {
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
            tracing::error!(error = %e, "sqlite commit failed; the whole group is reported failed");
            return fail_all(answers.into_iter().map(|(reply, _)| reply), &e.to_string());
        }
        tracing::trace!(
            ops = answers.len(),
            durable,
            execute_us = executed.as_micros() as u64,
            "sqlite group committed"
        );
        // Even a group that needs no flush of its own waits behind the groups
        // before it, so nobody acts on a write that is not yet durable.
        if let Err(mpsc::error::SendError(group)) = self.syncer.send(Committed { durable, answers }) {
            fail_all(group.answers.into_iter().map(|(reply, _)| reply), "the SQLite syncer has stopped");
        }
    }

    /// Runs many accepts as one set of multi-row statements: a few
    /// statements for the group instead of five per accept, which is what
    /// single sends at thousands per second need. If anything fails, the
    /// attempt is rolled back and the caller runs them one by one, so one
    /// bad accept still fails alone.
    async fn accept_together(&mut self, accepts: &[Job], now: i64) -> bool {
        if sqlx::query("SAVEPOINT accepts").execute(&mut self.conn).await.is_err() {
            return false;
        }
        let ops: Vec<&Op> = accepts.iter().map(|(op, _)| op).collect();
        let outcome = super::ops::accept_many(&mut self.conn, &ops, now).await;
        let settled = match &outcome {
            Ok(()) => sqlx::query("RELEASE accepts").execute(&mut self.conn).await.is_ok(),
            Err(e) => {
                tracing::debug!(error = %e, "grouped accepts failed; running them one by one");
                let _ = sqlx::query("ROLLBACK TO accepts").execute(&mut self.conn).await;
                let _ = sqlx::query("RELEASE accepts").execute(&mut self.conn).await;
                false
            }
        };
        outcome.is_ok() && settled
    }

    /// Runs one operation, inside a savepoint when it needs one, so a
    /// failing operation leaves no partial effects and spares the group.
    async fn run_op(&mut self, op: &Op, now: i64) -> Result<Outcome> {
        if !op.needs_savepoint() {
            return op.execute(&mut self.conn, now).await;
        }
        sqlx::query("SAVEPOINT op").execute(&mut self.conn).await?;
        match op.execute(&mut self.conn, now).await {
            Ok(outcome) => {
                sqlx::query("RELEASE op").execute(&mut self.conn).await?;
                Ok(outcome)
            }
            Err(e) => {
                sqlx::query("ROLLBACK TO op").execute(&mut self.conn).await?;
                sqlx::query("RELEASE op").execute(&mut self.conn).await?;
                Err(e)
            }
        }
    }
}

/// Flushes the WAL for committed groups, then answers their callers.
struct Syncer {
    wal: PathBuf,
    committed: mpsc::UnboundedReceiver<Committed>,
    broken: Arc<AtomicBool>,
}

impl Syncer {
    async fn run(mut self) {
        let mut pending = Vec::new();
        while self.committed.recv_many(&mut pending, usize::MAX).await > 0 {
            let mut flushed = Ok(());
            if pending.iter().any(|group| group.durable) && !self.broken.load(Ordering::Acquire) {
                let started = std::time::Instant::now();
                flushed = flush_wal(self.wal.clone()).await;
                tracing::trace!(
                    groups = pending.len(),
                    fsync_us = started.elapsed().as_micros() as u64,
                    "sqlite wal flushed"
                );
                if let Err(e) = &flushed {
                    tracing::error!(error = %e, "{BROKEN}");
                    self.broken.store(true, Ordering::Release);
                }
            }
            let broken = self.broken.load(Ordering::Acquire);
            for group in pending.drain(..) {
                for (reply, outcome) in group.answers {
                    match &flushed {
                        Ok(()) if !(broken && group.durable) => answer(reply, outcome),
                        Ok(()) => fail_all([reply], BROKEN),
                        Err(e) => fail_all([reply], &format!("cannot flush the SQLite WAL: {e}")),
                    }
                }
            }
        }
    }
}

/// fsyncs the WAL file: every frame written before the call is then on disk,
/// whichever connection or process wrote it. Opened per flush: SQLite may
/// recreate the file, and an open is cheap next to the fsync.
/// No WAL file means the last connection closed and SQLite checkpointed and
/// synced everything into the database file.
pub(super) async fn flush_wal(wal: PathBuf) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || match std::fs::OpenOptions::new().write(true).open(&wal) {
        Ok(file) => file.sync_data(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}
