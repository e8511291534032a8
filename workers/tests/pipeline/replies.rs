//! 2-way: replies matched to the conversation, listed and forwarded.

use std::sync::Arc;
use std::time::Duration;

use tern_core::EventKind;
use tern_handlers::webhook;
use tern_queue::ConsumerOptions;
use tern_workers::callbacks::Sender;
use tern_workers::config::StageConfig;
use tern_workers::mo::{MoStage, receive};
use tern_workers::mt::MtStage;
use tern_workers::runtime::Runner;
use tern_workers::{CallbackConfig, Shutdown};

use crate::helpers::*;
use crate::mt::{inbound, mo_chain};

pub async fn replies_are_matched_listed_and_forwarded(store: &TestStore) {
    let hooks = receiver(0).await;
    let acme = account(store, NewAccount { inbound_url: Some(hooks.url.clone()), ..NewAccount::default() }).await;
    let rival = account(store, NewAccount::default()).await;
    let (registry, _) = mt_registry(store, table("sim")).await;
    let stage = MtStage::new(store.store.clone(), registry.chain(&names(DEFAULT_CHAIN)).unwrap());
    let _older = send(store, &rival, Send::default()).await;
    drain(store, &stage).await;
    // The later conversation wins: the reply belongs to acme's message.
    let outbound = send(store, &acme, Send::default()).await;
    drain(store, &stage).await;

    let (mo_registry, chain) = mo_chain(store);
    let mo = MoStage::new(store.store.clone(), mo_registry.chain(&chain).unwrap());
    let reply = inbound("+447400123456", "ACME", "yes please");
    let stranger = inbound("+447400123458", "ACME", "who is this?");
    receive(store, &reply).await.unwrap();
    receive(store, &stranger).await.unwrap();
    receive(store, &reply).await.unwrap(); // a connector redelivering the same MO changes nothing
    drain_topic(store, &mo, "mo", ConsumerOptions::default()).await;

    let events = store.journal().message_events(reply.message_id).await.unwrap();
    let matched: Vec<_> = events.iter().filter(|e| matches!(e.kind, EventKind::ReplyMatched { .. })).collect();
    assert_eq!(matched.len(), 1);
    assert_eq!(matched[0].kind, EventKind::ReplyMatched { outbound_message_id: outbound });
    assert_eq!(matched[0].account_id, Some(acme.id));
    let listed = store.contacts().list_inbound(acme.id, None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reply_to, Some(outbound));
    assert_eq!(listed[0].body, "yes please");
    assert!(store.contacts().list_inbound(rival.id, None, 10).await.unwrap().is_empty());
    let unmatched = history(store, stranger.message_id).await;
    assert!(!unmatched.iter().any(|k| matches!(k, EventKind::ReplyMatched { .. })), "no conversation, no match");

    // The inbound webhook goes out signed.
    let sender = Arc::new(Sender::new(store.store.clone(), CallbackConfig::default()).unwrap());
    let config = StageConfig { concurrency: 1, batch_size: 8, lease_ms: 10_000, max_attempts: 100 };
    let (shutdown, stop) = Shutdown::new();
    let consumer = store.queue().consumer("callbacks", config.consumer());
    let runner = tokio::spawn(Runner::new(sender, consumer, config, Duration::from_secs(5)).run(stop));
    for _ in 0..100 {
        if !hooks.seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.trigger();
    runner.await.unwrap();
    let seen = hooks.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["type"], "message.inbound");
    assert_eq!(body["body"], "yes please");
    assert_eq!(body["reply_to"], outbound.to_string());
    webhook::verify(
        SECRET,
        seen[0].signature.as_deref().unwrap(),
        seen[0].body.as_bytes(),
        chrono::Utc::now().timestamp(),
        300,
    )
    .unwrap();
}
