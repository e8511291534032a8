//! Bulk sends: JSON and CSV, invalid rows, all-or-nothing, progress.

use reqwest::StatusCode;
use serde_json::json;
use tern_core::{EventKind, MessageStatus};

use crate::api_suite;
use crate::helpers::{Backend, TestApp, expect, expect_problem, spawn_app};

api_suite!(json_batches_report_invalid_rows_and_accept_the_rest, csv_batches_and_all_or_nothing);

async fn json_batches_report_invalid_rows_and_accept_the_rest(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let batch = json!({
        "from": "Acme",
        "body": "Hi {name}, your code is {code}",
        "recipients": [
            { "to": "+447400123456", "variables": { "name": "Ann", "code": "1" } },
            { "to": "not-a-number", "variables": { "name": "Bob", "code": "2" } },
            { "to": "+447400123457", "variables": { "name": "Cy" } },
            { "to": "+447400123458", "variables": { "name": "Di", "code": "4" }, "client_ref": "di" },
        ],
    });
    let response = app.post("/v1/batches").bearer_auth(&customer.key).json(&batch).send().await.unwrap();
    let accepted = expect(response, StatusCode::ACCEPTED).await;
    assert_eq!(
        (accepted["recipients"].as_u64(), accepted["accepted"].as_u64(), accepted["invalid"].as_u64()),
        (Some(4), Some(2), Some(2))
    );
    assert_eq!(accepted["errors"][0]["row"], 2);
    assert_eq!(accepted["errors"][0]["field"], "to");
    assert_eq!(
        accepted["errors"][1],
        json!({ "row": 3, "field": "variables.code", "reason": accepted["errors"][1]["reason"] })
    );
    let batch_id = accepted["batch_id"].as_str().unwrap();

    let listed = app.get(&format!("/v1/messages?batch_id={batch_id}")).bearer_auth(&customer.key).send().await.unwrap();
    let listed = expect(listed, StatusCode::OK).await;
    let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    let mut rendered = Vec::new();
    for id in &ids {
        let events = app.store.journal().message_events(id.parse().unwrap()).await.unwrap();
        let EventKind::Accepted { body, client_ref, .. } = &events[0].kind else { panic!("{events:?}") };
        rendered.push((body.clone(), client_ref.clone()));
    }
    rendered.sort();
    assert_eq!(
        rendered,
        [("Hi Ann, your code is 1".to_owned(), None), ("Hi Di, your code is 4".to_owned(), Some("di".to_owned()))]
    );

    let status = app.get(&format!("/v1/batches/{batch_id}")).bearer_auth(&customer.key).send().await.unwrap();
    let status = expect(status, StatusCode::OK).await;
    assert_eq!(status["statuses"], json!({ "accepted": 2 }));
    let cancel = app.delete(&format!("/v1/messages/{}", ids[0])).bearer_auth(&customer.key).send().await.unwrap();
    expect(cancel, StatusCode::OK).await;
    let status = app.get(&format!("/v1/batches/{batch_id}")).bearer_auth(&customer.key).send().await.unwrap();
    assert_eq!(
        expect(status, StatusCode::OK).await["statuses"],
        json!({ "accepted": 1, "cancelled": 1 }),
        "progress shows"
    );
}

async fn csv_batches_and_all_or_nothing(app: TestApp) {
    let customer = app.customer(json!({})).await;
    let csv = "to,name,client_ref\n+447400123456,Ann,a\n+447400123457,Bob,\n";
    let upload = |csv: &'static str, query: &str| {
        app.post(&format!("/v1/batches?from=Acme&body=Hello%20%7Bname%7D{query}"))
            .bearer_auth(&customer.key)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
    };
    let accepted = expect(upload(csv, "").await.unwrap(), StatusCode::ACCEPTED).await;
    assert_eq!(accepted["accepted"], 2);
    assert_eq!(app.message_count(&customer.id).await, 2);

    let with_bad_row = "to,name\n+447400123456,Ann\n12,Bob\n";
    let refused = upload(with_bad_row, "&all_or_nothing=true").await.unwrap();
    let problem = expect_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["row"], 2);
    assert_eq!(problem["errors"][0]["field"], "to");
    assert_eq!(app.message_count(&customer.id).await, 2, "nothing written");
    let partial = expect(upload(with_bad_row, "").await.unwrap(), StatusCode::ACCEPTED).await;
    assert_eq!((partial["accepted"].as_u64(), partial["invalid"].as_u64()), (Some(1), Some(1)));
}

/// 100,000 recipients in one CSV request (SQLite: the stand-in would take
/// minutes for what this shows once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_100_000_recipients_is_accepted_in_one_request() {
    let app = spawn_app(Backend::Sqlite).await;
    let customer = app.customer(json!({ "messages_per_second": 1_000_000 })).await;
    let mut csv = String::from("to,n\n");
    for i in 0..100_000 {
        csv.push_str(&format!("+4474{i:08},{i}\n"));
    }
    let response = app
        .post("/v1/batches?from=Acme&body=Number%20%7Bn%7D")
        .bearer_auth(&customer.key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let accepted = expect(response, StatusCode::ACCEPTED).await;
    assert_eq!((accepted["accepted"].as_u64(), accepted["invalid"].as_u64()), (Some(100_000), Some(0)));
    let batch = accepted["batch_id"].as_str().unwrap().parse().unwrap();
    let counts = app.store.messages().batch_counts(batch).await.unwrap();
    assert_eq!(counts, [(MessageStatus::Accepted, 100_000)]);
    assert_eq!(app.store.queue().depth("mt").await.unwrap().ready, 100_000);
}
