//! Bad input: each case gets a specific RFC 7807 problem (status, detail,
//! field where one is at fault) and writes nothing.

use chrono::{TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_suite;
use crate::helpers::{ADMIN_TOKEN, TestApp, expect, expect_problem};

api_suite!(every_bad_input_gets_a_specific_problem_and_changes_nothing);

enum Body {
    Json(Value),
    Raw(&'static str, String),
    None,
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    auth: Option<String>,
    body: Body,
    status: StatusCode,
    field: Option<&'static str>,
    detail: &'static str,
}

fn send(changes: Value) -> Value {
    let mut body = json!({ "to": "+447400123456", "from": "Acme", "body": "hello" });
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    body
}

async fn every_bad_input_gets_a_specific_problem_and_changes_nothing(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let revoked = app.customer(json!({})).await;
    let key_id = app.store.accounts().list_keys(revoked.id.parse().unwrap()).await.unwrap()[0].id.clone();
    let revoke =
        app.admin(app.delete(&format!("/admin/v1/accounts/{}/keys/{key_id}", revoked.id))).send().await.unwrap();
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    let suspended = app.customer(json!({})).await;
    expect(
        app.admin(app.post(&format!("/admin/v1/accounts/{}/suspend", suspended.id))).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;

    let key = Some(customer.key.clone());
    let past = (Utc::now() - TimeDelta::hours(1)).to_rfc3339();
    let later = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
    let too_many: Vec<Value> = (0..100_001).map(|_| json!({ "to": "+447400123456" })).collect();
    let msg = |name, changes: Value, field, detail| Case {
        name,
        method: "POST",
        path: "/v1/messages".into(),
        auth: key.clone(),
        body: Body::Json(send(changes)),
        status: StatusCode::UNPROCESSABLE_ENTITY,
        field,
        detail,
    };
    let batch = |name, body: Value, status, field, detail| Case {
        name,
        method: "POST",
        path: "/v1/batches".into(),
        auth: key.clone(),
        body: Body::Json(body),
        status,
        field,
        detail,
    };
    let csv = |name, query: &str, csv: &str, status, detail| Case {
        name,
        method: "POST",
        path: format!("/v1/batches?from=Acme&body=Hi{query}"),
        auth: key.clone(),
        body: Body::Raw("text/csv", csv.to_owned()),
        status,
        field: None,
        detail,
    };
    let raw = |name, content_type, body: &str, status, detail| Case {
        name,
        method: "POST",
        path: "/v1/messages".into(),
        auth: key.clone(),
        body: Body::Raw(content_type, body.to_owned()),
        status,
        field: None,
        detail,
    };
    let get = |name, path: &str, status, field, detail| Case {
        name,
        method: "GET",
        path: path.into(),
        auth: key.clone(),
        body: Body::None,
        status,
        field,
        detail,
    };
    let admin = |name, method, path: String, body: Value, field, detail| Case {
        name,
        method,
        path,
        auth: Some(ADMIN_TOKEN.to_owned()),
        body: Body::Json(body),
        status: StatusCode::UNPROCESSABLE_ENTITY,
        field,
        detail,
    };
    let account_path = format!("/admin/v1/accounts/{}", customer.id);
    let route =
        |filters: Value| json!({ "routes": [{ "name": "r", "filters": filters, "action": { "connector": "c1" } }] });
    let cases = vec![
        msg("letters in the number", json!({ "to": "+44abc" }), Some("to"), "number"),
        msg("a number too short", json!({ "to": "+44123" }), Some("to"), ""),
        msg("no plus, no country", json!({ "to": "07400123456" }), Some("to"), ""),
        msg("missing to", json!({ "to": null }), Some("to"), "missing field"),
        msg("sender too long", json!({ "from": "ABCDEFGHIJKLMN" }), Some("from"), ""),
        msg("numeric sender too long", json!({ "from": "1234567890123456" }), Some("from"), ""),
        msg("sender with emoji", json!({ "from": "Acme😀" }), Some("from"), ""),
        msg("empty body", json!({ "body": "" }), Some("body"), "empty"),
        msg("body over the segment limit", json!({ "body": "x".repeat(1600) }), Some("body"), "segments"),
        msg("body of wrong type", json!({ "body": 42 }), Some("body"), "string"),
        msg("send_at not a date", json!({ "send_at": "tomorrow" }), Some("send_at"), "RFC 3339"),
        msg("send_at in the past", json!({ "send_at": past }), Some("send_at"), "past"),
        msg("send_at too far ahead", json!({ "send_at": "2999-01-01T00:00:00Z" }), Some("send_at"), "ahead"),
        msg("validity too short", json!({ "validity": 5 }), Some("validity"), "between"),
        msg("validity negative", json!({ "validity": -5 }), Some("validity"), ""),
        msg("validity and expires_at", json!({ "validity": 600, "expires_at": later }), Some("validity"), "either"),
        msg("expires_at in the past", json!({ "expires_at": past }), Some("expires_at"), "after"),
        msg("callback not a URL", json!({ "callback_url": "not a url" }), Some("callback_url"), "URL"),
        msg("callback not http", json!({ "callback_url": "ftp://example.com/x" }), Some("callback_url"), "http"),
        msg("priority out of range", json!({ "priority": 12 }), Some("priority"), "between"),
        msg("client_ref too long", json!({ "client_ref": "r".repeat(200) }), Some("client_ref"), "128"),
        Case {
            field: Some("colour"),
            ..raw(
                "unknown field",
                "application/json",
                r#"{"to":"+447400123456","from":"Acme","body":"x","colour":"red"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown field",
            )
        },
        raw("empty body", "application/json", "", StatusCode::BAD_REQUEST, "empty"),
        raw("malformed JSON", "application/json", r#"{"to": "+4474"#, StatusCode::BAD_REQUEST, "JSON"),
        raw("JSON that is not an object", "application/json", "[1,2]", StatusCode::BAD_REQUEST, ""),
        raw(
            "trailing garbage",
            "application/json",
            r#"{"to":"+447400123456","from":"Acme","body":"x"} x"#,
            StatusCode::BAD_REQUEST,
            "after",
        ),
        raw("wrong content type", "text/plain", "hello", StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json"),
        raw(
            "oversized body",
            "application/json",
            &format!(r#"{{"body":"{}"}}"#, "x".repeat(70_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
        Case { auth: None, status: StatusCode::UNAUTHORIZED, ..msg("missing key", json!({}), None, "Authorization") },
        Case { status: StatusCode::UNAUTHORIZED, ..msg("malformed key", json!({}), None, "not valid") }
            .with_auth("tern_nope"),
        Case { status: StatusCode::UNAUTHORIZED, ..msg("revoked key", json!({}), None, "revoked") }
            .with_auth(&revoked.key),
        Case { status: StatusCode::FORBIDDEN, ..msg("suspended account", json!({}), None, "suspended") }
            .with_auth(&suspended.key),
        batch(
            "too many recipients",
            json!({ "from": "Acme", "body": "x", "recipients": too_many }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("recipients"),
            "at most",
        ),
        batch(
            "no recipients",
            json!({ "from": "Acme", "body": "x", "recipients": [] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("recipients"),
            "no recipients",
        ),
        batch(
            "unclosed placeholder",
            json!({ "from": "Acme", "body": "Hi {name", "recipients": [{ "to": "+447400123456" }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("body"),
            "not closed",
        ),
        batch(
            "every row invalid",
            json!({ "from": "Acme", "body": "x", "recipients": [{ "to": "nope" }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            "invalid",
        ),
        batch(
            "bad recipient field",
            json!({ "from": "Acme", "body": "x", "recipients": [{ "to": "+447400123456", "vars": {} }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("recipients[0].vars"),
            "unknown field",
        ),
        csv("CSV without a to column", "", "phone,name\n+447400123456,Ann\n", StatusCode::BAD_REQUEST, "`to`"),
        csv(
            "CSV with a ragged row",
            "&all_or_nothing=true",
            "to,name\n+447400123456,Ann,extra\n",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        csv(
            "CSV options with an unknown parameter",
            "&colour=red",
            "to\n+447400123456\n",
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        Case {
            body: Body::Raw("application/xml", "<x/>".into()),
            ..batch("batch as XML", json!({}), StatusCode::UNSUPPORTED_MEDIA_TYPE, None, "text/csv")
        },
        get(
            "unknown status filter",
            "/v1/messages?status=lost",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("status"),
            "not a status",
        ),
        get("bad since", "/v1/messages?since=yesterday", StatusCode::UNPROCESSABLE_ENTITY, Some("since"), "RFC 3339"),
        get("limit too large", "/v1/messages?limit=5000", StatusCode::UNPROCESSABLE_ENTITY, Some("limit"), "between"),
        get("bad cursor", "/v1/messages?cursor=abc", StatusCode::UNPROCESSABLE_ENTITY, Some("cursor"), "cursor"),
        get("unknown query parameter", "/v1/messages?colour=red", StatusCode::BAD_REQUEST, None, "colour"),
        get("bad on-behalf-of", "/v1/balance", StatusCode::UNPROCESSABLE_ENTITY, Some("Tern-On-Behalf-Of"), "UUID"),
        get(
            "inbound limit too large",
            "/v1/inbound?limit=5000",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("limit"),
            "between",
        ),
        get("bad inbound cursor", "/v1/inbound?cursor=abc", StatusCode::UNPROCESSABLE_ENTITY, Some("cursor"), "cursor"),
        get("unknown inbound parameter", "/v1/inbound?status=new", StatusCode::BAD_REQUEST, None, "status"),
        admin(
            "account with an inbound URL that is not http",
            "POST",
            "/admin/v1/accounts".into(),
            json!({ "name": "x", "inbound_url": "ftp://acme.example/in" }),
            Some("inbound_url"),
            "http",
        ),
        admin(
            "account with no messages per second",
            "POST",
            "/admin/v1/accounts".into(),
            json!({ "name": "x", "messages_per_second": 0 }),
            Some("messages_per_second"),
            "at least 1",
        ),
        admin(
            "PATCH with an inbound URL that is not a URL",
            "PATCH",
            account_path.clone(),
            json!({ "inbound_url": "acme" }),
            Some("inbound_url"),
            "URL",
        ),
        admin(
            "PATCH a negative credit limit",
            "PATCH",
            account_path.clone(),
            json!({ "credit_limit": -10 }),
            Some("credit_limit"),
            "negative",
        ),
        admin(
            "PATCH removing the credit limit",
            "PATCH",
            account_path.clone(),
            json!({ "credit_limit": null }),
            Some("credit_limit"),
            "null",
        ),
        admin(
            "PATCH a field that cannot change",
            "PATCH",
            account_path.clone(),
            json!({ "currency": "USD" }),
            Some("currency"),
            "unknown field",
        ),
        admin(
            "routing table with a bad country",
            "PUT",
            "/admin/v1/routing".into(),
            route(json!({ "countries": ["UK1"] })),
            Some("routes[0].filters.countries"),
            "ISO",
        ),
        admin(
            "routing table with a bad sender pattern",
            "PUT",
            "/admin/v1/routing".into(),
            route(json!({ "senders": ["[a-"] })),
            Some("routes[0].filters.senders"),
            "sender pattern",
        ),
        admin(
            "routing table with an unknown action",
            "PUT",
            "/admin/v1/routing".into(),
            json!({ "routes": [], "default": { "random": ["c1"] } }),
            Some("default"),
            "random",
        ),
    ];
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let head = app.store.journal().head().await.unwrap();
    for case in cases {
        let url = case.path.clone();
        let mut request = match case.method {
            "GET" => app.get(&url),
            "PATCH" => app.patch(&url),
            "PUT" => app.put(&url),
            _ => app.post(&url),
        };
        if let Some(key) = &case.auth {
            request = request.bearer_auth(key);
        }
        if case.name == "bad on-behalf-of" {
            request = request.header("Tern-On-Behalf-Of", "not-an-id");
        }
        request = match case.body {
            Body::Json(v) => request.json(&v),
            Body::Raw(content_type, body) => request.header("content-type", content_type).body(body),
            Body::None => request,
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        assert_eq!(status, case.status, "{}: {}", case.name, response.text().await.unwrap());
        let problem = expect_problem(response, case.status).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(case.detail), "{}: detail {detail:?} should mention {:?}", case.name, case.detail);
        if let Some(field) = case.field {
            assert_eq!(problem["field"], field, "{}: {problem}", case.name);
        }
    }
    assert_eq!(app.store.journal().head().await.unwrap(), head, "no bad request wrote an event");
    assert_eq!(app.message_count(&customer.id).await, 0);
    let account = app.store.accounts().account(customer.id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!((account.credit_limit, account.inbound_url), (0, None), "no refused PATCH changed the account");
    let routing = app.store.coordination().setting(tern_handlers::routing::ROUTING_SETTING).await.unwrap();
    assert_eq!(routing, None, "no refused routing table was stored");
    let accounts = app.store.accounts().list_accounts(None, None, 100).await.unwrap();
    assert_eq!(accounts.len(), 3, "no refused account was created");
}

impl Case {
    fn with_auth(mut self, key: &str) -> Self {
        self.auth = Some(key.to_owned());
        self
    }
}
