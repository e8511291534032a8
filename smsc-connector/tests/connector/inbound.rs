//! Inbound (MO) messages: recorded and queued for the pipeline, long ones
//! reassembled from their parts.

use tern_core::{Event, EventKind};
use tern_handlers::MoEntry;
use tern_queue::{ConsumerOptions, Store};
use tern_workers::mo::MO_TOPIC;

use crate::helpers::*;

/// The inbound messages queued on `mo`, as (from, to, body).
async fn queued_inbound(store: &Store) -> Vec<(String, String, String)> {
    let consumer = store.queue().consumer(MO_TOPIC, ConsumerOptions::default());
    let claimed = consumer.claim(100).await.unwrap();
    let mut found = Vec::new();
    for delivery in &claimed.deliveries {
        let entry: MoEntry = delivery.payload_json().unwrap();
        let Event { kind: EventKind::InboundReceived { from, to, body, connector }, .. } = entry.received else {
            panic!("not an inbound message");
        };
        assert_eq!(connector, CONNECTOR);
        found.push((from, to, body));
    }
    consumer.release_leases(&claimed.deliveries.iter().map(|d| d.lease().clone()).collect::<Vec<_>>()).await.unwrap();
    found.sort();
    found
}

pub async fn inbound_messages_reach_the_pipeline_whole(store: &TestStore) {
    let sim = simulator(|_| {}).await;
    let connector = start(store, &connector_config(sim.local_addr().port()));
    eventually("bound", || async { connector.running.link.binds_up() > 0 }).await;
    let long = "This reply is long enough to need three parts, ".repeat(7);
    let unicode = "Спасибо, получил! ".repeat(6);
    sim.send_mo("tern", "447700900001", "4000", "STOP").await.unwrap();
    sim.send_mo("tern", "447700900002", "4000", &long).await.unwrap();
    sim.send_mo("tern", "447700900003", "TernBank", &unicode).await.unwrap();
    eventually("three inbound messages queued", || async { queued_inbound(store).await.len() == 3 }).await;
    let found = queued_inbound(store).await;
    assert_eq!(
        found,
        vec![
            ("+447700900001".into(), "4000".into(), "STOP".into()),
            ("+447700900002".into(), "4000".into(), long.clone()),
            ("+447700900003".into(), "TernBank".into(), unicode.clone()),
        ]
    );
    let stats = sim.stats();
    assert_eq!(stats.mo_acked, stats.mo_sent, "every part was acknowledged: {stats:?}");
    connector.stop().await;
}

pub async fn handsets_reply_to_delivered_messages(store: &TestStore) {
    let sim = simulator(|c| {
        c.mo_share = 1.0;
        c.mo_text = "YES".into();
    })
    .await;
    let account = account(store, 10_000).await;
    let connector = start(store, &connector_config(sim.local_addr().port()));
    let ids = routed_many(store, &account, 3, "question").await;
    wait_for(store, &ids, tern_core::MessageStatus::Delivered).await;
    eventually("three replies queued", || async { queued_inbound(store).await.len() == 3 }).await;
    let found = queued_inbound(store).await;
    assert!(
        found.iter().all(|(from, to, body)| from.starts_with("+4474") && to == "ACME" && body == "YES"),
        "{found:?}"
    );
    connector.stop().await;
}
