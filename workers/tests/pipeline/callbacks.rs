//! Status callbacks: dispatched from the journal, signed, retried, journaled.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tern_core::{DeliveryState, Event, EventKind};
use tern_handlers::webhook;
use tern_workers::callbacks::{Dispatcher, Sender};
use tern_workers::config::StageConfig;
use tern_workers::leader::Leadership;
use tern_workers::mt::MtStage;
use tern_workers::runtime::Runner;
use tern_workers::{CallbackConfig, Shutdown};

use crate::helpers::*;

fn fast_retries() -> CallbackConfig {
    CallbackConfig { min_delay_ms: 50, max_delay_secs: 1, timeout_ms: 2_000, ..CallbackConfig::default() }
}

/// Runs the dispatcher once to catch up and the sender until `done` holds (or 30 s).
async fn deliver_until(store: &TestStore, leadership: Leadership, config: CallbackConfig, done: impl Fn() -> bool) {
    assert!(leadership.renew().await);
    let mut dispatcher = Dispatcher::new(store.store.clone(), leadership);
    while dispatcher.step().await.unwrap() > 0 {}
    let sender = Arc::new(Sender::new(store.store.clone(), config).unwrap());
    let stage_config = StageConfig { concurrency: 2, batch_size: 8, lease_ms: 10_000, max_attempts: u32::MAX };
    let consumer = store.queue().consumer("callbacks", stage_config.consumer());
    let (shutdown, stop) = Shutdown::new();
    let runner = tokio::spawn(Runner::new(sender, consumer, stage_config, Duration::from_secs(5)).run(stop));
    for _ in 0..300 {
        if done() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the last delivery's event reach the journal before stopping.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.trigger();
    runner.await.unwrap();
}

pub async fn status_callbacks_are_signed_and_retried_until_accepted(store: &TestStore) {
    let hooks = receiver(2).await;
    let acme = account(store, NewAccount { callback_url: Some(hooks.url.clone()), ..NewAccount::default() }).await;
    // The dispatcher starts from the journal head when it first runs.
    let leadership = Leadership::new(store.store.clone(), "callbacks-dispatcher", Duration::from_secs(10));
    assert!(leadership.renew().await);
    Dispatcher::new(store.store.clone(), leadership.clone()).step().await.unwrap();

    let (registry, _) = mt_registry(store, table("sim")).await;
    let stage = MtStage::new(store.store.clone(), registry.chain(&names(DEFAULT_CHAIN)).unwrap());
    let id = send(store, &acme, Send::default()).await;
    drain(store, &stage).await;
    let seen = hooks.seen.clone();
    deliver_until(store, leadership, fast_retries(), || seen.lock().unwrap().len() >= 3).await;

    let seen = hooks.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two failures, then accepted, then nothing more: {seen:?}");
    let first = &seen[0];
    assert!(
        seen.iter().all(|r| r.body == first.body && r.event_id == first.event_id),
        "retries resend the same webhook"
    );
    let body: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(body["type"], "message.status");
    assert_eq!(body["message_id"], id.to_string());
    assert_eq!(body["status"], "routed");
    assert_eq!(body["previous_status"], "accepted");
    assert_eq!(body["client_ref"], "ref-1");
    let last = seen.last().unwrap();
    let signature = last.signature.as_deref().expect("signed");
    let now = chrono::Utc::now().timestamp();
    webhook::verify(SECRET, signature, last.body.as_bytes(), now, 300)
        .expect("the signature verifies with the account's secret");
    assert!(webhook::verify("whsec_other", signature, last.body.as_bytes(), now, 300).is_err());

    let events = history(store, id).await;
    let delivered: Vec<_> = events
        .iter()
        .filter_map(|k| match k {
            EventKind::CallbackDelivered { http_status, attempts, url, .. } => {
                Some((*http_status, *attempts, url.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(delivered, vec![(200, 3, hooks.url.clone())], "{events:?}");
}

pub async fn callbacks_are_given_up_with_an_event(store: &TestStore) {
    let hooks = receiver(usize::MAX).await;
    let acme = account(store, NewAccount::default()).await;
    let leadership = Leadership::new(store.store.clone(), "callbacks-dispatcher", Duration::from_secs(10));
    assert!(leadership.renew().await);
    Dispatcher::new(store.store.clone(), leadership.clone()).step().await.unwrap();
    let (registry, _) = mt_registry(store, table("sim")).await;
    let stage = MtStage::new(store.store.clone(), registry.chain(&names(DEFAULT_CHAIN)).unwrap());
    // The message's own URL wins over the account's (which has none here).
    let id = send(store, &acme, Send { callback_url: Some(&hooks.url), ..Send::default() }).await;
    drain(store, &stage).await;
    let config = CallbackConfig { give_up_after_secs: 1, ..fast_retries() };
    let store_for_check = store.store.clone();
    let gave_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = gave_up.clone();
    let watcher = tokio::spawn(async move {
        loop {
            let events = store_for_check.journal().message_events(id).await.unwrap();
            if events.iter().any(|e| matches!(e.kind, EventKind::CallbackFailed { .. })) {
                flag.store(true, std::sync::atomic::Ordering::Release);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    deliver_until(store, leadership, config, || gave_up.load(std::sync::atomic::Ordering::Acquire)).await;
    watcher.abort();
    let events = history(store, id).await;
    let failed = events.iter().find_map(|k| match k {
        EventKind::CallbackFailed { attempts, last_error, .. } => Some((*attempts, last_error.clone())),
        _ => None,
    });
    let (attempts, last_error) = failed.unwrap_or_else(|| panic!("no callback_failed event: {events:?}"));
    assert!(attempts >= 2, "retried before giving up ({attempts})");
    assert!(last_error.contains("500"), "{last_error}");
    assert_eq!(hooks.seen.lock().unwrap().len() as u32, attempts);
}

/// A two-segment message whose first segment's receipt is stamped before
/// the second's but journaled after it (receipts arrive in any order): the
/// message becomes delivered when that late receipt is journaled, and a
/// callback must say so.
pub async fn a_receipt_journaled_late_but_stamped_early_still_reports_delivered(store: &TestStore) {
    let hooks = receiver(0).await;
    let acme = account(store, NewAccount { callback_url: Some(hooks.url.clone()), ..NewAccount::default() }).await;
    let leadership = Leadership::new(store.store.clone(), "callbacks-dispatcher", Duration::from_secs(10));
    assert!(leadership.renew().await);
    Dispatcher::new(store.store.clone(), leadership.clone()).step().await.unwrap();

    let id = send(store, &acme, Send { segments: 2, ..Send::default() }).await;
    let start = Utc::now();
    let event = |ms, kind| Event::new(id, Some(acme.id), start + TimeDelta::milliseconds(ms), kind);
    let submitted = |segment, smsc_message_id: &str| EventKind::SubmittedToSmsc {
        connector: "sim".into(),
        segment,
        smsc_message_id: smsc_message_id.into(),
    };
    let receipt = |segment, smsc_message_id: &str| EventKind::DeliveryReport {
        segment,
        smsc_message_id: smsc_message_id.into(),
        state: DeliveryState::Delivered,
        error_code: None,
    };
    let routed = EventKind::Routed { connector: "sim".into(), route: "default".into(), attempt: 1 };
    let first_part =
        [event(1, routed), event(2, submitted(1, "a")), event(2, submitted(2, "b")), event(300, receipt(2, "b"))];
    store.journal().append(&first_part).await.unwrap();
    let mut dispatcher = Dispatcher::new(store.store.clone(), leadership.clone());
    while dispatcher.step().await.unwrap() > 0 {}
    store.journal().append(&[event(200, receipt(1, "a"))]).await.unwrap();

    let seen = hooks.seen.clone();
    deliver_until(store, leadership, fast_retries(), || {
        seen.lock().unwrap().iter().any(|r| r.body.contains("\"status\":\"delivered\""))
    })
    .await;
    let bodies: Vec<serde_json::Value> =
        hooks.seen.lock().unwrap().iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect();
    let mut changes: Vec<(String, String)> = bodies
        .iter()
        .map(|b| (b["previous_status"].as_str().unwrap().to_owned(), b["status"].as_str().unwrap().to_owned()))
        .collect();
    changes.sort();
    let expected = [("accepted", "routed"), ("routed", "submitted"), ("submitted", "delivered")];
    assert_eq!(changes, expected.map(|(a, b)| (a.to_owned(), b.to_owned())), "{bodies:?}");
    let delivered = bodies.iter().find(|b| b["status"] == "delivered").unwrap();
    assert_eq!(delivered["event"], "delivery_report");
}
