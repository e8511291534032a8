//! Group commit with a decoupled flush, as databases do it.
//!
//! Every write of the process goes to one task that owns the write
//! connection. It takes whatever operations are waiting, runs them in one
//! transaction and commits — writing the WAL frames, without waiting for the
//! disk. Groups that must be durable then go to the [`Syncer`], which fsyncs
//! the WAL file (covering every frame committed before the call) and only
//! then answers their callers. The writer meanwhile executes the next group,
//! so the disk flush of one group overlaps the work of the next, and one
//! fsync covers every group committed while the previous one ran.
//!
//! Callers are answered only when their writes are on disk, exactly as with
//! `synchronous = FULL`. The difference: other connections may see a commit
//! up to one fsync (≈1-2 ms) before it is durable, so after a power cut (not
//! a process crash: the frames are in the OS already) a reader may have acted
//! on a write that is gone and whose writer was never told it succeeded.

use std::path::PathBuf;

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::ops::{Op, Outcome};
use crate::{QueueError, Result};

/// Most operations folded into one transaction; bounds a commit's latency.
const MAX_GROUP: usize = 512;

pub(super) type Reply<T> = oneshot::Sender<Result<T>>;

/// Operations committed but not yet flushed, with their outcomes.
type Committed = Vec<(Op, Result<Outcome>)>;

pub(super) struct Writer {
    conn: SqliteConnection,
    inbox: mpsc::Receiver<Op>,
    syncer: mpsc::UnboundedSender<Committed>,
}

impl Writer {
    /// Starts the writer on `conn` (which must be in WAL mode with
    /// `synchronous = NORMAL`) and its syncer on the WAL file `wal`.
    pub(super) fn spawn(conn: SqliteConnection, wal: PathBuf) -> mpsc::Sender<Op> {
        let (tx, inbox) = mpsc::channel(4 * MAX_GROUP);
        let (syncer, committed) = mpsc::unbounded_channel();
        tokio::spawn(Syncer { wal, committed }.run());
        tokio::spawn(Self { conn, inbox, syncer }.run());
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

    async fn commit_group(&mut self, group: &mut Vec<Op>) {
        let started = std::time::Instant::now();
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut self.conn).await {
            let message = e.to_string();
            for op in group.drain(..) {
                op.fail(QueueError::Unavailable(message.clone()));
            }
            return;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut done = Vec::with_capacity(group.len());
        for op in group.drain(..) {
            let outcome = self.run_op(&op, now).await;
            done.push((op, outcome));
        }
        let executed = started.elapsed();
        if let Err(e) = sqlx::query("COMMIT").execute(&mut self.conn).await {
            let message = e.to_string();
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
            tracing::error!(error = %message, "sqlite commit failed; the whole group is reported failed");
            for (op, _) in done {
                op.fail(QueueError::Unavailable(message.clone()));
            }
            return;
        }
        let durable = done.iter().any(|(op, _)| op.needs_fsync());
        tracing::trace!(ops = done.len(), durable, execute_us = executed.as_micros() as u64, "sqlite group committed");
        if !durable {
            for (op, outcome) in done {
                op.finish(outcome);
            }
            return;
        }
        if let Err(mpsc::error::SendError(done)) = self.syncer.send(done) {
            for (op, _) in done {
                op.fail(QueueError::Unavailable("the SQLite syncer has stopped".into()));
            }
        }
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
}

impl Syncer {
    async fn run(mut self) {
        let mut pending = Vec::new();
        while self.committed.recv_many(&mut pending, usize::MAX).await > 0 {
            let started = std::time::Instant::now();
            let wal = self.wal.clone();
            // Opened per flush: SQLite may recreate the file, and an open is
            // cheap next to the fsync.
            let flushed =
                tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(&wal)?.sync_data())
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            tracing::trace!(
                groups = pending.len(),
                fsync_us = started.elapsed().as_micros() as u64,
                "sqlite wal flushed"
            );
            for group in pending.drain(..) {
                for (op, outcome) in group {
                    match &flushed {
                        Ok(()) => op.finish(outcome),
                        Err(e) => op.fail(QueueError::Unavailable(format!("cannot flush the SQLite WAL: {e}"))),
                    }
                }
            }
        }
    }
}
