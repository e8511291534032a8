//! SMSC id records and inbound parts on SQLite.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::ops::{CHUNK, Op, Outcome};
use super::records::{from_millis, parse};
use super::{SqliteStore, count, unexpected};
use crate::queue::millis;
use crate::smsc::{MoPart, MoPartKey, SmscBackend, SmscIdRecord};
use crate::{QueueError, Result};

/// Connector writes, run by the group-commit writer.
pub(super) enum SmscOp {
    PutIds(Vec<SmscIdRecord>),
    PurgeIds { older_than_ms: i64 },
    PutPart(MoPart),
    DeleteParts(MoPartKey),
    PurgeParts { older_than_ms: i64 },
}

impl SmscOp {
    pub(super) fn needs_savepoint(&self) -> bool {
        matches!(self, Self::PutIds(ids) if ids.len() > CHUNK) || matches!(self, Self::PutPart(_))
    }

    pub(super) async fn execute(&self, conn: &mut SqliteConnection, now: i64) -> Result<Outcome> {
        match self {
            Self::PutIds(records) => put_ids(conn, records).await.map(|()| Outcome::Done),
            Self::PurgeIds { older_than_ms } => {
                let done = sqlx::query("DELETE FROM smsc_ids WHERE at < ?")
                    .bind(now.saturating_sub(*older_than_ms))
                    .execute(&mut *conn)
                    .await?;
                Ok(Outcome::Count(done.rows_affected()))
            }
            Self::PutPart(part) => put_part(conn, part).await.map(Outcome::Parts),
            Self::DeleteParts(key) => {
                let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM mo_parts WHERE ");
                push_key(&mut delete, key);
                delete.build().execute(&mut *conn).await?;
                Ok(Outcome::Done)
            }
            Self::PurgeParts { older_than_ms } => {
                let done = sqlx::query("DELETE FROM mo_parts WHERE received_at < ?")
                    .bind(now.saturating_sub(*older_than_ms))
                    .execute(&mut *conn)
                    .await?;
                Ok(Outcome::Count(done.rows_affected()))
            }
        }
    }
}

