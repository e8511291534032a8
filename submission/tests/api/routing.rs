//! The routing table admin API: `GET` and `PUT /admin/v1/routing`.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tern_handlers::routing::{ROUTING_SETTING, RoutingTable};

use crate::api_suite;
use crate::helpers::{TestApp, expect, expect_problem};

api_suite!(
    a_routing_table_round_trips_with_increasing_versions,
    invalid_routing_tables_are_refused_and_nothing_is_stored
);

impl TestApp {
    async fn put_routing(&self, table: &Value) -> reqwest::Response {
        self.admin(self.put("/admin/v1/routing")).json(table).send().await.unwrap()
    }

    async fn routing(&self) -> Value {
        expect(self.admin(self.get("/admin/v1/routing")).send().await.unwrap(), StatusCode::OK).await
    }
}

/// A table using every filter and every kind of action.
fn full_table(account: &str, reseller: &str) -> Value {
    json!({
        "routes": [
            {
                "name": "uk-otp",
                "filters": {
                    "countries": ["GB"],
                    "senders": ["[0-9]{4,6}", "OTP.*"],
                    "encodings": ["gsm7"],
                    "window": { "from": "08:00", "to": "20:00", "days": ["mon", "fri"], "utc_offset_minutes": 60 }
                },
                "action": { "failover": ["c1", "c2"] }
            },
            {
                "name": "reseller-mobiles",
                "filters": { "resellers": [reseller], "prefixes": ["4477", "4478"] },
                "action": { "weighted": { "c1": 3, "c2": 1 } }
            },
            { "name": "vip", "filters": { "accounts": [account] }, "action": { "connector": "c2" } }
        ],
        "default": { "connector": "c1" }
    })
}

async fn a_routing_table_round_trips_with_increasing_versions(app: TestApp) {
    let none = app.routing().await;
    assert_eq!((none["version"].as_i64(), &none["table"]), (Some(0), &Value::Null), "{none}");

    let (account, reseller) = (uuid::Uuid::now_v7().to_string(), uuid::Uuid::now_v7().to_string());
    let table = full_table(&account, &reseller);
    let stored = expect(app.put_routing(&table).await, StatusCode::OK).await;
    assert_eq!(stored["version"], 1, "{stored}");
    assert_eq!(stored["table"], table);
    let got = app.routing().await;
    assert_eq!((got["version"].as_i64(), &got["table"]), (Some(1), &table), "{got}");
    assert!(got["updated_at"].is_string(), "{got}");

    // What the workers read: the setting, as a table that compiles.
    let setting = app.store.coordination().setting(ROUTING_SETTING).await.unwrap().unwrap();
    assert_eq!(setting.version, 1);
    let parsed: RoutingTable = serde_json::from_str(&setting.value).unwrap();
    parsed.compile().unwrap();
    assert_eq!(serde_json::to_value(&parsed).unwrap(), table);

    // Omitted defaults come back spelled out the one way (no empty filters,
    // the UTC offset of a window always present).
    let small = json!({ "routes": [{ "name": "all", "filters": { "countries": [], "window": { "from": "22:00", "to": "06:00" } }, "action": { "connector": "night" } }] });
    let second = expect(app.put_routing(&small).await, StatusCode::OK).await;
    assert_eq!(second["version"], 2);
    let normalised = json!({ "routes": [{ "name": "all", "filters": { "window": { "from": "22:00", "to": "06:00", "utc_offset_minutes": 0 } }, "action": { "connector": "night" } }] });
    assert_eq!(app.routing().await["table"], normalised);

    let empty = expect(app.put_routing(&json!({})).await, StatusCode::OK).await;
    assert_eq!((empty["version"].as_i64(), &empty["table"]), (Some(3), &json!({ "routes": [] })), "{empty}");
    assert_eq!(app.routing().await["version"], 3);
}

async fn invalid_routing_tables_are_refused_and_nothing_is_stored(app: TestApp) {
    let good =
        json!({ "routes": [{ "name": "uk", "filters": { "countries": ["GB"] }, "action": { "connector": "c1" } }] });
    expect(app.put_routing(&good).await, StatusCode::OK).await;
    let route = |filters: Value, action: Value| json!({ "name": "r", "filters": filters, "action": action });
    let c1 = json!({ "connector": "c1" });
    let cases = [
        (
            json!({ "routes": [route(json!({ "countries": ["gbr"] }), c1.clone())] }),
            "routes[0].filters.countries",
            "country",
        ),
        (
            json!({ "routes": [route(json!({ "prefixes": ["+44"] }), c1.clone())] }),
            "routes[0].filters.prefixes",
            "prefix",
        ),
        (
            json!({ "routes": [route(json!({ "senders": ["(unclosed"] }), c1.clone())] }),
            "routes[0].filters.senders",
            "sender",
        ),
        (
            json!({ "routes": [route(json!({ "window": { "from": "8am", "to": "20:00" } }), c1.clone())] }),
            "routes[0].filters.window",
            "HH:MM",
        ),
        (
            json!({ "routes": [route(json!({ "window": { "from": "08:00", "to": "20:00", "days": ["someday"] } }), c1.clone())] }),
            "routes[0].filters.window",
            "day",
        ),
        (json!({ "routes": [route(json!({}), json!({ "failover": [] }))] }), "routes[0].action", "no connector"),
        (
            json!({ "routes": [route(json!({}), json!({ "connector": "no spaces" }))] }),
            "routes[0].action",
            "connector name",
        ),
        (json!({ "routes": [good["routes"][0], good["routes"][0]] }), "routes[1].name", "two routes"),
        (json!({ "routes": [{ "name": "default", "action": c1 }] }), "routes[0].name", "default"),
        (json!({ "routes": [], "default": { "weighted": { "c1": 0, "c2": 0 } } }), "default", "zero"),
        (
            json!({ "routes": [route(json!({ "colour": ["red"] }), c1.clone())] }),
            "routes[0].filters.colour",
            "unknown field",
        ),
        (json!({ "routes": [route(json!({}), json!({ "round_robin": ["c1"] }))] }), "routes[0].action", "round_robin"),
        (
            json!({ "routes": [route(json!({ "accounts": ["acme"] }), c1.clone())] }),
            "routes[0].filters.accounts[0]",
            "",
        ),
        (
            json!({ "routes": [route(json!({ "encodings": ["ascii"] }), c1.clone())] }),
            "routes[0].filters.encodings[0]",
            "",
        ),
        (json!({ "routes": [{ "filters": {}, "action": c1 }] }), "routes[0].name", "missing field"),
        (json!({ "routes": "all" }), "routes", ""),
        (json!({ "routes": [], "fallback": c1 }), "fallback", "unknown field"),
    ];
    for (table, field, detail) in cases {
        let problem = expect_problem(app.put_routing(&table).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["field"], field, "{table}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(detail), "{table}: {problem}");
    }
    let got = app.routing().await;
    assert_eq!((got["version"].as_i64(), &got["table"]), (Some(1), &good), "nothing stored: {got}");

    let not_json = app.admin(app.put("/admin/v1/routing")).header("content-type", "text/plain").body("routes");
    expect_problem(not_json.send().await.unwrap(), StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let customer = app.customer(json!({})).await;
    let as_customer = app.put("/admin/v1/routing").bearer_auth(&customer.key).json(&json!({}));
    expect_problem(as_customer.send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    let read_by_customer = app.get("/admin/v1/routing").bearer_auth(&customer.key);
    expect_problem(read_by_customer.send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    let anonymous = app.put("/admin/v1/routing").json(&json!({})).send().await.unwrap();
    expect_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.routing().await["version"], 1);
}
