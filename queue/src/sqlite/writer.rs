//! Group commit: every write of the process goes to one task that owns the
//! write connection. It takes whatever operations are waiting, runs them in
//! one transaction (each in a savepoint, so one failure spares the others),
//! commits once — one fsync — and only then answers each caller. Thousands of
//! small durable writes per second cost tens of fsyncs, not thousands.

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::ops::Op;
use crate::{QueueError, Result};

/// Most operations folded into one transaction; bounds a commit's latency.
const MAX_GROUP: usize = 512;

pub(super) type Reply<T> = oneshot::Sender<Result<T>>;

pub(super) struct Writer {
    conn: SqliteConnection,
    inbox: mpsc::Receiver<Op>,
    /// Whether the connection currently fsyncs on commit (`synchronous = FULL`).
    fsync_on_commit: bool,
}

impl Writer {
    pub(super) fn spawn(conn: SqliteConnection) -> mpsc::Sender<Op> {
        let (tx, inbox) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(Self { conn, inbox, fsync_on_commit: true }.run());
        tx
    }

    async fn run(mut self) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while self.inbox.recv_many(&mut group, MAX_GROUP).await > 0 {
            self.commit_group(&mut group).await;
        }
        // Every sender is gone: the store was dropped. Closing checkpoints the WAL.
        let _ = self.conn.close().await;
    }

    async fn commit_group(&mut self, group: &mut Vec<Op>) {
        let fsync = group.iter().any(Op::needs_fsync);
        let mut begin = self.set_fsync(fsync).await;
        if begin.is_ok() {
            begin = sqlx::query("BEGIN IMMEDIATE").execute(&mut self.conn).await.map(drop);
        }
        if let Err(e) = begin {
            let message = e.to_string();
            for op in group.drain(..) {
                op.fail(QueueError::Unavailable(message.clone()));
            }
            return;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut done = Vec::with_capacity(group.len());
        for op in group.drain(..) {
            let outcome = self.in_savepoint(&op, now).await;
            done.push((op, outcome));
        }
        match sqlx::query("COMMIT").execute(&mut self.conn).await {
            Ok(_) => {
                for (op, outcome) in done {
                    op.finish(outcome);
                }
            }
            Err(e) => {
                let message = e.to_string();
                let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
                tracing::error!(error = %message, "sqlite commit failed; the whole group is reported failed");
                for (op, _) in done {
                    op.fail(QueueError::Unavailable(message.clone()));
                }
            }
        }
    }

    async fn set_fsync(&mut self, fsync: bool) -> Result<(), sqlx::Error> {
        if fsync != self.fsync_on_commit {
            let pragma = if fsync { "PRAGMA synchronous = FULL" } else { "PRAGMA synchronous = NORMAL" };
            sqlx::query(pragma).execute(&mut self.conn).await?;
            self.fsync_on_commit = fsync;
        }
        Ok(())
    }

    async fn in_savepoint(&mut self, op: &Op, now: i64) -> Result<super::ops::Outcome> {
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