async fn put_ids(conn: &mut SqliteConnection, records: &[SmscIdRecord]) -> Result<()> {
    for chunk in records.chunks(CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO smsc_ids (connector, smsc_id, message_id, account_id, first_segment, last_segment, at) ",
        );
        insert.push_values(chunk, |mut row, r| {
            row.push_bind(&r.connector)
                .push_bind(&r.smsc_id)
                .push_bind(r.message_id.to_string())
                .push_bind(r.account_id.map(|a| a.to_string()))
                .push_bind(i64::from(r.first_segment))
                .push_bind(i64::from(r.last_segment))
                .push_bind(r.at.timestamp_millis());
        });
        // The latest write wins: an SMSC that reuses an id means the new message.
        insert.push(
            " ON CONFLICT (connector, smsc_id) DO UPDATE SET message_id = excluded.message_id, \
             account_id = excluded.account_id, first_segment = excluded.first_segment, \
             last_segment = excluded.last_segment, at = excluded.at",
        );
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

fn push_key(query: &mut QueryBuilder<'_, Sqlite>, key: &MoPartKey) {
    query.push("connector = ").push_bind(key.connector.clone());
    query.push(" AND from_addr = ").push_bind(key.from.clone());
    query.push(" AND to_addr = ").push_bind(key.to.clone());
    query.push(" AND reference = ").push_bind(i64::from(key.reference));
    query.push(" AND total = ").push_bind(i64::from(key.total));
}

async fn put_part(conn: &mut SqliteConnection, part: &MoPart) -> Result<Vec<MoPart>> {
    let key = &part.key;
    sqlx::query(
        "INSERT INTO mo_parts (connector, from_addr, to_addr, reference, total, seq, data_coding, payload, received_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(&key.connector)
    .bind(&key.from)
    .bind(&key.to)
    .bind(i64::from(key.reference))
    .bind(i64::from(key.total))
    .bind(i64::from(part.seq))
    .bind(i64::from(part.data_coding))
    .bind(&part.payload)
    .bind(part.received_at.timestamp_millis())
    .execute(&mut *conn)
    .await?;
    let mut select = QueryBuilder::<Sqlite>::new("SELECT seq, data_coding, payload, received_at FROM mo_parts WHERE ");
    push_key(&mut select, key);
    select.push(" ORDER BY seq");
    select.build().fetch_all(&mut *conn).await?.iter().map(|row| part_from(key, row)).collect()
}

fn part_from(key: &MoPartKey, row: &SqliteRow) -> Result<MoPart> {
    let small = |field: &str| -> Result<u8> {
        let value: i64 = row.try_get(field)?;
        u8::try_from(value).map_err(|_| QueueError::Corrupt(format!("mo_parts.{field} = {value}")))
    };
    Ok(MoPart {
        key: key.clone(),
        seq: small("seq")?,
        data_coding: small("data_coding")?,
        payload: row.try_get("payload")?,
        received_at: from_millis(row.try_get("received_at")?),
    })
}

fn record_from(row: &SqliteRow) -> Result<SmscIdRecord> {
    let segment = |field: &str| -> Result<u16> {
        let value: i64 = row.try_get(field)?;
        u16::try_from(value).map_err(|_| QueueError::Corrupt(format!("smsc_ids.{field} = {value}")))
    };
    Ok(SmscIdRecord {
        connector: row.try_get("connector")?,
        smsc_id: row.try_get("smsc_id")?,
        message_id: parse(row.try_get("message_id")?, "smsc_ids.message_id")?,
        account_id: row
            .try_get::<Option<String>, _>("account_id")?
            .map(|a| parse(&a, "smsc_ids.account_id"))
            .transpose()?,
        first_segment: segment("first_segment")?,
        last_segment: segment("last_segment")?,
        at: from_millis(row.try_get("at")?),
    })
}

impl SqliteStore {
    async fn smsc_op(&self, op: SmscOp) -> Result<Outcome> {
        self.call(Op::Smsc(op)).await
    }
}

#[async_trait]
impl SmscBackend for SqliteStore {
    async fn put_smsc_ids(&self, records: &[SmscIdRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        match self.smsc_op(SmscOp::PutIds(records.to_vec())).await? {
            Outcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn smsc_ids(&self, connector: &str, smsc_ids: &[String]) -> Result<Vec<SmscIdRecord>> {
        let mut found = Vec::with_capacity(smsc_ids.len());
        for chunk in smsc_ids.chunks(CHUNK) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "SELECT connector, smsc_id, message_id, account_id, first_segment, last_segment, at \
                 FROM smsc_ids WHERE connector = ",
            );
            query.push_bind(connector).push(" AND smsc_id IN (");
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(id.as_str());
            }
            query.push(")");
            for row in query.build().fetch_all(&self.readers).await? {
                found.push(record_from(&row)?);
            }
        }
        Ok(found)
    }

    async fn purge_smsc_ids(&self, older_than: Duration) -> Result<u64> {
        count(self.smsc_op(SmscOp::PurgeIds { older_than_ms: millis(older_than) }).await?)
    }

    async fn put_mo_part(&self, part: &MoPart) -> Result<Vec<MoPart>> {
        match self.smsc_op(SmscOp::PutPart(part.clone())).await? {
            Outcome::Parts(parts) => Ok(parts),
            other => Err(unexpected(other)),
        }
    }

    async fn delete_mo_parts(&self, key: &MoPartKey) -> Result<()> {
        match self.smsc_op(SmscOp::DeleteParts(key.clone())).await? {
            Outcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn purge_mo_parts(&self, older_than: Duration) -> Result<u64> {
        count(self.smsc_op(SmscOp::PurgeParts { older_than_ms: millis(older_than) }).await?)
    }
}
