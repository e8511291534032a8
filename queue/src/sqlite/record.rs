//! Recording a stage's events on SQLite in one writer operation.
//!
//! The portable recorder appends, reads the journals back and updates the
//! index: two writes, each waiting for a group commit, with a read between.
//! Here the caller reads the touched messages' journals first (on a reader,
//! off the writer's path), folds them with the new events, and hands the
//! writer the events and the statuses it expects, with how many events each
//! message will then have. The writer appends, counts, and applies every
//! status whose count matched. A count that does not match means another
//! recorder added an event meanwhile; for those few the writer reads the
//! journal again inside its transaction, where nothing can change under it,
//! and folds. So the index is exactly as the portable recorder leaves it,
//! for one group commit instead of two.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use tern_core::{Event, MessageId};

use super::ops::{CHUNK, EventRow, Op, Outcome, append};
use super::records::update_statuses;
use super::{SqliteStore, count, event_rows};
use crate::store::{RecordBackend, status_updates};
use crate::{JournalBackend, Result, StatusUpdate};

/// What the writer checks for one touched message.
#[derive(Debug)]
pub(super) struct Expected {
    message_id: String,
    /// Events the message has once the new ones are appended.
    events: i64,
    /// Its status then (none for a message the index does not hold).
    update: Option<StatusUpdate>,
}

/// Events to append and the statuses they lead to.
#[derive(Debug)]
pub(super) struct RecordEvents {
    rows: Vec<EventRow>,
    expected: Vec<Expected>,
}

impl RecordEvents {
    pub(super) async fn execute(&self, conn: &mut SqliteConnection) -> Result<Outcome> {
        let appended = append(conn, &self.rows).await?;
        let mut counts: HashMap<String, i64> = HashMap::with_capacity(self.expected.len());
        for chunk in self.expected.chunks(CHUNK) {
            let mut query =
                QueryBuilder::<Sqlite>::new("SELECT message_id, COUNT(*) AS n FROM journal WHERE message_id IN (");
            let mut list = query.separated(", ");
            for expected in chunk {
                list.push_bind(&expected.message_id);
            }
            query.push(") GROUP BY message_id");
            for row in query.build().fetch_all(&mut *conn).await? {
                counts.insert(row.try_get("message_id")?, row.try_get("n")?);
            }
        }
        let mut updates = Vec::with_capacity(self.expected.len());
        let mut stale = Vec::new();
        for expected in &self.expected {
            if counts.get(&expected.message_id).copied() == Some(expected.events) {
                updates.extend(expected.update);
            } else {
                stale.push(expected.message_id.as_str());
            }
        }
        if !stale.is_empty() {
            updates.extend(status_updates(read_journals(conn, &stale).await?));
        }
        update_statuses(conn, &updates).await?;
        Ok(Outcome::Count(appended as u64))
    }
}

async fn read_journals(conn: &mut SqliteConnection, message_ids: &[&str]) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    for chunk in message_ids.chunks(CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT event FROM journal WHERE message_id IN (");
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(") ORDER BY position");
        for row in query.build().fetch_all(&mut *conn).await? {
            events.push(serde_json::from_str(row.try_get("event")?)?);
        }
    }
    Ok(events)
}

#[async_trait]
impl RecordBackend for SqliteStore {
    async fn record(&self, events: &[Event]) -> Result<usize> {
        let rows = event_rows(events)?;
        let mut touched: Vec<MessageId> = events.iter().map(|e| e.message_id).collect();
        touched.sort_unstable();
        touched.dedup();
        let mut histories: HashMap<MessageId, Vec<Event>> = HashMap::with_capacity(touched.len());
        for event in self.messages_events(&touched).await? {
            histories.entry(event.message_id).or_default().push(event);
        }
        for event in events {
            let history = histories.entry(event.message_id).or_default();
            if !history.iter().any(|e| e.id == event.id) {
                history.push(event.clone());
            }
        }
        let mut expected = Vec::with_capacity(histories.len());
        for (message_id, history) in histories {
            let ids: HashSet<_> = history.iter().map(|e| e.id).collect();
            let events = i64::try_from(ids.len()).unwrap_or(i64::MAX);
            let update = status_updates(history).pop();
            expected.push(Expected { message_id: message_id.to_string(), events, update });
        }
        let appended = count(self.call(Op::RecordEvents(RecordEvents { rows, expected })).await?)?;
        Ok(usize::try_from(appended).unwrap_or(usize::MAX))
    }
}
