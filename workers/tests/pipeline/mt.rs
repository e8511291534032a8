//! The `mt` stage end to end: opt-out, routing, failover, finished messages.

use chrono::{TimeDelta, Utc};
use tern_core::{EventKind, MessageStatus};
use tern_handlers::routing::{Action, Filters, ROUTING_SETTING, Route, RoutingTable, down_lease};
use tern_handlers::{Dispatch, MtEntry};
use tern_queue::{ConsumerOptions, NewEntry};
use tern_workers::mo::{Inbound, MoStage, receive};
use tern_workers::mt::{MT_TOPIC, MtStage};

use crate::helpers::*;

async fn dispatched_to(store: &TestStore, connector: &str) -> Vec<Dispatch> {
    let consumer = store.queue().consumer(Dispatch::topic(connector), ConsumerOptions::default());
    let claimed = consumer.claim(1_000).await.unwrap();
    let found = claimed.deliveries.iter().map(|d| d.payload_json::<Dispatch>().unwrap()).collect();
    let leases: Vec<_> = claimed.deliveries.iter().map(|d| d.lease().clone()).collect();
    consumer.release_leases(&leases).await.unwrap();
    found
}

pub async fn opted_out_numbers_are_rejected_and_never_charged(store: &TestStore) {
    let acme = account(store, NewAccount::default()).await;
    let (registry, _) = mt_registry(store, table("sim")).await;
    let stage = MtStage::new(store.store.clone(), registry.chain(&names(DEFAULT_CHAIN)).unwrap());
    // A first message starts the conversation the STOP answers.
    let first = send(store, &acme, Send::default()).await;
    drain(store, &stage).await;
    assert_eq!(status(store, first).await, MessageStatus::Routed);
    let after_first = balance(store, acme.id).await;

    let (mo_registry, mo_chain) = mo_chain(store);
    let mo = MoStage::new(store.store.clone(), mo_registry.chain(&mo_chain).unwrap());
    let stop = inbound("+447400123456", "ACME", "Stop.");
    receive(store, &stop).await.unwrap();
    drain_topic(store, &mo, "mo", ConsumerOptions::default()).await;
    let events = history(store, stop.message_id).await;
    assert!(events.iter().any(|k| matches!(k, EventKind::OptedOut { keyword, .. } if keyword == "STOP")), "{events:?}");

    let refused = send(store, &acme, Send::default()).await;
    let other = send(store, &acme, Send { to: "+447400123457", ..Send::default() }).await;
    drain(store, &stage).await;
    let events = history(store, refused).await;
    assert_eq!(rejected_code(&events).as_deref(), Some("opted_out"), "{events:?}");
    assert!(!events.iter().any(|k| matches!(k, EventKind::Charged { .. })), "never charged: {events:?}");
    assert_eq!(status(store, other).await, MessageStatus::Routed, "another number is unaffected");
    assert_eq!(balance(store, acme.id).await, after_first - 10, "only the other number's message was charged");

    let start = inbound("+447400123456", "ACME", "START");
    receive(store, &start).await.unwrap();
    drain_topic(store, &mo, "mo", ConsumerOptions::default()).await;
    let again = send(store, &acme, Send::default()).await;
    drain(store, &stage).await;
    assert_eq!(status(store, again).await, MessageStatus::Routed, "START opted the number back in");
}

pub fn mo_chain(store: &TestStore) -> (tern_handlers::Registry<tern_handlers::Mo>, Vec<String>) {
    use std::sync::Arc;
    let mut registry = tern_handlers::Registry::default();
    let keywords = tern_handlers::optout::Keywords::new(&default_optout()).unwrap();
    registry
        .register(
            "replies",
            Arc::new(tern_handlers::replies::ReplyMatch::new(
                store.store.clone(),
                std::time::Duration::from_secs(3600),
            )),
        )
        .register("optout", Arc::new(tern_handlers::optout::OptOutKeywords::new(store.store.clone(), keywords)))
        .register("inbound", Arc::new(tern_handlers::replies::InboundForward::new(store.store.clone())));
    (registry, names(&["replies", "optout", "inbound"]))
}

pub fn inbound(from: &str, to: &str, body: &str) -> Inbound {
    Inbound {
        message_id: tern_core::MessageId::new(),
        from: from.into(),
        to: to.into(),
        body: body.into(),
        connector: "sim".into(),
        received_at: Utc::now(),
    }
}

