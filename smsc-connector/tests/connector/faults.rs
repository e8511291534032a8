//! What SMSC links do to messages: throttling, dropped links, lost
//! responses, early receipts, refusals, outages — and nothing is lost.

use std::time::Duration;

use chrono::Utc;
use tern_core::{DeliveryState, EventKind, MessageStatus};
use tern_queue::SmscIdRecord;
use tern_smsc_connector::ReceiptIds;
use tern_smsc_connector::deliver::Receipt;
use tern_smsc_connector::receipts::ReceiptMatcher;

use crate::helpers::*;

pub async fn throttling_backs_off_and_every_message_goes_later(store: &TestStore) {
    let sim = simulator(|c| c.throttle_share = 1.0).await;
    let account = account(store, 10_000).await;
    let connector = start(store, &connector_config(sim.local_addr().port()));
    let ids = routed_many(store, &account, 20, "throttled").await;
    eventually("the SMSC throttled every message at least once", || async {
        let mut throttled = 0;
        for id in &ids {
            let kinds = history(store, *id).await;
            if kinds.iter().any(|k| matches!(k, EventKind::SmscThrottled { command_status: 0x58, .. })) {
                throttled += 1;
            }
        }
        throttled == ids.len()
    })
    .await;
    for id in &ids {
        assert_eq!(status(store, *id).await, MessageStatus::Routed, "throttled messages stay queued");
        let kinds = history(store, *id).await;
        assert!(kinds.iter().any(|k| matches!(k, EventKind::Retried { stage, .. } if stage == "connector")));
    }
    sim.update(|c| c.throttle_share = 0.0);
    wait_for(store, &ids, MessageStatus::Delivered).await;
    assert_eq!(sim.stats().duplicates, 0, "a throttled submit_sm was refused, so resending it duplicates nothing");
    connector.stop().await;
}

pub async fn a_link_dropped_mid_window_loses_nothing(store: &TestStore) {
    let sim = simulator(|c| c.disconnect_every = Some(29)).await;
    let account = account(store, 1_000_000).await;
    let mut config = connector_config(sim.local_addr().port());
    config.window = 20;
    let connector = start(store, &config);
    let ids = routed_many(store, &account, 200, "dropped").await;
    wait_for(store, &ids, MessageStatus::Delivered).await;
    let stats = sim.stats();
    assert!(stats.disconnects >= 5, "the link was dropped repeatedly: {stats:?}");
    // Only a submit_sm whose response was lost may have been sent twice,
    // and every such one is on record.
    let unknown = unknown_outcomes(store, &ids).await;
    assert!(stats.duplicates as usize <= unknown, "{} duplicates, {unknown} unknown outcomes", stats.duplicates);
    for id in &ids {
        let kinds = history(store, *id).await;
        let submitted = kinds.iter().filter(|k| matches!(k, EventKind::SubmittedToSmsc { .. })).count();
        assert_eq!(submitted, 1, "one recorded submission per message: {kinds:?}");
    }
    connector.stop().await;
}

pub async fn lost_responses_are_resent_and_counted(store: &TestStore) {
    let sim = simulator(|c| c.drop_response_share = 0.25).await;
    let account = account(store, 1_000_000).await;
    let mut config = connector_config(sim.local_addr().port());
    config.response_timeout_ms = 300;
    config.lease_ms = 5_000;
    let connector = start(store, &config);
    let ids = routed_many(store, &account, 60, "lost").await;
    eventually("every message submitted", || async {
        let mut done = 0;
        for id in &ids {
            if status(store, *id).await == MessageStatus::Delivered {
                done += 1;
            }
        }
        done == ids.len()
    })
    .await;
    let stats = sim.stats();
    let unknown = unknown_outcomes(store, &ids).await;
    assert!(stats.dropped_responses > 0, "{stats:?}");
    assert!(stats.duplicates > 0, "a lost response means a resend the SMSC sees twice: {stats:?}");
    assert!(stats.duplicates as usize <= unknown, "{} duplicates, {unknown} unknown outcomes", stats.duplicates);
    connector.stop().await;
}

pub async fn receipts_that_beat_their_response_are_still_matched(store: &TestStore) {
    let sim = simulator(|c| c.receipt_before_response = true).await;
    let account = account(store, 10_000).await;
    let connector = start(store, &connector_config(sim.local_addr().port()));
    let ids = routed_many(store, &account, 30, "early").await;
    wait_for(store, &ids, MessageStatus::Delivered).await;
    // They went through the deferred queue, which empties (the SMSC may
    // also have sent a receipt again, matched at once, before the deferred
    // copy's turn came).
    let topic = tern_smsc_connector::receipts::receipt_topic(CONNECTOR);
    eventually("the deferred receipts are all matched", || async {
        store.queue().depth(&topic).await.unwrap().pending() == 0
    })
    .await;
    for id in &ids {
        let reports =
            history(store, *id).await.iter().filter(|k| matches!(k, EventKind::DeliveryReport { .. })).count();
        assert_eq!(reports, 1, "one receipt recorded per message, however often it came");
    }
    connector.stop().await;
}

