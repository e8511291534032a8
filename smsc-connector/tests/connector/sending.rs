//! The ordinary path: bind, submit, receipts, long messages, bind modes.

use tern_core::{DeliveryState, EventKind, MessageStatus};
use tern_smsc_connector::{BindMode, LongMessages};

use crate::helpers::*;

pub async fn messages_are_submitted_and_their_receipts_recorded(store: &TestStore) {
    let sim = simulator(|_| {}).await;
    let account = account(store, 10_000).await;
    let connector = start(store, &connector_config(sim.local_addr().port()));

    let delivered = routed_many(store, &account, 40, "delivered").await;
    wait_for(store, &delivered, MessageStatus::Delivered).await;
    sim.update(|c| {
        c.outcomes.delivered = 0.0;
        c.outcomes.undeliverable = 1.0;
    });
    let undeliverable = routed_many(store, &account, 5, "undeliverable").await;
    wait_for(store, &undeliverable, MessageStatus::Undeliverable).await;
    sim.update(|c| {
        c.outcomes.undeliverable = 0.0;
        c.outcomes.expired = 1.0;
    });
    let expired = routed_many(store, &account, 5, "expired").await;
    wait_for(store, &expired, MessageStatus::Expired).await;

    let kinds = history(store, delivered[0]).await;
    let counts = counts(&kinds);
    assert_eq!(counts.get("submitted_to_smsc"), Some(&1), "{kinds:?}");
    assert_eq!(counts.get("delivery_report"), Some(&1), "{kinds:?}");
    let submitted_id = kinds.iter().find_map(|k| match k {
        EventKind::SubmittedToSmsc { connector, segment: 1, smsc_message_id } if connector == CONNECTOR => {
            Some(smsc_message_id.clone())
        }
        _ => None,
    });
    let reported = kinds.iter().find_map(|k| match k {
        EventKind::DeliveryReport { segment: 1, smsc_message_id, state: DeliveryState::Delivered, .. } => {
            Some(smsc_message_id.clone())
        }
        _ => None,
    });
    assert!(submitted_id.is_some() && submitted_id == reported, "the receipt names the id the SMSC gave");
    let stats = sim.stats();
    assert_eq!(stats.submit_sm, 50);
    assert_eq!(stats.duplicates, 0);
    // Delivered or not, a message the SMSC took is paid for.
    assert_eq!(balance(store, account.id).await, 10_000 - 50 * PRICE);
    connector.stop().await;
    assert!(sim.stats().unbinds >= 1, "the connector unbinds on shutdown");
}

pub async fn long_messages_go_as_udh_segments_or_one_payload(store: &TestStore) {
    let sim = simulator(|_| {}).await;
    let account = account(store, 10_000).await;
    let body = "Dear customer, ".repeat(20);
    let unicode = "Привет! ".repeat(12);

    let connector = start(store, &connector_config(sim.local_addr().port()));
    let udh = routed(store, &account, Send { body: body.clone(), ..Send::default() }).await;
    let udh_unicode =
        routed(store, &account, Send { to: "+447400000001".into(), body: unicode.clone(), ..Send::default() }).await;
    wait_for(store, &[udh, udh_unicode], MessageStatus::Delivered).await;
    connector.stop().await;
    let parts: Vec<_> = sim.submitted().into_iter().filter(|s| s.concat.is_some()).collect();
    let segments = tern_core::encoding::segment_count(&body) + tern_core::encoding::segment_count(&unicode);
    assert_eq!(parts.len(), segments, "one submit_sm per segment");
    let ascii: Vec<_> = parts.iter().filter(|p| p.data_coding == 0).collect();
    let mut ordered = ascii.clone();
    ordered.sort_by_key(|p| p.concat.map(|c| c.2));
    assert_eq!(ordered.iter().map(|p| p.text.as_str()).collect::<String>(), body, "the parts rebuild the text");
    assert!(ascii.iter().all(|p| p.concat.map(|c| (c.0, c.1)) == ascii[0].concat.map(|c| (c.0, c.1))));
    assert!(parts.iter().filter(|p| p.data_coding == 8).count() >= 2, "unicode goes as UCS-2");
    let kinds = history(store, udh).await;
    let reports = kinds.iter().filter(|k| matches!(k, EventKind::DeliveryReport { .. })).count();
    assert_eq!(reports, tern_core::encoding::segment_count(&body), "delivered once every segment is");

    let mut config = connector_config(sim.local_addr().port());
    config.long_messages = LongMessages::Payload;
    let connector = start(store, &config);
    let payload =
        routed(store, &account, Send { to: "+447400000002".into(), body: body.clone(), ..Send::default() }).await;
    wait_for(store, &[payload], MessageStatus::Delivered).await;
    connector.stop().await;
    let whole: Vec<_> = sim.submitted().into_iter().filter(|s| s.message_payload.is_some()).collect();
    assert_eq!(whole.len(), 1, "one submit_sm carrying the whole text");
    assert_eq!(whole[0].text, body);
    let kinds = history(store, payload).await;
    let submitted = kinds.iter().filter(|k| matches!(k, EventKind::SubmittedToSmsc { .. })).count();
    assert_eq!(submitted, tern_core::encoding::segment_count(&body), "every segment is recorded as submitted");
}

pub async fn a_transmitter_and_receiver_pair_works_like_a_transceiver(store: &TestStore) {
    let sim = simulator(|_| {}).await;
    let account = account(store, 10_000).await;
    let mut config = connector_config(sim.local_addr().port());
    config.bind_mode = BindMode::Pair;
    config.binds = 2;
    let connector = start(store, &config);
    let ids = routed_many(store, &account, 30, "pair").await;
    wait_for(store, &ids, MessageStatus::Delivered).await;
    assert_eq!(sim.stats().binds_active, 4, "two transmitters and two receivers");
    connector.stop().await;
}

pub async fn cancelled_and_expired_messages_are_not_sent(store: &TestStore) {
    let sim = simulator(|_| {}).await;
    let account = account(store, 10_000).await;
    let cancelled = routed(store, &account, Send::default()).await;
    let cancel = EventKind::Cancelled { by: "api".into() };
    store.record(&[tern_core::Event::new(cancelled, Some(account.id), chrono::Utc::now(), cancel)]).await.unwrap();
    let stale = Send { expires_at: chrono::Utc::now() - chrono::TimeDelta::seconds(1), ..Send::default() };
    let expired = routed(store, &account, stale).await;
    let fresh = routed(store, &account, Send { to: "+447400000009".into(), ..Send::default() }).await;

    let connector = start(store, &connector_config(sim.local_addr().port()));
    wait_for(store, &[fresh], MessageStatus::Delivered).await;
    wait_for(store, &[expired], MessageStatus::Expired).await;
    connector.stop().await;
    assert_eq!(sim.stats().submit_sm, 1, "only the live message reached the SMSC");
    assert_eq!(status(store, cancelled).await, MessageStatus::Cancelled);
    let kinds = history(store, expired).await;
    assert!(kinds.iter().any(|k| matches!(k, EventKind::Refunded { amount: PRICE, .. })), "{kinds:?}");
}