pub async fn routes_follow_the_table_and_reload_without_restart(store: &TestStore) {
    let vip = account(store, NewAccount::default()).await;
    let other = account(store, NewAccount::default()).await;
    let configured = RoutingTable {
        routes: vec![
            Route {
                name: "vip".into(),
                filters: Filters { accounts: vec![vip.id], ..Filters::default() },
                action: Action::Connector("premium".into()),
            },
            Route {
                name: "france".into(),
                filters: Filters { countries: vec!["FR".into()], ..Filters::default() },
                action: Action::Connector("fr".into()),
            },
            Route {
                name: "bank".into(),
                filters: Filters { senders: vec!["BANK[0-9]*".into()], ..Filters::default() },
                action: Action::Connector("secure".into()),
            },
        ],
        default: None,
    };
    let (registry, routing) = mt_registry(store, configured).await;
    let stage = MtStage::new(store.store.clone(), registry.chain(&names(DEFAULT_CHAIN)).unwrap());
    let to_vip = send(store, &vip, Send::default()).await;
    let to_fr = send(store, &other, Send { to: "+33612345678", ..Send::default() }).await;
    let bank = send(store, &other, Send { from: "BANK42", ..Send::default() }).await;
    let unrouted = send(store, &other, Send::default()).await;
    drain(store, &stage).await;
    let routed = |kinds: Vec<EventKind>| {
        kinds.into_iter().find_map(|k| match k {
            EventKind::Routed { connector, route, attempt } => Some((connector, route, attempt)),
            _ => None,
        })
    };
    assert_eq!(routed(history(store, to_vip).await), Some(("premium".into(), "vip".into(), 1)));
    assert_eq!(routed(history(store, to_fr).await), Some(("fr".into(), "france".into(), 1)));
    assert_eq!(routed(history(store, bank).await), Some(("secure".into(), "bank".into(), 1)));
    let events = history(store, unrouted).await;
    assert_eq!(rejected_code(&events).as_deref(), Some("no_route"), "{events:?}");
    assert_eq!(balance(store, other.id).await, 1_000_000 - 20, "the unrouted message is not charged");
    let premium = dispatched_to(store, "premium").await;
    assert_eq!(premium.len(), 1);
    assert_eq!(premium[0].accepted.message_id, to_vip);

    // The admin API stores a new table; the next refresh uses it.
    let replacement = RoutingTable { routes: Vec::new(), default: Some(Action::Connector("bulk".into())) };
    store.coordination().put_setting(ROUTING_SETTING, &serde_json::to_string(&replacement).unwrap()).await.unwrap();
    routing.refresh().await.unwrap();
    assert!(routing.version() > 0);
    let later = send(store, &other, Send::default()).await;
    drain(store, &stage).await;
    assert_eq!(routed(history(store, later).await), Some(("bulk".into(), "default".into(), 1)));
    // A broken stored table is ignored; the last good one stays.
    store.coordination().put_setting(ROUTING_SETTING, "{\"routes\": 7}").await.unwrap();
    routing.refresh().await.unwrap();
    let still = send(store, &other, Send::default()).await;
    drain(store, &stage).await;
    assert_eq!(routed(history(store, still).await).map(|r| r.0), Some("bulk".into()));
}

pub async fn failover_skips_down_connectors_and_follows_reroutes(store: &TestStore) {
    let acme = account(store, NewAccount::default()).await;
    let table =
        RoutingTable { routes: Vec::new(), default: Some(Action::Failover(vec!["a".into(), "b".into(), "c".into()])) };
    let (registry, routing) = mt_registry(store, table).await;
    let stage = MtStage::new(store.store.clone(), registry.chain(&names(DEFAULT_CHAIN)).unwrap());
    let first = send(store, &acme, Send::default()).await;
    drain(store, &stage).await;
    assert_eq!(dispatched_to(store, "a").await.len(), 1);

    // Connector a reports its binds down: failover routes skip it.
    let lease = down_lease("a");
    assert!(store.coordination().try_lease(&lease, "connector-a", std::time::Duration::from_secs(60)).await.unwrap());
    routing.refresh().await.unwrap();
    let second = send(store, &acme, Send::default()).await;
    drain(store, &stage).await;
    let on_b = dispatched_to(store, "b").await;
    assert_eq!(on_b.iter().map(|d| d.accepted.message_id).collect::<Vec<_>>(), vec![second]);

    // Connector b gives `second` back: its next routing attempt goes to c, and it is not charged again.
    let before = balance(store, acme.id).await;
    let mut reroute = MtEntry { accepted: on_b[0].accepted.clone(), route_attempt: Some(2) };
    give_back(store, &reroute).await;
    drain(store, &stage).await;
    assert_eq!(dispatched_to(store, "c").await.len(), 1);
    assert_eq!(balance(store, acme.id).await, before, "a reroute is not a new charge");
    // Nothing left to try: the message fails and is refunded.
    reroute.route_attempt = Some(3);
    give_back(store, &reroute).await;
    drain(store, &stage).await;
    let events = history(store, second).await;
    assert_eq!(rejected_code(&events).as_deref(), Some("routes_exhausted"), "{events:?}");
    assert_eq!(balance(store, acme.id).await, before + 10, "refunded once it could not be sent");
    assert_eq!(status(store, first).await, MessageStatus::Routed);
}

/// What a connector does with a message it cannot send: back to `mt` with the next routing attempt.
async fn give_back(store: &TestStore, reroute: &MtEntry) {
    let entry = NewEntry::new(reroute.entry_id(), serde_json::to_vec(reroute).unwrap());
    store.queue().producer(MT_TOPIC).publish(vec![entry]).await.unwrap();
}

pub async fn cancelled_and_expired_messages_are_not_sent(store: &TestStore) {
    let acme = account(store, NewAccount::default()).await;
    let (registry, _) = mt_registry(store, table("sim")).await;
    let stage = MtStage::new(store.store.clone(), registry.chain(&names(DEFAULT_CHAIN)).unwrap());
    let cancelled = send(store, &acme, Send::default()).await;
    let kind = EventKind::Cancelled { by: "api".into() };
    store.record(&[tern_core::Event::new(cancelled, Some(acme.id), Utc::now(), kind)]).await.unwrap();
    let expired = send(store, &acme, Send { expires_at: Utc::now() - TimeDelta::seconds(1), ..Send::default() }).await;
    drain(store, &stage).await;
    assert_eq!(status(store, cancelled).await, MessageStatus::Cancelled);
    assert_eq!(counts(&history(store, cancelled).await).get("routed"), None);
    assert_eq!(status(store, expired).await, MessageStatus::Expired);
    assert_eq!(balance(store, acme.id).await, 1_000_000, "neither was charged");
    assert!(dispatched_to(store, "sim").await.is_empty());
}