pub async fn permanent_refusals_fail_and_refund(store: &TestStore) {
    let sim = simulator(|c| c.reject_share = 1.0).await;
    let account = account(store, 10_000).await;
    let connector = start(store, &connector_config(sim.local_addr().port()));
    let ids = routed_many(store, &account, 5, "refused").await;
    wait_for(store, &ids, MessageStatus::Failed).await;
    for id in &ids {
        let kinds = history(store, *id).await;
        assert!(kinds.iter().any(|k| matches!(k, EventKind::SmscRejected { command_status: 0x0B, .. })), "{kinds:?}");
        assert!(kinds.iter().any(|k| matches!(k, EventKind::Failed { smpp_status: Some(0x0B), .. })), "{kinds:?}");
        let refunds = kinds.iter().filter(|k| matches!(k, EventKind::Refunded { amount: PRICE, .. })).count();
        assert_eq!(refunds, 1, "{kinds:?}");
    }
    assert_eq!(balance(store, account.id).await, 10_000, "every charge came back");
    connector.stop().await;
}

pub async fn messages_wait_while_the_smsc_is_down_and_drain_after(store: &TestStore) {
    // A port nobody listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let account = account(store, 10_000).await;
    let connector = start(store, &connector_config(port));
    let ids = routed_many(store, &account, 25, "waiting").await;
    let lease = tern_handlers::routing::down_lease(CONNECTOR);
    eventually("the connector says it is down", || async {
        store.coordination().lease_holder(&lease).await.unwrap().is_some()
    })
    .await;
    for id in &ids {
        assert_eq!(
            status(store, *id).await,
            MessageStatus::Routed,
            "nothing happens to a message while the link is down"
        );
    }
    let depth = store.queue().depth(&tern_handlers::Dispatch::topic(CONNECTOR)).await.unwrap();
    assert_eq!(depth.ready, 25, "the messages wait in the queue, unleased: {depth:?}");

    let sim = simulator(|c| c.listen = format!("127.0.0.1:{port}").parse().unwrap()).await;
    wait_for(store, &ids, MessageStatus::Delivered).await;
    eventually("the down lease is released", || async {
        store.coordination().lease_holder(&lease).await.unwrap().is_none()
    })
    .await;
    assert_eq!(sim.stats().submit_sm, 25);
    connector.stop().await;
}

pub async fn a_refused_bind_is_retried_without_sending(store: &TestStore) {
    let sim = simulator(|_| {}).await;
    let account = account(store, 10_000).await;
    let mut config = connector_config(sim.local_addr().port());
    config.password = "wrong".into();
    let connector = start(store, &config);
    let ids = routed_many(store, &account, 3, "refused-bind").await;
    eventually("several binds refused", || async { sim.stats().bind_refused >= 3 }).await;
    for id in &ids {
        assert_eq!(status(store, *id).await, MessageStatus::Routed);
    }
    connector.stop().await;
    assert_eq!(sim.stats().submit_sm, 0);
}

pub async fn shutdown_records_what_was_in_flight_then_unbinds(store: &TestStore) {
    let sim = simulator(|c| {
        c.slow_share = 1.0;
        c.slow_ms = 300;
    })
    .await;
    let account = account(store, 1_000_000).await;
    let connector = start(store, &connector_config(sim.local_addr().port()));
    let ids = routed_many(store, &account, 100, "shutdown").await;
    eventually("sending started", || async { sim.stats().submit_sm >= 10 }).await;
    connector.stop().await;
    let stats = sim.stats();
    assert!(stats.unbinds >= 1, "{stats:?}");
    // Whatever the SMSC took before the unbind is on record: no message is
    // left looking unsent while the SMSC has it.
    let mut submitted = 0;
    for id in &ids {
        if history(store, *id).await.iter().any(|k| matches!(k, EventKind::SubmittedToSmsc { .. })) {
            submitted += 1;
        }
    }
    assert_eq!(submitted, sim.submitted().len(), "every submit_sm the SMSC answered was recorded");
    // The rest go on when a connector runs again.
    let connector = start(store, &connector_config(sim.local_addr().port()));
    sim.update(|c| c.slow_share = 0.0);
    wait_for(store, &ids, MessageStatus::Delivered).await;
    connector.stop().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(sim.stats().duplicates, 0);
}

/// The dispatcher stored the SMSC id and died before recording the
/// submission; the SMSC's receipt, matched from the store, records both.
pub async fn a_receipt_records_the_submission_its_dispatcher_did_not_live_to(store: &TestStore) {
    let account = account(store, 10_000).await;
    let id = routed(store, &account, Send::default()).await;
    let record = SmscIdRecord {
        connector: CONNECTOR.into(),
        smsc_id: "4f2a".into(),
        message_id: id,
        account_id: Some(account.id),
        first_segment: 1,
        last_segment: 1,
        at: Utc::now(),
    };
    store.smsc().put_smsc_ids(std::slice::from_ref(&record)).await.unwrap();
    let matcher = ReceiptMatcher::new(CONNECTOR, store.store.clone(), ReceiptIds::Same);
    let receipt =
        Receipt { smsc_id: "4f2a".into(), state: DeliveryState::Delivered, error_code: None, received_at: Utc::now() };
    assert!(matcher.record(std::slice::from_ref(&receipt)).await.unwrap().is_empty(), "matched from the store");
    assert_eq!(status(store, id).await, MessageStatus::Delivered);
    // The SMSC sends it again; the dispatcher's own record would be the same fact.
    matcher.record(&[receipt]).await.unwrap();
    let kinds = history(store, id).await;
    let submitted: Vec<&EventKind> = kinds.iter().filter(|k| matches!(k, EventKind::SubmittedToSmsc { .. })).collect();
    assert!(
        matches!(submitted.as_slice(), [EventKind::SubmittedToSmsc { segment: 1, smsc_message_id, .. }] if smsc_message_id == "4f2a"),
        "{kinds:?}"
    );
    assert_eq!(counts(&kinds).get("delivery_report"), Some(&1), "{kinds:?}");
}
