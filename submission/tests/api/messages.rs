//! Single sends: durable accept, details and history, scheduling,
//! idempotency keys, cancellation, listing.

use chrono::{TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tern_core::{Event, EventKind};
use tern_queue::ConsumerOptions;

use crate::api_suite;
use crate::helpers::{TestApp, expect, expect_problem};

api_suite!(
    a_send_is_durable_and_readable_with_its_history,
    scheduled_sends_wait_and_can_be_cancelled,
    idempotency_keys_replay_or_refuse,
    cancel_refuses_messages_an_smsc_has,
    messages_list_with_filters_and_cursor,
);

fn hello(to: &str) -> Value {
    json!({ "to": to, "from": "Acme", "body": "Hello there", "client_ref": "order-1" })
}

async fn a_send_is_durable_and_readable_with_its_history(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let accepted = expect(app.send(&customer.key, hello("+44 7400 123456")).await, StatusCode::ACCEPTED).await;
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["to"], "+447400123456", "normalised to E.164");
    assert_eq!(accepted["segments"], 1);
    assert_eq!(accepted["encoding"], "gsm7");
    assert_eq!(accepted["price"], json!({ "amount": 3, "currency": "EUR" }), "the 44 prefix price");
    let id = accepted["id"].as_str().unwrap();

    // 202 means durable: the event is journaled and the message queued.
    let events = app.store.journal().message_events(id.parse().unwrap()).await.unwrap();
    assert!(matches!(events[0].kind, EventKind::Accepted { .. }));
    let consumer = app.store.queue().consumer("mt", ConsumerOptions::default());
    let claim = consumer.claim(10).await.unwrap();
    assert_eq!(claim.deliveries.len(), 1);
    assert_eq!(claim.deliveries[0].id(), id);
    let queued: Event = serde_json::from_slice(claim.deliveries[0].payload()).unwrap();
    assert_eq!(queued, events[0]);

    let long = "ж".repeat(71);
    let unicode = app.send(&customer.key, json!({ "to": "+14155550100", "from": "12345", "body": long })).await;
    let unicode = expect(unicode, StatusCode::ACCEPTED).await;
    assert_eq!((unicode["encoding"].as_str(), unicode["segments"].as_u64()), (Some("ucs2"), Some(2)));
    assert_eq!(unicode["price"]["amount"], 10, "default price × 2 segments");

    let got =
        expect(app.get(&format!("/v1/messages/{id}")).bearer_auth(&customer.key).send().await.unwrap(), StatusCode::OK)
            .await;
    assert_eq!(got["status"], "accepted");
    assert_eq!(got["body"], "Hello there");
    assert_eq!(got["client_ref"], "order-1");
    assert_eq!(got["history"][0]["event"]["type"], "accepted");
    assert!(got["timestamps"]["accepted_at"].is_string());

    // Later stages' events show up in the status and the history.
    let message = id.parse().unwrap();
    let account = Some(customer.id.parse().unwrap());
    let later = |s, kind| Event::new(message, account, Utc::now() + TimeDelta::milliseconds(s), kind);
    app.store
        .record(&[
            later(1, EventKind::Routed { connector: "smsc-a".into(), route: "default".into(), attempt: 1 }),
            later(
                2,
                EventKind::SubmittedToSmsc { connector: "smsc-a".into(), segment: 1, smsc_message_id: "x1".into() },
            ),
        ])
        .await
        .unwrap();
    let got =
        expect(app.get(&format!("/v1/messages/{id}")).bearer_auth(&customer.key).send().await.unwrap(), StatusCode::OK)
            .await;
    assert_eq!(got["status"], "submitted");
    let types: Vec<&str> =
        got["history"].as_array().unwrap().iter().map(|h| h["event"]["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["accepted", "routed", "submitted_to_smsc"]);
    assert!(got["timestamps"]["submitted_at"].is_string());
}

async fn scheduled_sends_wait_and_can_be_cancelled(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let send_at = (Utc::now() + TimeDelta::hours(2)).to_rfc3339();
    let mut body = hello("+447400123456");
    body["send_at"] = json!(send_at);
    body["validity"] = json!(3600);
    let accepted = expect(app.send(&customer.key, body).await, StatusCode::ACCEPTED).await;
    assert_eq!(accepted["status"], "scheduled");
    let expires = chrono::DateTime::parse_from_rfc3339(accepted["expires_at"].as_str().unwrap()).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(accepted["send_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - at, TimeDelta::hours(1), "validity counts from the send time");
    let id = accepted["id"].as_str().unwrap();
    let depth = app.store.queue().depth("scheduled").await.unwrap();
    assert_eq!((depth.delayed, depth.ready), (1, 0), "held until send_at");

    let path = format!("/v1/messages/{id}");
    let cancelled = expect(app.delete(&path).bearer_auth(&customer.key).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(cancelled["status"], "cancelled");
    let again = expect(app.delete(&path).bearer_auth(&customer.key).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(again["status"], "cancelled", "cancelling twice is harmless");
    let events = app.store.journal().message_events(id.parse().unwrap()).await.unwrap();
    assert_eq!(events.iter().filter(|e| matches!(e.kind, EventKind::Cancelled { .. })).count(), 1);
    let listed = app.get("/v1/messages?status=cancelled").bearer_auth(&customer.key).send().await.unwrap();
    assert_eq!(expect(listed, StatusCode::OK).await["data"][0]["id"], id);
}

async fn idempotency_keys_replay_or_refuse(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let send = |body: Value, key: &'static str| {
        app.post("/v1/messages").bearer_auth(&customer.key).header("Idempotency-Key", key).json(&body).send()
    };
    let first = send(hello("+447400123456"), "k-1").await.unwrap();
    let first = expect(first, StatusCode::ACCEPTED).await;
    let replayed = send(hello("+447400123456"), "k-1").await.unwrap();
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(expect(replayed, StatusCode::ACCEPTED).await, first, "the same response");
    assert_eq!(app.message_count(&customer.id).await, 1, "one message");

    let different = send(hello("+447400123457"), "k-1").await.unwrap();
    let problem = expect_problem(different, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(problem["detail"].as_str().unwrap().contains("different request"), "{problem}");
    assert_eq!(app.message_count(&customer.id).await, 1);

    // Keys are per account: another account may use the same key.
    let other = app.customer(json!({})).await;
    let theirs =
        app.post("/v1/messages").bearer_auth(&other.key).header("Idempotency-Key", "k-1").json(&hello("+447400123456"));
    let theirs = expect(theirs.send().await.unwrap(), StatusCode::ACCEPTED).await;
    assert_ne!(theirs["id"], first["id"]);

    let batch = json!({ "from": "Acme", "body": "Hi {name}", "recipients": [
        { "to": "+447400123456", "variables": { "name": "Ann" } },
        { "to": "+447400123457", "variables": { "name": "Bob" } },
    ]});
    let post =
        || app.post("/v1/batches").bearer_auth(&customer.key).header("Idempotency-Key", "b-1").json(&batch).send();
    let one = expect(post().await.unwrap(), StatusCode::ACCEPTED).await;
    let two = expect(post().await.unwrap(), StatusCode::ACCEPTED).await;
    assert_eq!(one, two);
    assert_eq!(app.message_count(&customer.id).await, 3, "the batch was accepted once");

    // A retry is answered from the record before rate limits (or the clock)
    // are consulted: the account at its limit still gets its first answer.
    let slow = app.customer(json!({ "messages_per_second": 1 })).await;
    let keyed = |key: &'static str| {
        app.post("/v1/messages")
            .bearer_auth(&slow.key)
            .header("Idempotency-Key", key)
            .json(&hello("+447400123456"))
            .send()
    };
    let first = expect(keyed("s-1").await.unwrap(), StatusCode::ACCEPTED).await;
    let again = expect(keyed("s-1").await.unwrap(), StatusCode::ACCEPTED).await;
    assert_eq!(first, again, "replayed although the account is at its limit");
    expect_problem(keyed("s-2").await.unwrap(), StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(app.message_count(&slow.id).await, 1);
}

async fn cancel_refuses_messages_an_smsc_has(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let accepted = expect(app.send(&customer.key, hello("+447400123456")).await, StatusCode::ACCEPTED).await;
    let id = accepted["id"].as_str().unwrap();
    let submitted = Event::new(
        id.parse().unwrap(),
        Some(customer.id.parse().unwrap()),
        Utc::now() + TimeDelta::milliseconds(5),
        EventKind::SubmittedToSmsc { connector: "smsc-a".into(), segment: 1, smsc_message_id: "abc".into() },
    );
    app.store.record(&[submitted]).await.unwrap();
    let refused = app.delete(&format!("/v1/messages/{id}")).bearer_auth(&customer.key).send().await.unwrap();
    let problem = expect_problem(refused, StatusCode::CONFLICT).await;
    assert!(problem["detail"].as_str().unwrap().contains("SMSC"), "{problem}");

    let other = expect(app.send(&customer.key, hello("+447400123456")).await, StatusCode::ACCEPTED).await;
    let other_id = other["id"].as_str().unwrap();
    let path = format!("/v1/messages/{other_id}");
    expect(app.delete(&path).bearer_auth(&customer.key).send().await.unwrap(), StatusCode::OK).await;
    let expired =
        Event::new(other_id.parse().unwrap(), Some(customer.id.parse().unwrap()), Utc::now(), EventKind::Expired);
    app.store.record(&[expired]).await.unwrap();
    let got = expect(app.get(&path).bearer_auth(&customer.key).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(got["status"], "cancelled", "the first terminal state stays");
    assert!(got["timestamps"]["completed_at"].is_string());
}

async fn messages_list_with_filters_and_cursor(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let mut ids = Vec::new();
    for to in ["+447400000001", "+447400000002", "+447400000001"] {
        let accepted = expect(app.send(&customer.key, hello(to)).await, StatusCode::ACCEPTED).await;
        ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    let list = |query: String| {
        let request = app.get(&format!("/v1/messages{query}")).bearer_auth(&customer.key);
        async move {
            let page = expect(request.send().await.unwrap(), StatusCode::OK).await;
            let ids: Vec<String> =
                page["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
            (ids, page["next_cursor"].as_str().map(str::to_owned))
        }
    };
    let (all, _) = list(String::new()).await;
    assert_eq!(all, [ids[2].clone(), ids[1].clone(), ids[0].clone()], "newest first");
    let (first, cursor) = list("?limit=2".into()).await;
    assert_eq!(first, all[..2]);
    let (rest, end) = list(format!("?limit=2&cursor={}", cursor.unwrap())).await;
    assert_eq!(rest, all[2..]);
    assert_eq!(end, None);
    let (to_one, _) = list("?to=%2B447400000001".into()).await;
    assert_eq!(to_one, [ids[2].clone(), ids[0].clone()]);
    let (accepted, _) = list("?status=accepted".into()).await;
    assert_eq!(accepted.len(), 3);
    let (none, _) = list("?status=delivered".into()).await;
    assert!(none.is_empty());
    let since = (Utc::now() - TimeDelta::minutes(5)).to_rfc3339().replace('+', "%2B");
    let until = (Utc::now() + TimeDelta::minutes(5)).to_rfc3339().replace('+', "%2B");
    let (window, _) = list(format!("?since={since}&until={until}")).await;
    assert_eq!(window.len(), 3);
    let (future, _) = list(format!("?since={until}")).await;
    assert!(future.is_empty());
}
