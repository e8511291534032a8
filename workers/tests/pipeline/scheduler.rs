//! The scheduler: one leader releases each scheduled message once; expiry refunds.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tern_core::{Event, EventKind, MessageId, MessageStatus};
use tern_queue::NewEntry;
use tern_workers::mt::{MT_TOPIC, MtStage};
use tern_workers::scheduler::{SCHEDULED_TOPIC, Scheduler};
use tern_workers::{SchedulerConfig, Shutdown};

use crate::helpers::*;

async fn schedule(
    store: &TestStore,
    account: &tern_queue::Account,
    n: usize,
    at: chrono::DateTime<Utc>,
) -> Vec<MessageId> {
    let mut ids = Vec::with_capacity(n);
    let mut events = Vec::new();
    let mut entries = Vec::new();
    for _ in 0..n {
        let id = MessageId::new();
        let kind = EventKind::Accepted {
            to: "+447400123456".into(),
            country: Some("GB".into()),
            from: "ACME".into(),
            body: "later".into(),
            encoding: tern_core::Encoding::Gsm7,
            segments: 1,
            batch_id: None,
            client_ref: None,
            callback_url: None,
            priority: 0,
            expires_at: at + TimeDelta::hours(1),
            price: Some(10),
            currency: Some("EUR".into()),
        };
        let accepted = Event::new(id, Some(account.id), Utc::now(), kind);
        entries.push(NewEntry::new(id.to_string(), serde_json::to_vec(&accepted).unwrap()).not_before(at));
        events.push(accepted);
        events.push(Event::new(id, Some(account.id), Utc::now(), EventKind::Scheduled { send_at: at }));
        ids.push(id);
    }
    store.accept(&events, SCHEDULED_TOPIC, entries).await.unwrap();
    ids
}

pub async fn two_schedulers_release_each_message_exactly_once(store: &TestStore) {
    let acme = account(store, NewAccount::default()).await;
    let config = SchedulerConfig { tick_ms: 20, lease_ms: 900, ..SchedulerConfig::default() };
    let ids = schedule(store, &acme, 300, Utc::now() + TimeDelta::milliseconds(1_500)).await;
    let cancelled = ids[0];
    let cancel = EventKind::Cancelled { by: "api".into() };
    store.record(&[Event::new(cancelled, Some(acme.id), Utc::now(), cancel)]).await.unwrap();
    let (a, b) = (Scheduler::new(store.store.clone(), config), Scheduler::new(store.store.clone(), config));
    let (stats_a, stats_b) = (a.stats(), b.stats());
    let probe = tern_workers::leader::Leadership::new(store.store.clone(), "probe", Duration::from_secs(30));
    let rival = tern_workers::leader::Leadership::new(store.store.clone(), "probe", Duration::from_secs(30));
    assert!(probe.renew().await && !rival.renew().await && probe.renew().await, "one holder per lease");
    let (shutdown, stop) = Shutdown::new();
    let runs = [tokio::spawn(a.run(stop.clone())), tokio::spawn(b.run(stop))];
    for _ in 0..200 {
        if stats_a.released.load(Ordering::SeqCst) + stats_b.released.load(Ordering::SeqCst) >= 299 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both keep running a while longer: nothing may fire twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.trigger();
    for run in runs {
        run.await.unwrap();
    }
    let (ra, rb) = (stats_a.released.load(Ordering::SeqCst), stats_b.released.load(Ordering::SeqCst));
    assert_eq!(ra + rb, 299, "each live scheduled message released once in all (a {ra}, b {rb})");
    let depth = store.queue().depth(MT_TOPIC).await.unwrap();
    assert_eq!(depth.ready, 299, "one mt entry per released message");
    for id in &ids[1..] {
        assert_eq!(counts(&history(store, *id).await).get("released"), Some(&1));
    }
    assert_eq!(status(store, cancelled).await, MessageStatus::Cancelled, "a cancelled message is not released");
    assert_eq!(store.queue().depth(SCHEDULED_TOPIC).await.unwrap().pending(), 0);
}

pub async fn validity_expiry_refunds_unsent_messages_only(store: &TestStore) {
    let acme = account(store, NewAccount::default()).await;
    let (registry, _) = mt_registry(store, table("sim")).await;
    let stage = MtStage::new(store.store.clone(), registry.chain(&names(DEFAULT_CHAIN)).unwrap());
    let soon = Utc::now() + TimeDelta::minutes(10);
    let routed = send(store, &acme, Send { expires_at: soon, ..Send::default() }).await;
    let submitted = send(store, &acme, Send { expires_at: soon, ..Send::default() }).await;
    let fresh = send(store, &acme, Send { expires_at: soon + TimeDelta::hours(1), ..Send::default() }).await;
    drain(store, &stage).await;
    assert_eq!(balance(store, acme.id).await, 1_000_000 - 30);
    let kind = EventKind::SubmittedToSmsc { connector: "sim".into(), segment: 1, smsc_message_id: "s1".into() };
    store.record(&[Event::new(submitted, Some(acme.id), Utc::now(), kind)]).await.unwrap();
    let later = soon + TimeDelta::seconds(1);

    // The SMSC holds `submitted`: it expires only after the grace period, and is not refunded.
    let scheduler = Scheduler::new(
        store.store.clone(),
        SchedulerConfig { submitted_grace_secs: 3_600, ..SchedulerConfig::default() },
    );
    scheduler.expire_as_of(later).await.unwrap();
    assert_eq!(status(store, routed).await, MessageStatus::Expired);
    assert_eq!(status(store, submitted).await, MessageStatus::Submitted);
    assert_eq!(status(store, fresh).await, MessageStatus::Routed);
    assert_eq!(
        balance(store, acme.id).await,
        1_000_000 - 20,
        "the unsent one is refunded: {:?} {:?}",
        history(store, routed).await,
        history(store, submitted).await
    );
    let c = counts(&history(store, routed).await);
    assert_eq!((c.get("expired"), c.get("refunded")), (Some(&1), Some(&1)));

    let no_grace =
        Scheduler::new(store.store.clone(), SchedulerConfig { submitted_grace_secs: 0, ..SchedulerConfig::default() });
    no_grace.expire_as_of(later).await.unwrap();
    no_grace.expire_as_of(later).await.unwrap();
    assert_eq!(status(store, submitted).await, MessageStatus::Expired);
    assert_eq!(balance(store, acme.id).await, 1_000_000 - 20, "a message an SMSC took is not refunded");
    assert_eq!(counts(&history(store, routed).await).get("refunded"), Some(&1), "expiry refunds once");
}
