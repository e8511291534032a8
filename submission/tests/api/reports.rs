//! `GET /v1/reports/summary`: each grouping, tenant isolation (resellers
//! through `Tern-On-Behalf-Of` only), bad parameters, and the 503 of a
//! server without a reporting database. The journal is projected in the
//! test, as `tern projector` would. Run on both journal backends with a
//! SQLite reporting store, and on SQLite with PostgreSQL reports.

use chrono::{TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tern_reporting::Projector;

use crate::helpers::{Backend, TestApp, expect, expect_problem, spawn_app};

macro_rules! reports_suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let reports = tern_reporting::test_suite::sqlite_reports().await;
                    super::$test($crate::helpers::spawn_with_reports($crate::helpers::Backend::Sqlite, reports).await).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let reports = tern_reporting::test_suite::sqlite_reports().await;
                    super::$test($crate::helpers::spawn_with_reports($crate::helpers::Backend::Mongodb, reports).await).await;
                }
            )*
        }
        mod postgres_reports {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let reports = tern_reporting::test_suite::postgres_reports().await;
                    super::$test($crate::helpers::spawn_with_reports($crate::helpers::Backend::Sqlite, reports).await).await;
                }
            )*
        }
    };
}

reports_suite!(
    each_grouping_counts_the_callers_messages_only,
    a_reseller_sees_a_sub_accounts_summary_only_on_its_behalf,
    bad_parameters_get_problem_documents,
);

async fn project(app: &TestApp) {
    let reports = app.reports.clone().expect("the app has a reporting store");
    Projector::new(app.store.journal().clone(), reports, 1_000).catch_up().await.unwrap();
}

async fn send(app: &TestApp, key: &str, to: &str) {
    let response = app.send(key, json!({ "to": to, "from": "Acme", "body": "Hello there" })).await;
    expect(response, StatusCode::ACCEPTED).await;
}

async fn summary(app: &TestApp, key: &str, query: &str, on_behalf_of: Option<&str>) -> reqwest::Response {
    let mut request = app.get(&format!("/v1/reports/summary{query}")).bearer_auth(key);
    if let Some(account) = on_behalf_of {
        request = request.header("Tern-On-Behalf-Of", account);
    }
    request.send().await.unwrap()
}

fn groups(summary: &Value) -> Vec<(String, i64)> {
    summary["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["key"].as_str().unwrap().to_owned(), g["messages"].as_i64().unwrap()))
        .collect()
}

async fn each_grouping_counts_the_callers_messages_only(app: TestApp) {
    let mine = app.customer(json!({})).await;
    let theirs = app.customer(json!({})).await;
    for to in ["+447400123401", "+447400123402", "+447400123403", "+33612345678", "+33612345679"] {
        send(&app, &mine.key, to).await;
    }
    for to in ["+447400123404", "+447400123405"] {
        send(&app, &theirs.key, to).await;
    }
    project(&app).await;
    let today = Utc::now().date_naive().to_string();

    let by_day = expect(summary(&app, &mine.key, "", None).await, StatusCode::OK).await;
    assert_eq!(groups(&by_day), vec![(today.clone(), 5)], "{by_day}");
    assert_eq!(by_day["group_by"], "day");
    assert_eq!(by_day["account_id"], mine.id.as_str());
    assert_eq!(by_day["total"]["messages"], 5);
    assert_eq!(by_day["total"]["segments"], 5);
    assert_eq!(by_day["currency"], "EUR");

    let by_country = expect(summary(&app, &mine.key, "?group_by=country", None).await, StatusCode::OK).await;
    assert_eq!(groups(&by_country), vec![("FR".to_owned(), 2), ("GB".to_owned(), 3)], "{by_country}");
    let by_status = expect(summary(&app, &mine.key, "?group_by=status", None).await, StatusCode::OK).await;
    assert_eq!(groups(&by_status), vec![("accepted".to_owned(), 5)], "{by_status}");

    let other = expect(summary(&app, &theirs.key, "?group_by=country", None).await, StatusCode::OK).await;
    assert_eq!(groups(&other), vec![("GB".to_owned(), 2)], "{other}");

    let yesterday = (Utc::now() - TimeDelta::days(1)).date_naive();
    let query = format!("?from={}&to={yesterday}", yesterday - TimeDelta::days(10));
    let before = expect(summary(&app, &mine.key, &query, None).await, StatusCode::OK).await;
    assert_eq!(before["data"], json!([]), "{before}");
    assert_eq!(before["total"]["messages"], 0);
    let query = format!("?from={today}&to={today}&group_by=day");
    let only_today = expect(summary(&app, &mine.key, &query, None).await, StatusCode::OK).await;
    assert_eq!(only_today["total"]["messages"], 5);
}

async fn a_reseller_sees_a_sub_accounts_summary_only_on_its_behalf(app: TestApp) {
    let reseller = app.customer(json!({})).await;
    let child = app.account(json!({ "name": "Child", "parent_id": reseller.id, "price_plan": { "default": 5 } })).await;
    let child_id = child["id"].as_str().unwrap().to_owned();
    let child_key = app.key(&child_id).await;
    let stranger = app.customer(json!({})).await;
    send(&app, &child_key, "+447400123411").await;
    send(&app, &child_key, "+447400123412").await;
    send(&app, &reseller.key, "+447400123413").await;
    send(&app, &stranger.key, "+447400123414").await;
    project(&app).await;

    let own = expect(summary(&app, &reseller.key, "", None).await, StatusCode::OK).await;
    assert_eq!(own["total"]["messages"], 1, "a reseller's own summary has its own messages only: {own}");
    let for_child = expect(summary(&app, &reseller.key, "", Some(&child_id)).await, StatusCode::OK).await;
    assert_eq!(for_child["total"]["messages"], 2, "{for_child}");
    assert_eq!(for_child["account_id"], child_id.as_str());
    expect_problem(summary(&app, &reseller.key, "", Some(&stranger.id)).await, StatusCode::FORBIDDEN).await;
    expect_problem(summary(&app, &child_key, "", Some(&reseller.id)).await, StatusCode::FORBIDDEN).await;
    expect_problem(summary(&app, &stranger.key, "", Some(&child_id)).await, StatusCode::FORBIDDEN).await;
}

async fn bad_parameters_get_problem_documents(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let invalid = |query: &'static str, field: &'static str| {
        let app = &app;
        let key = customer.key.clone();
        async move {
            let problem = expect_problem(summary(app, &key, query, None).await, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(problem["field"], field, "{query}: {problem}");
        }
    };
    invalid("?from=2026-02-30", "from").await;
    invalid("?to=01/12/2026", "to").await;
    invalid("?from=2026-03-02&to=2026-03-01", "from").await;
    invalid("?from=2025-01-01&to=2026-03-01", "to").await;
    invalid("?group_by=week", "group_by").await;
    expect_problem(summary(&app, &customer.key, "?granularity=day", None).await, StatusCode::BAD_REQUEST).await;
    let anonymous = app.get("/v1/reports/summary").send().await.unwrap();
    expect_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    let widest =
        expect(summary(&app, &customer.key, "?from=2025-03-02&to=2026-03-02", None).await, StatusCode::OK).await;
    assert_eq!(widest["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reporting_database_the_summary_answers_503() {
    let app = spawn_app(Backend::Sqlite).await;
    let customer = app.customer(json!({})).await;
    let problem = expect_problem(summary(&app, &customer.key, "", None).await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(problem["type"].as_str().unwrap().ends_with("/not-configured"), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("reporting database"), "{problem}");
}
