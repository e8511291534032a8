//! Account settings: the inbound URL and webhook secret given at creation,
//! and `PATCH /admin/v1/accounts/{id}`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_suite;
use crate::helpers::{TestApp, expect, expect_problem};

api_suite!(
    accounts_are_created_with_an_inbound_url_and_a_webhook_secret,
    patch_changes_each_field_and_only_it,
    patch_rotates_the_webhook_secret,
    patch_refuses_bad_input_unknown_accounts_and_non_admins,
);

impl TestApp {
    async fn patch_account(&self, id: &str, body: Value) -> reqwest::Response {
        self.admin(self.patch(&format!("/admin/v1/accounts/{id}"))).json(&body).send().await.unwrap()
    }

    async fn account_view(&self, id: &str) -> Value {
        expect(self.admin(self.get(&format!("/admin/v1/accounts/{id}"))).send().await.unwrap(), StatusCode::OK).await
    }
}

async fn accounts_are_created_with_an_inbound_url_and_a_webhook_secret(app: TestApp) {
    let created = app.account(json!({ "name": "Acme", "inbound_url": "https://acme.example/inbound" })).await;
    assert_eq!(created["inbound_url"], "https://acme.example/inbound");
    let secret = created["webhook_secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.account_view(id).await["webhook_secret"], secret, "the admin view shows the same secret");
    let stored = app.store.accounts().account(id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.webhook_secret.as_deref(), Some(secret));
    assert_eq!(stored.inbound_url.as_deref(), Some("https://acme.example/inbound"));

    let other = app.account(json!({ "name": "Other" })).await;
    assert_eq!(other["inbound_url"], Value::Null);
    assert_ne!(other["webhook_secret"], created["webhook_secret"], "each account has its own secret");

    let bad = app.admin(app.post("/admin/v1/accounts")).json(&json!({ "name": "x", "inbound_url": "ftp://x.example" }));
    let problem = expect_problem(bad.send().await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["field"], "inbound_url", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("inbound_url"), "{problem}");
}

async fn patch_changes_each_field_and_only_it(app: TestApp) {
    let customer =
        app.customer(json!({ "credit_limit": 100, "requests_per_second": 50, "messages_per_second": 500 })).await;
    let id = customer.id.as_str();
    let before = app.account_view(id).await;
    // (change, expected values of the view afterwards)
    let steps = [
        (
            json!({ "callback_url": "https://acme.example/status" }),
            json!({ "callback_url": "https://acme.example/status" }),
        ),
        (json!({ "inbound_url": "https://acme.example/in" }), json!({ "inbound_url": "https://acme.example/in" })),
        (json!({ "inbound_url": null }), json!({ "inbound_url": null })),
        (json!({ "callback_url": null }), json!({ "callback_url": null })),
        (json!({ "credit_limit": 2500 }), json!({ "credit_limit": 2500 })),
        (json!({ "credit_limit": 0 }), json!({ "credit_limit": 0 })),
        (json!({ "price_plan": { "default": 7 } }), json!({ "price_plan": { "default": 7 } })),
        (json!({ "price_plan": null }), json!({ "price_plan": null })),
        (json!({ "requests_per_second": 9 }), json!({ "requests_per_second": 9, "messages_per_second": 500 })),
        (json!({ "messages_per_second": 40 }), json!({ "requests_per_second": 9, "messages_per_second": 40 })),
        (
            json!({ "requests_per_second": 20, "messages_per_second": 30, "credit_limit": 5 }),
            json!({ "requests_per_second": 20, "messages_per_second": 30, "credit_limit": 5 }),
        ),
        (json!({}), json!({})),
        (json!({ "rotate_webhook_secret": false }), json!({ "webhook_secret": before["webhook_secret"] })),
    ];
    let mut expected = before.clone();
    for (change, effect) in steps {
        for (k, v) in effect.as_object().unwrap() {
            expected[k] = v.clone();
        }
        let answer = expect(app.patch_account(id, change.clone()).await, StatusCode::OK).await;
        assert_eq!(answer, expected, "after {change}");
        assert_eq!(app.account_view(id).await, expected, "stored after {change}");
    }
    let stored = app.store.accounts().account(id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!((stored.limits.requests_per_second, stored.limits.messages_per_second), (20, 30));
    assert_eq!((stored.credit_limit, stored.price_plan.as_ref()), (5, None));

    // The new settings apply at once, although the key's account was cached
    // by the calls before.
    let balance = expect(app.get("/v1/balance").bearer_auth(&customer.key).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(balance["credit_limit"], 5);
    expect(app.patch_account(id, json!({ "requests_per_second": 1 })).await, StatusCode::OK).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(app.get("/v1/balance").bearer_auth(&customer.key).send().await.unwrap().status());
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "1 request per second applies: {statuses:?}");
}

async fn patch_rotates_the_webhook_secret(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let old = app.account_view(&customer.id).await["webhook_secret"].as_str().unwrap().to_owned();
    let rotated =
        expect(app.patch_account(&customer.id, json!({ "rotate_webhook_secret": true })).await, StatusCode::OK).await;
    let new = rotated["webhook_secret"].as_str().unwrap();
    assert!(new.starts_with("whsec_"), "{new}");
    assert_ne!(new, old);
    assert_eq!(app.account_view(&customer.id).await["webhook_secret"], new);
    let stored = app.store.accounts().account(customer.id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.webhook_secret.as_deref(), Some(new));
    let again =
        expect(app.patch_account(&customer.id, json!({ "rotate_webhook_secret": true })).await, StatusCode::OK).await;
    assert_ne!(again["webhook_secret"], rotated["webhook_secret"], "every rotation makes a new secret");
}

async fn patch_refuses_bad_input_unknown_accounts_and_non_admins(app: TestApp) {
    let customer = app.customer(json!({ "callback_url": "https://acme.example/status" })).await;
    let id = customer.id.as_str();
    let before = app.account_view(id).await;
    let cases = [
        (json!({ "callback_url": "not a url" }), "callback_url", "URL"),
        (json!({ "callback_url": "ftp://acme.example/x" }), "callback_url", "http"),
        (json!({ "inbound_url": "mailto:ops@acme.example" }), "inbound_url", "inbound_url"),
        (json!({ "inbound_url": format!("https://acme.example/{}", "x".repeat(2100)) }), "inbound_url", "2048"),
        (json!({ "credit_limit": -1 }), "credit_limit", "negative"),
        (json!({ "credit_limit": null }), "credit_limit", "null"),
        (json!({ "credit_limit": "lots" }), "credit_limit", ""),
        (json!({ "price_plan": { "prefixes": { "+44": 3 } } }), "price_plan", ""),
        (json!({ "price_plan": { "default": -5 } }), "price_plan", ""),
        (json!({ "price_plan": { "default": 5, "colour": 1 } }), "price_plan.colour", "unknown field"),
        (json!({ "requests_per_second": 0 }), "requests_per_second", "at least 1"),
        (json!({ "messages_per_second": 0 }), "messages_per_second", "at least 1"),
        (json!({ "messages_per_second": -3 }), "messages_per_second", ""),
        (json!({ "requests_per_second": null }), "requests_per_second", "null"),
        (json!({ "rotate_webhook_secret": "yes" }), "rotate_webhook_secret", ""),
        (json!({ "name": "Renamed" }), "name", "unknown field"),
        (json!({ "suspended": true }), "suspended", "unknown field"),
        // One bad field refuses the whole change: the good one is not applied.
        (json!({ "credit_limit": 900, "callback_url": "nope" }), "callback_url", "URL"),
    ];
    for (body, field, detail) in cases {
        let problem = expect_problem(app.patch_account(id, body.clone()).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["field"], field, "{body}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(detail), "{body}: {problem}");
    }
    assert_eq!(app.account_view(id).await, before, "no refused PATCH changed anything");

    let not_json = app.admin(app.patch(&format!("/admin/v1/accounts/{id}"))).header("content-type", "text/plain");
    expect_problem(not_json.body("x").send().await.unwrap(), StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let array = app.admin(app.patch(&format!("/admin/v1/accounts/{id}"))).json(&json!([1]));
    expect_problem(array.send().await.unwrap(), StatusCode::BAD_REQUEST).await;

    for unknown in [uuid::Uuid::now_v7().to_string(), "not-an-id".to_owned()] {
        let missing = app.patch_account(&unknown, json!({ "credit_limit": 1 })).await;
        expect_problem(missing, StatusCode::NOT_FOUND).await;
    }

    let body = json!({ "credit_limit": 1_000_000 });
    let anonymous = app.patch(&format!("/admin/v1/accounts/{id}")).json(&body).send().await.unwrap();
    expect_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    let as_customer = app.patch(&format!("/admin/v1/accounts/{id}")).bearer_auth(&customer.key).json(&body);
    expect_problem(as_customer.send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.account_view(id).await, before);
}
