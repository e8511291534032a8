//! Health, readiness, metrics, the OpenAPI document, rate limits.

use reqwest::StatusCode;
use serde_json::json;

use crate::api_suite;
use crate::helpers::{TestApp, expect, expect_problem};

api_suite!(health_readiness_metrics_and_openapi, rate_limits_answer_429_with_retry_after);

async fn health_readiness_metrics_and_openapi(app: TestApp) {
    expect(app.get("/healthz").send().await.unwrap(), StatusCode::OK).await;
    let ready = expect(app.get("/readyz").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(ready["status"], "ready");
    let customer = app.customer(json!({})).await;
    let sent = app.send(&customer.key, json!({ "to": "+447400123456", "from": "Acme", "body": "hi" })).await;
    expect(sent, StatusCode::ACCEPTED).await;
    let metrics = app.get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tern_http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/v1/messages\""), "{metrics}");
    assert!(metrics.contains("status=\"202\""), "{metrics}");
    assert!(metrics.contains("tern_http_request_duration_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("tern_messages_accepted_total"), "{metrics}");

    let doc = expect(app.get("/openapi.json").send().await.unwrap(), StatusCode::OK).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    for path in [
        "/v1/messages",
        "/v1/messages/{id}",
        "/v1/batches",
        "/v1/batches/{id}",
        "/v1/balance",
        "/v1/inbound",
        "/admin/v1/accounts",
        "/admin/v1/routing",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    assert!(doc["paths"]["/admin/v1/accounts/{id}"].get("patch").is_some(), "PATCH account missing");
    assert!(doc["paths"]["/admin/v1/routing"].get("put").is_some(), "PUT routing missing");
    for schema in ["SendMessage", "UpdateAccount", "InboundMessage", "RoutingView"] {
        assert!(doc["components"]["schemas"].get(schema).is_some(), "{schema} missing from the OpenAPI document");
    }
    let unknown = app.get("/v2/nothing").send().await.unwrap();
    expect_problem(unknown, StatusCode::NOT_FOUND).await;
}

async fn rate_limits_answer_429_with_retry_after(app: TestApp) {
    let customer = app.customer(json!({ "requests_per_second": 2, "messages_per_second": 1000 })).await;
    for _ in 0..2 {
        expect(app.get("/v1/messages").bearer_auth(&customer.key).send().await.unwrap(), StatusCode::OK).await;
    }
    let limited = app.get("/v1/messages").bearer_auth(&customer.key).send().await.unwrap();
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    expect_problem(limited, StatusCode::TOO_MANY_REQUESTS).await;

    let slow = app.customer(json!({ "requests_per_second": 100, "messages_per_second": 3 })).await;
    let recipients: Vec<_> = (0..5).map(|i| json!({ "to": format!("+4474001234{i:02}") })).collect();
    let batch = json!({ "from": "Acme", "body": "hi", "recipients": recipients });
    let first = app.post("/v1/batches").bearer_auth(&slow.key).json(&batch).send().await.unwrap();
    expect(first, StatusCode::ACCEPTED).await;
    let second = app.post("/v1/batches").bearer_auth(&slow.key).json(&batch).send().await.unwrap();
    assert!(second.headers().contains_key("retry-after"));
    let problem = expect_problem(second, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(problem["detail"].as_str().unwrap().contains("messages per second"), "{problem}");
    assert_eq!(app.message_count(&slow.id).await, 5, "the refused batch wrote nothing");
}
