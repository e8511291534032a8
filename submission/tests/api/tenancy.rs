//! Tenant isolation: another account's message or batch answers 404 on
//! every endpoint, exactly like an unknown id; resellers act only for their
//! own sub-accounts.

use reqwest::StatusCode;
use serde_json::json;

use crate::api_suite;
use crate::helpers::{TestApp, expect, expect_problem};

api_suite!(another_accounts_resources_are_not_found, resellers_act_only_for_their_sub_accounts);

async fn another_accounts_resources_are_not_found(app: TestApp) {
    let owner = app.customer(json!({})).await;
    let stranger = app.customer(json!({})).await;
    let sent = app.send(&owner.key, json!({ "to": "+447400123456", "from": "Acme", "body": "mine" })).await;
    let id = expect(sent, StatusCode::ACCEPTED).await["id"].as_str().unwrap().to_owned();
    let batch = json!({ "from": "Acme", "body": "b", "recipients": [{ "to": "+447400123456" }] });
    let batch = app.post("/v1/batches").bearer_auth(&owner.key).json(&batch).send().await.unwrap();
    let batch_id = expect(batch, StatusCode::ACCEPTED).await["batch_id"].as_str().unwrap().to_owned();
    let unknown = uuid::Uuid::now_v7().to_string();

    for (what, path) in [("message", "/v1/messages"), ("batch", "/v1/batches")] {
        let theirs = if what == "message" { &id } else { &batch_id };
        let foreign = app.get(&format!("{path}/{theirs}")).bearer_auth(&stranger.key).send().await.unwrap();
        let foreign = expect_problem(foreign, StatusCode::NOT_FOUND).await;
        let missing = app.get(&format!("{path}/{unknown}")).bearer_auth(&stranger.key).send().await.unwrap();
        let missing = expect_problem(missing, StatusCode::NOT_FOUND).await;
        assert_eq!(foreign["title"], missing["title"], "{what}: indistinguishable from an unknown id");
    }
    let cancel = app.delete(&format!("/v1/messages/{id}")).bearer_auth(&stranger.key).send().await.unwrap();
    expect_problem(cancel, StatusCode::NOT_FOUND).await;
    let still = app.get(&format!("/v1/messages/{id}")).bearer_auth(&owner.key).send().await.unwrap();
    assert_eq!(expect(still, StatusCode::OK).await["status"], "accepted", "the stranger's cancel changed nothing");

    for query in ["", &format!("?batch_id={batch_id}"), "?to=%2B447400123456", "?status=accepted"] {
        let listed = app.get(&format!("/v1/messages{query}")).bearer_auth(&stranger.key).send().await.unwrap();
        assert_eq!(expect(listed, StatusCode::OK).await["data"], json!([]), "list{query}");
    }
    let balance = expect(app.get("/v1/balance").bearer_auth(&stranger.key).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(balance["account_id"], stranger.id.as_str());
}

async fn resellers_act_only_for_their_sub_accounts(app: TestApp) {
    let reseller = app.customer(json!({ "name": "Reseller" })).await;
    let child = app.account(json!({ "name": "Child", "parent_id": reseller.id })).await;
    let child_id = child["id"].as_str().unwrap().to_owned();
    let child_key = app.key(&child_id).await;
    let other = app.customer(json!({})).await;

    let as_child = app
        .post("/v1/messages")
        .bearer_auth(&reseller.key)
        .header("Tern-On-Behalf-Of", &child_id)
        .json(&json!({ "to": "+447400123456", "from": "Acme", "body": "for the child" }))
        .send()
        .await
        .unwrap();
    let id = expect(as_child, StatusCode::ACCEPTED).await["id"].as_str().unwrap().to_owned();
    assert_eq!(app.message_count(&child_id).await, 1, "the message is the child's");
    assert_eq!(app.message_count(&reseller.id).await, 0);
    let by_child = app.get(&format!("/v1/messages/{id}")).bearer_auth(&child_key).send().await.unwrap();
    expect(by_child, StatusCode::OK).await;
    let reseller_own = app.get(&format!("/v1/messages/{id}")).bearer_auth(&reseller.key).send().await.unwrap();
    expect_problem(reseller_own, StatusCode::NOT_FOUND).await;
    let for_child =
        app.get(&format!("/v1/messages/{id}")).bearer_auth(&reseller.key).header("Tern-On-Behalf-Of", &child_id);
    expect(for_child.send().await.unwrap(), StatusCode::OK).await;

    let not_theirs = app.get("/v1/balance").bearer_auth(&reseller.key).header("Tern-On-Behalf-Of", &other.id);
    expect_problem(not_theirs.send().await.unwrap(), StatusCode::FORBIDDEN).await;
    let upward = app.get("/v1/balance").bearer_auth(&child_key).header("Tern-On-Behalf-Of", &reseller.id);
    expect_problem(upward.send().await.unwrap(), StatusCode::FORBIDDEN).await;
    let sideways = app.get("/v1/balance").bearer_auth(&other.key).header("Tern-On-Behalf-Of", &child_id);
    expect_problem(sideways.send().await.unwrap(), StatusCode::FORBIDDEN).await;
}
