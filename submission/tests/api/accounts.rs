//! The admin API: accounts, top-ups, keys; authentication with keys.

use reqwest::StatusCode;
use serde_json::json;

use crate::api_suite;
use crate::helpers::{TestApp, expect, expect_problem};

api_suite!(admin_manages_accounts_and_balances, keys_authenticate_until_revoked, suspended_accounts_cannot_call);

async fn admin_manages_accounts_and_balances(app: TestApp) {
    let no_token = app.post("/admin/v1/accounts").json(&json!({ "name": "x" })).send().await.unwrap();
    expect_problem(no_token, StatusCode::UNAUTHORIZED).await;
    let wrong = app.get("/admin/v1/accounts").bearer_auth("nope").send().await.unwrap();
    expect_problem(wrong, StatusCode::UNAUTHORIZED).await;

    let reseller = app.account(json!({ "name": "Reseller", "credit_limit": 1000, "currency": "GBP" })).await;
    assert_eq!(reseller["balance"], 0);
    assert_eq!(reseller["currency"], "GBP");
    let id = reseller["id"].as_str().unwrap();
    let child = app.account(json!({ "name": "Child", "parent_id": id, "messages_per_second": 50 })).await;
    assert_eq!(child["parent_id"], id);
    assert_eq!(child["messages_per_second"], 50);

    let got =
        expect(app.admin(app.get(&format!("/admin/v1/accounts/{id}"))).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(got["name"], "Reseller");
    let all = expect(app.admin(app.get("/admin/v1/accounts")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let children = app.admin(app.get(&format!("/admin/v1/accounts?parent_id={id}"))).send().await.unwrap();
    let children = expect(children, StatusCode::OK).await;
    assert_eq!(children["data"][0]["id"], child["id"]);
    let page = expect(app.admin(app.get("/admin/v1/accounts?limit=1")).send().await.unwrap(), StatusCode::OK).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = app.admin(app.get(&format!("/admin/v1/accounts?limit=1&cursor={cursor}"))).send().await.unwrap();
    assert_eq!(expect(next, StatusCode::OK).await["data"][0]["id"], child["id"]);

    let top_up = |reference: &str| {
        app.admin(app.post(&format!("/admin/v1/accounts/{id}/top-ups")))
            .json(&json!({ "amount": 2500, "reference": reference }))
            .send()
    };
    let first = expect(top_up("inv-1").await.unwrap(), StatusCode::OK).await;
    assert_eq!((first["balance"].as_i64(), first["duplicate"].as_bool()), (Some(2500), Some(false)));
    let again = expect(top_up("inv-1").await.unwrap(), StatusCode::OK).await;
    assert_eq!((again["balance"].as_i64(), again["duplicate"].as_bool()), (Some(2500), Some(true)));
    expect(top_up("inv-2").await.unwrap(), StatusCode::OK).await;

    let key = app.key(id).await;
    let balance = expect(app.get("/v1/balance").bearer_auth(&key).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(balance["balance"], 5000);
    assert_eq!(balance["available"], 6000);
    assert_eq!(balance["currency"], "GBP");

    let suspended = app.admin(app.post(&format!("/admin/v1/accounts/{id}/suspend"))).send().await.unwrap();
    assert_eq!(expect(suspended, StatusCode::OK).await["suspended"], true);
    let reinstated = app.admin(app.post(&format!("/admin/v1/accounts/{id}/reinstate"))).send().await.unwrap();
    assert_eq!(expect(reinstated, StatusCode::OK).await["suspended"], false);
    let missing = app.admin(app.get(&format!("/admin/v1/accounts/{}", uuid::Uuid::now_v7()))).send().await.unwrap();
    expect_problem(missing, StatusCode::NOT_FOUND).await;
}

async fn keys_authenticate_until_revoked(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let ok = app.get("/v1/balance").bearer_auth(&customer.key).send().await.unwrap();
    expect(ok, StatusCode::OK).await;
    let keys = app.admin(app.get(&format!("/admin/v1/accounts/{}/keys", customer.id))).send().await.unwrap();
    let keys = expect(keys, StatusCode::OK).await;
    let listed = keys.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("key").is_none(), "the secret is never listed");
    let key_id = listed[0]["id"].as_str().unwrap();
    assert!(customer.key.contains(key_id));
    let stored = app.store.accounts().key(key_id).await.unwrap().unwrap();
    assert!(!stored.secret_hash.contains(&customer.key[customer.key.len() - 32..]), "only a hash is stored");

    let revoke =
        app.admin(app.delete(&format!("/admin/v1/accounts/{}/keys/{key_id}", customer.id))).send().await.unwrap();
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    let refused = app.get("/v1/balance").bearer_auth(&customer.key).send().await.unwrap();
    let problem = expect_problem(refused, StatusCode::UNAUTHORIZED).await;
    assert!(problem["detail"].as_str().unwrap().contains("revoked"), "{problem}");
    let again = app.admin(app.delete(&format!("/admin/v1/accounts/{}/keys/nope", customer.id))).send().await.unwrap();
    expect_problem(again, StatusCode::NOT_FOUND).await;
}

async fn suspended_accounts_cannot_call(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let path = format!("/admin/v1/accounts/{}/suspend", customer.id);
    expect(app.admin(app.post(&path)).send().await.unwrap(), StatusCode::OK).await;
    let send = app.send(&customer.key, json!({ "to": "+447400123456", "from": "Acme", "body": "hi" })).await;
    let problem = expect_problem(send, StatusCode::FORBIDDEN).await;
    assert!(problem["detail"].as_str().unwrap().contains("suspended"));
    assert_eq!(app.message_count(&customer.id).await, 0);
}
