//! The suite's tests; each gets a fresh journal and a factory of fresh
//! reporting stores.

use std::future::Future;

use chrono::NaiveDate;
use tern_core::{AccountId, Event, EventKind};
use tern_queue::{Position, Store};

use super::expected::{assert_matches_fold, expected};
use super::support::{Guard, append, assert_same, snapshot};
use crate::sample::{SampleOptions, journal};
use crate::{GroupBy, Projector, ReportStore};

fn sample(messages: usize, seed: u64) -> Vec<Event> {
    journal(&SampleOptions { messages, accounts: 5, days: 4, disorder: 0.05, seed })
}

/// Every lifecycle path, out-of-order arrivals included, projects to
/// exactly the fold of the events.
pub async fn projects_every_lifecycle_path_exactly<F, Fut>(store: Store, reports: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (ReportStore, Guard)>,
{
    let events = sample(1_500, 11);
    append(store.journal(), &events).await;
    let (reports, _guard) = reports().await;
    let run = Projector::new(store.journal().clone(), reports.clone(), 300).catch_up().await.unwrap();
    assert_eq!(run.events, events.len() as u64);
    assert_eq!(reports.checkpoint().await.unwrap(), store.journal().head().await.unwrap());
    assert_matches_fold(&reports, &events).await;
}

/// A batch applied again, or overlapping one already applied, changes nothing.
pub async fn applying_a_batch_twice_changes_nothing<F, Fut>(store: Store, reports: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (ReportStore, Guard)>,
{
    let events = sample(400, 12);
    append(store.journal(), &events).await;
    let (reports, _guard) = reports().await;
    let records = store.journal().read_from(Position::START, 600).await.unwrap();
    assert_eq!(reports.apply(&records[..300]).await.unwrap().applied, 300);
    let once = snapshot(&reports).await;
    let again = reports.apply(&records[..300]).await.unwrap();
    assert_eq!(again.applied, 0);
    assert_eq!(again.checkpoint, records[299].position);
    assert_same(&once, &snapshot(&reports).await, "after applying a batch twice");
    assert_eq!(reports.apply(&records[150..600]).await.unwrap().applied, 300);
    Projector::new(store.journal().clone(), reports.clone(), 250).catch_up().await.unwrap();
    assert_matches_fold(&reports, &events).await;
}

/// A projector stopped between batches and a new one started later, while
/// the journal grows, end where one uninterrupted rebuild ends.
pub async fn a_restarted_projector_ends_as_if_it_never_stopped<F, Fut>(store: Store, reports: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (ReportStore, Guard)>,
{
    let events = sample(900, 13);
    let (incremental, _g1) = reports().await;
    for (i, chunk) in events.chunks(events.len() / 3 + 1).enumerate() {
        append(store.journal(), chunk).await;
        let projector = Projector::new(store.journal().clone(), incremental.clone(), 97 + i * 50);
        projector.step().await.unwrap();
        projector.step().await.unwrap();
    }
    Projector::new(store.journal().clone(), incremental.clone(), 500).catch_up().await.unwrap();
    let (rebuilt, _g2) = reports().await;
    Projector::new(store.journal().clone(), rebuilt.clone(), 5_000).rebuild(false).await.unwrap();
    assert_same(&snapshot(&incremental).await, &snapshot(&rebuilt).await, "restarted projector against a rebuild");
    assert_matches_fold(&incremental, &events).await;
}

/// `rebuild` drops the store and replays everything into the same rows.
pub async fn a_rebuild_equals_the_incremental_store<F, Fut>(store: Store, reports: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (ReportStore, Guard)>,
{
    let events = sample(800, 14);
    let (reports, _guard) = reports().await;
    let projector = Projector::new(store.journal().clone(), reports.clone(), 61);
    for chunk in events.chunks(250) {
        append(store.journal(), chunk).await;
        projector.catch_up().await.unwrap();
    }
    let incremental = snapshot(&reports).await;
    let run = projector.rebuild(false).await.unwrap();
    assert_eq!(run.events, events.len() as u64);
    assert_same(&incremental, &snapshot(&reports).await, "rebuild against incremental");
}

/// Lag in events and seconds while records remain; zero once caught up.
pub async fn lag_is_reported_until_caught_up<F, Fut>(store: Store, reports: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (ReportStore, Guard)>,
{
    let events = sample(200, 15);
    append(store.journal(), &events).await;
    let (reports, _guard) = reports().await;
    let projector = Projector::new(store.journal().clone(), reports, 100);
    assert_eq!(projector.step().await.unwrap(), 100);
    let lag = projector.progress().lag();
    assert_eq!(lag.checkpoint + lag.events, store.journal().head().await.unwrap().0);
    assert_eq!(lag.events, events.len() as u64 - 100);
    // The sample's events are from November 2026: far in the past.
    assert!(lag.seconds > 60.0, "{lag:?}");
    projector.catch_up().await.unwrap();
    let lag = projector.progress().lag();
    assert_eq!((lag.events, lag.seconds), (0, 0.0), "{lag:?}");
}

/// The account summary adds up `daily_stats` by day, country and status,
/// within the dates asked for and for that account only.
pub async fn the_summary_groups_an_accounts_figures<F, Fut>(store: Store, reports: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (ReportStore, Guard)>,
{
    let events = sample(600, 16);
    append(store.journal(), &events).await;
    let (reports, _guard) = reports().await;
    Projector::new(store.journal().clone(), reports.clone(), 1_000).catch_up().await.unwrap();
    let account: AccountId =
        events.iter().find(|e| matches!(e.kind, EventKind::Accepted { .. })).and_then(|e| e.account_id).unwrap();
    let stats = expected(&events).daily_stats;
    let mine: Vec<&Vec<Option<String>>> =
        stats.iter().filter(|r| r[1].as_deref() == Some(account.to_string().as_str())).collect();
    let field = |row: &Vec<Option<String>>, i: usize| row[i].clone().unwrap_or_default();
    let number = |row: &Vec<Option<String>>, i: usize| field(row, i).parse::<i64>().unwrap();
    let (from, to) = (NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(), NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
    for (group_by, column) in [(GroupBy::Day, 0), (GroupBy::Country, 2), (GroupBy::Status, 4)] {
        let mut want: std::collections::BTreeMap<String, [i64; 3]> = std::collections::BTreeMap::new();
        for row in &mine {
            let entry = want.entry(field(row, column)).or_default();
            entry[0] += number(row, 5);
            entry[1] += number(row, 6);
            entry[2] += number(row, 7);
        }
        let got = reports.summary(account, from, to, group_by).await.unwrap();
        let got: std::collections::BTreeMap<String, [i64; 3]> =
            got.into_iter().map(|r| (r.key, [r.messages, r.segments, r.revenue])).collect();
        assert_eq!(got, want, "{group_by:?}");
    }
    let second = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
    let days = reports.summary(account, second, second, GroupBy::Day).await.unwrap();
    assert!(days.iter().all(|r| r.key == "2026-11-02"), "{days:?}");
    assert!(reports.summary(AccountId::new(), from, to, GroupBy::Day).await.unwrap().is_empty());
}

/// Every `sql` example of docs/reporting.md runs on a projected store
/// (portable blocks everywhere, `sql postgres` / `sql sqlite` blocks on
/// their dialect), and the queries meant to find rows find some.
pub async fn the_example_queries_of_the_reporting_guide_run<F, Fut>(store: Store, reports: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (ReportStore, Guard)>,
{
    let events = sample(500, 17);
    append(store.journal(), &events).await;
    let (reports, _guard) = reports().await;
    Projector::new(store.journal().clone(), reports.clone(), 1_000).catch_up().await.unwrap();
    let guide = include_str!("../../../docs/reporting.md");
    let mut ran = 0;
    for block in guide.split("```sql").skip(1) {
        let (tag, rest) = block.split_once('\n').unwrap();
        let sql = rest.split("```").next().unwrap().trim();
        let tag = tag.trim();
        if !tag.is_empty() && tag != reports.dialect() {
            continue;
        }
        let rows = match &reports {
            ReportStore::Sqlite(pool) => sqlx::query(sql).fetch_all(pool).await.map(|r| r.len()),
            ReportStore::Postgres(pool) => sqlx::query(sql).fetch_all(pool).await.map(|r| r.len()),
        };
        let rows =
            rows.unwrap_or_else(|e| panic!("docs/reporting.md example fails on {}: {e}\n{sql}", reports.dialect()));
        assert!(rows > 0, "docs/reporting.md example finds nothing on {}:\n{sql}", reports.dialect());
        ran += 1;
    }
    assert!(ran >= 6, "only {ran} examples ran");
}
