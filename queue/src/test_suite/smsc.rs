//! Conformance tests of what connectors keep: SMSC ids and inbound parts.

use std::time::Duration;

use chrono::TimeDelta;
use tern_core::{AccountId, MessageId};

use super::now_ms;
use crate::{MoPart, MoPartKey, SmscIdRecord, Store};

fn record(connector: &str, smsc_id: &str, message_id: MessageId, segments: (u16, u16)) -> SmscIdRecord {
    SmscIdRecord {
        connector: connector.into(),
        smsc_id: smsc_id.into(),
        message_id,
        account_id: Some(AccountId::new()),
        first_segment: segments.0,
        last_segment: segments.1,
        at: now_ms(),
    }
}

fn sorted(mut records: Vec<SmscIdRecord>) -> Vec<SmscIdRecord> {
    records.sort_by(|a, b| a.smsc_id.cmp(&b.smsc_id));
    records
}

/// SMSC id records are found by connector and id; a rewrite of the same pair replaces it.
pub async fn smsc_ids_are_found_per_connector_and_the_latest_write_wins(store: &Store) {
    let (m1, m2, m3) = (MessageId::new(), MessageId::new(), MessageId::new());
    let a1 = record("c1", "a1", m1, (1, 1));
    let a2 = record("c1", "a2", m1, (2, 2));
    let payload = record("c1", "p", m2, (1, 3));
    let other_connector = record("c2", "a1", m3, (1, 1));
    let many: Vec<SmscIdRecord> = (0..1_200).map(|i| record("c3", &format!("{i:06}"), m3, (1, 1))).collect();
    store.smsc().put_smsc_ids(&[a1.clone(), a2.clone(), payload.clone(), other_connector.clone()]).await.unwrap();
    store.smsc().put_smsc_ids(&many).await.unwrap();
    store.smsc().put_smsc_ids(&[]).await.unwrap();

    let ids = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let found = store.smsc().smsc_ids("c1", &ids(&["a1", "a2", "p", "missing"])).await.unwrap();
    assert_eq!(sorted(found), vec![a1.clone(), a2, payload], "found by connector and id; unknown ids are absent");
    let found = store.smsc().smsc_ids("c2", &ids(&["a1"])).await.unwrap();
    assert_eq!(found, vec![other_connector], "ids are unique per connector only");
    let wanted: Vec<String> = many.iter().map(|r| r.smsc_id.clone()).collect();
    assert_eq!(store.smsc().smsc_ids("c3", &wanted).await.unwrap().len(), 1_200, "long lists are read whole");

    // The same id again (a retried batch writes the same; an SMSC that
    // wrapped its counter means a new message): the latest write wins.
    let reused = SmscIdRecord { message_id: MessageId::new(), ..record("c1", "a1", m1, (1, 1)) };
    store.smsc().put_smsc_ids(&[reused.clone(), a1.clone()]).await.unwrap();
    store.smsc().put_smsc_ids(std::slice::from_ref(&reused)).await.unwrap();
    assert_eq!(store.smsc().smsc_ids("c1", &ids(&["a1"])).await.unwrap(), vec![reused]);
}

/// Purging removes only records older than the cut-off.
pub async fn old_smsc_ids_are_purged(store: &Store) {
    let old = SmscIdRecord { at: now_ms() - TimeDelta::hours(2), ..record("c1", "old", MessageId::new(), (1, 1)) };
    let fresh = record("c1", "fresh", MessageId::new(), (1, 1));
    store.smsc().put_smsc_ids(&[old, fresh.clone()]).await.unwrap();
    assert_eq!(store.smsc().purge_smsc_ids(Duration::from_secs(3600)).await.unwrap(), 1);
    let left = store.smsc().smsc_ids("c1", &["old".into(), "fresh".into()]).await.unwrap();
    assert_eq!(left, vec![fresh]);
}

fn part(key: &MoPartKey, seq: u8, payload: &[u8]) -> MoPart {
    MoPart { key: key.clone(), seq, data_coding: 8, payload: payload.to_vec(), received_at: now_ms() }
}

/// Parts of one inbound message accumulate once each, in order, until deleted.
pub async fn inbound_parts_gather_until_deleted(store: &Store) {
    let key =
        MoPartKey { connector: "c1".into(), from: "+447700900001".into(), to: "4000".into(), reference: 7, total: 3 };
    let same_ref_other_handset = MoPartKey { from: "+447700900002".into(), ..key.clone() };
    let (p1, p2, p3) = (part(&key, 1, b"\x00h"), part(&key, 2, b"\x00i"), part(&key, 3, b"\x00!"));

    assert_eq!(store.smsc().put_mo_part(&p2).await.unwrap(), vec![p2.clone()]);
    let stranger = part(&same_ref_other_handset, 1, b"x");
    assert_eq!(store.smsc().put_mo_part(&stranger).await.unwrap(), vec![stranger.clone()]);
    // A part delivered twice (the SMSC did not get our response) is kept once.
    let again = MoPart { payload: b"ignored".to_vec(), ..p2.clone() };
    assert_eq!(store.smsc().put_mo_part(&again).await.unwrap(), vec![p2.clone()]);
    assert_eq!(store.smsc().put_mo_part(&p3).await.unwrap(), vec![p2.clone(), p3.clone()]);
    assert_eq!(store.smsc().put_mo_part(&p1).await.unwrap(), vec![p1.clone(), p2.clone(), p3.clone()], "in seq order");

    store.smsc().delete_mo_parts(&key).await.unwrap();
    let fresh = part(&key, 2, b"\x00?");
    assert_eq!(store.smsc().put_mo_part(&fresh).await.unwrap(), vec![fresh], "a reused reference starts over");
    assert_eq!(store.smsc().put_mo_part(&stranger).await.unwrap(), vec![stranger], "other messages are untouched");
}

/// Parts whose siblings never came are purged after the cut-off.
pub async fn stale_inbound_parts_are_purged(store: &Store) {
    let key =
        MoPartKey { connector: "c1".into(), from: "+447700900003".into(), to: "4000".into(), reference: 300, total: 2 };
    let old = MoPart { received_at: now_ms() - TimeDelta::hours(30), ..part(&key, 1, b"a") };
    store.smsc().put_mo_part(&old).await.unwrap();
    let fresh_key = MoPartKey { reference: 301, ..key.clone() };
    let fresh = part(&fresh_key, 1, b"b");
    store.smsc().put_mo_part(&fresh).await.unwrap();
    assert_eq!(store.smsc().purge_mo_parts(Duration::from_secs(24 * 3600)).await.unwrap(), 1);
    let second = part(&key, 2, b"c");
    assert_eq!(store.smsc().put_mo_part(&second).await.unwrap(), vec![second], "the stale part is gone");
    let fresh_second = part(&fresh_key, 2, b"d");
    assert_eq!(store.smsc().put_mo_part(&fresh_second).await.unwrap(), vec![fresh, fresh_second]);
}
