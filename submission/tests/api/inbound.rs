//! `GET /v1/inbound`: an account's inbound messages, newest first, paged,
//! and only its own.

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tern_core::{AccountId, MessageId};
use tern_queue::InboundRow;

use crate::api_suite;
use crate::helpers::{TestApp, expect, expect_problem};

api_suite!(inbound_messages_are_listed_newest_first_page_by_page, inbound_messages_are_seen_only_by_their_account);

/// Stores `n` inbound messages for `account`, oldest first; returns them.
async fn received(app: &TestApp, account: &str, n: usize) -> Vec<InboundRow> {
    let account: AccountId = account.parse().unwrap();
    let start = Utc::now() - TimeDelta::minutes(10);
    let rows: Vec<InboundRow> = (0..n)
        .map(|i| InboundRow {
            message_id: MessageId::new(),
            account_id: account,
            from: format!("+4474001234{i:02}"),
            to: "Acme".into(),
            body: format!("reply {i}"),
            connector: "c1".into(),
            reply_to: (i % 2 == 0).then(MessageId::new),
            received_at: start + TimeDelta::seconds(i as i64),
        })
        .collect();
    app.store.contacts().put_inbound(&rows).await.unwrap();
    rows
}

async fn list(app: &TestApp, key: &str, query: &str, on_behalf_of: Option<&str>) -> reqwest::Response {
    let mut request = app.get(&format!("/v1/inbound{query}")).bearer_auth(key);
    if let Some(account) = on_behalf_of {
        request = request.header("Tern-On-Behalf-Of", account);
    }
    request.send().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

async fn inbound_messages_are_listed_newest_first_page_by_page(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let empty = expect(list(&app, &customer.key, "", None).await, StatusCode::OK).await;
    assert_eq!(empty, json!({ "data": [] }), "no inbound yet, no cursor");

    let rows = received(&app, &customer.id, 5).await;
    let newest_first: Vec<String> = rows.iter().rev().map(|r| r.message_id.to_string()).collect();

    let all = expect(list(&app, &customer.key, "", None).await, StatusCode::OK).await;
    assert_eq!(ids(&all), newest_first);
    assert!(all.get("next_cursor").is_none(), "{all}");
    let newest = &rows[4];
    let shown = &all["data"][0];
    assert_eq!(shown["from"], newest.from);
    assert_eq!(shown["to"], "Acme");
    assert_eq!(shown["body"], "reply 4");
    assert_eq!(shown["connector"], "c1");
    assert_eq!(shown["reply_to"], newest.reply_to.unwrap().to_string());
    let at: DateTime<Utc> = shown["received_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(at.timestamp_millis(), newest.received_at.timestamp_millis());
    assert_eq!(all["data"][1]["reply_to"], Value::Null, "an unmatched message has reply_to null");
    assert_eq!(shown.as_object().unwrap().len(), 7, "exactly the documented fields: {shown}");

    // Pages of two: 2 + 2 + 1, each cursor continuing where the last stopped.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = expect(list(&app, &customer.key, &query, None).await, StatusCode::OK).await;
        pages += 1;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!((pages, seen), (3, newest_first.clone()));

    // An exactly full last page has no cursor: nothing follows it.
    let full = expect(list(&app, &customer.key, "?limit=5", None).await, StatusCode::OK).await;
    assert_eq!(ids(&full).len(), 5);
    assert!(full.get("next_cursor").is_none(), "{full}");
    let after_oldest = format!("?cursor={}", rows[0].message_id);
    let nothing = expect(list(&app, &customer.key, &after_oldest, None).await, StatusCode::OK).await;
    assert_eq!(nothing, json!({ "data": [] }));
    let after_third = format!("?cursor={}", rows[2].message_id);
    let older = expect(list(&app, &customer.key, &after_third, None).await, StatusCode::OK).await;
    assert_eq!(ids(&older), newest_first[3..].to_vec());

    for (query, status, field) in [
        ("?limit=0", StatusCode::UNPROCESSABLE_ENTITY, Some("limit")),
        ("?limit=1001", StatusCode::UNPROCESSABLE_ENTITY, Some("limit")),
        ("?cursor=abc", StatusCode::UNPROCESSABLE_ENTITY, Some("cursor")),
        ("?limit=ten", StatusCode::BAD_REQUEST, None),
        ("?since=2026-01-01T00:00:00Z", StatusCode::BAD_REQUEST, None),
    ] {
        let problem = expect_problem(list(&app, &customer.key, query, None).await, status).await;
        if let Some(field) = field {
            assert_eq!(problem["field"], field, "{query}: {problem}");
        }
    }
    expect_problem(app.get("/v1/inbound").send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
}

async fn inbound_messages_are_seen_only_by_their_account(app: TestApp) {
    let reseller = app.customer(json!({ "name": "Reseller" })).await;
    let child = app.account(json!({ "name": "Child", "parent_id": reseller.id })).await;
    let child_id = child["id"].as_str().unwrap().to_owned();
    let child_key = app.key(&child_id).await;
    let other = app.customer(json!({ "name": "Other" })).await;
    let unrelated = app.customer(json!({ "name": "Unrelated reseller" })).await;
    app.account(json!({ "name": "Its own child", "parent_id": unrelated.id })).await;

    let childs: Vec<String> =
        received(&app, &child_id, 3).await.iter().rev().map(|r| r.message_id.to_string()).collect();
    let others: Vec<String> =
        received(&app, &other.id, 2).await.iter().rev().map(|r| r.message_id.to_string()).collect();

    let page = |key: &str, on_behalf_of: Option<&str>| {
        let (app, key, on_behalf_of) = (&app, key.to_owned(), on_behalf_of.map(str::to_owned));
        async move { expect(list(app, &key, "", on_behalf_of.as_deref()).await, StatusCode::OK).await }
    };
    assert_eq!(ids(&page(&child_key, None).await), childs, "the child sees its own");
    assert_eq!(ids(&page(&other.key, None).await), others, "another account sees only its own");
    assert_eq!(ids(&page(&unrelated.key, None).await), Vec::<String>::new(), "an unrelated reseller sees nothing");
    assert_eq!(ids(&page(&reseller.key, None).await), Vec::<String>::new(), "the reseller's own inbox is its own");
    assert_eq!(ids(&page(&reseller.key, Some(&child_id)).await), childs, "the reseller acting for its child");

    // A cursor newer than every message still pages through the caller's own only.
    let cursor = format!("?cursor={}", uuid::Uuid::now_v7());
    let with_cursor = expect(list(&app, &other.key, &cursor, None).await, StatusCode::OK).await;
    assert_eq!(ids(&with_cursor), others);

    for (key, target) in [(&unrelated.key, &child_id), (&child_key, &reseller.id), (&other.key, &child_id)] {
        expect_problem(list(&app, key, "", Some(target)).await, StatusCode::FORBIDDEN).await;
    }
}
