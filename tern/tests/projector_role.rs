//! `tern projector` as a process: SIGKILLed at random points of a
//! 50,000-event projection and restarted until it has caught up, its store
//! equals a clean `tern projector rebuild` and the fold of the events; its
//! `/readyz` shows the lag and `/metrics` the checkpoint; SIGTERM stops it
//! cleanly. On SQLite and PostgreSQL reporting stores (PostgreSQL from
//! `TERN_TEST_POSTGRES_URL`; the test fails without it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tern_core::Event;
use tern_queue::{SqliteConfig, Store, StoreConfig};
use tern_reporting::ReportStore;
use tern_reporting::sample::{SampleOptions, journal};
use tern_reporting::test_suite::{
    Guard, append, assert_matches_fold, assert_same, fresh_postgres_url, fresh_sqlite_url, snapshot,
};

const EVENTS: usize = 50_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write_config(dir: &Path, name: &str, journal: &Path, reports_url: &str, port: u16) -> PathBuf {
    let file = dir.join(name);
    let text = format!(
        "[store]\nbackend = \"sqlite\"\npath = \"{}\"\n\n[reporting]\ndatabase_url = \"{reports_url}\"\n\
         batch_size = 500\npoll_ms = 50\nlisten = \"127.0.0.1:{port}\"\n",
        journal.display()
    );
    std::fs::write(&file, text).unwrap();
    file
}

fn spawn(config: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("projector")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// A journal of exactly [`EVENTS`] events in a SQLite store.
async fn journal_of_50k(dir: &Path) -> (Store, PathBuf, Vec<Event>) {
    let path = dir.join("tern.db");
    let store = StoreConfig::Sqlite(SqliteConfig { path: path.clone() }).connect().await.unwrap();
    let mut events = journal(&SampleOptions { messages: 10_000, accounts: 20, days: 5, disorder: 0.03, seed: 61 });
    assert!(events.len() >= EVENTS, "the sample has {} events", events.len());
    events.truncate(EVENTS);
    append(store.journal(), &events).await;
    (store, path, events)
}

async fn checkpoint(url: &str) -> u64 {
    let store = ReportStore::connect(url).await.unwrap();
    let position = store.checkpoint().await.unwrap().0;
    store.close().await;
    position
}

async fn killed_at_random_points_equals_a_rebuild<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (String, Guard)>,
{
    let dir = tempfile::tempdir().unwrap();
    let (store, journal_path, events) = journal_of_50k(dir.path()).await;
    let head = store.journal().head().await.unwrap().0;
    let (url, _guard) = fresh().await;
    let config = write_config(dir.path(), "tern.toml", &journal_path, &url, free_port());
    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let mut child = spawn(&config, &[]);
        // Kill once the checkpoint has passed a random position, a random
        // few milliseconds later: wherever the projector then is.
        let target = checkpoint(&url).await + rng.random_range(1..12_000);
        let mut done = false;
        loop {
            assert!(Instant::now() < deadline, "not caught up in time (seed {seed}, {kills} kills)");
            if let Some(status) = child.try_wait().unwrap() {
                panic!("tern projector exited by itself: {status} (seed {seed}, {kills} kills)");
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(5..40))).await;
            let at = checkpoint(&url).await;
            if at >= head {
                done = true;
                break;
            }
            if at >= target {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if done {
            break;
        }
        kills += 1;
    }
    eprintln!("caught up after {kills} SIGKILLs (seed {seed})");
    assert_eq!(checkpoint(&url).await, head);

    let (rebuilt_url, _rebuilt_guard) = fresh().await;
    let rebuild_config = write_config(dir.path(), "rebuild.toml", &journal_path, &rebuilt_url, free_port());
    let output = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["projector", "rebuild", "--config"])
        .arg(&rebuild_config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "rebuild failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("{EVENTS} events")), "{stdout}");

    let killed = ReportStore::connect(&url).await.unwrap();
    let rebuilt = ReportStore::connect(&rebuilt_url).await.unwrap();
    assert_same(&snapshot(&killed).await, &snapshot(&rebuilt).await, "killed projector against a rebuild");
    assert_matches_fold(&killed, &events).await;
    killed.close().await;
    rebuilt.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_killed_at_random_points_equals_a_rebuild() {
    killed_at_random_points_equals_a_rebuild(|| async { fresh_sqlite_url() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_killed_at_random_points_equals_a_rebuild() {
    killed_at_random_points_equals_a_rebuild(fresh_postgres_url).await;
}

async fn get(port: u16, path: &str) -> (u16, String) {
    let url = format!("http://127.0.0.1:{port}{path}");
    match reqwest::get(&url).await {
        Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_shows_the_lag_metrics_the_checkpoint_and_sigterm_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let store = StoreConfig::Sqlite(SqliteConfig { path: path.clone() }).connect().await.unwrap();
    let events = journal(&SampleOptions { messages: 300, ..SampleOptions::default() });
    append(store.journal(), &events).await;
    let head = store.journal().head().await.unwrap().0;
    let (url, _guard) = fresh_sqlite_url();
    let port = free_port();
    let config = write_config(dir.path(), "tern.toml", &path, &url, port);
    let mut child = spawn(&config, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        assert!(Instant::now() < deadline, "the projector never became ready");
        let (status, body) = get(port, "/readyz").await;
        if status == 200 && body.contains(&format!("\"checkpoint\":{head}")) {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["lag_events"], 0, "{ready}");
    assert_eq!(ready["lag_seconds"], 0.0, "{ready}");
    assert_eq!(ready["journal_head"], head, "{ready}");
    assert_eq!(get(port, "/healthz").await.0, 200);
    let (status, metrics) = get(port, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains(&format!("tern_projector_checkpoint {head}")), "{metrics}");
    assert!(metrics.contains("tern_projector_lag_events 0"), "{metrics}");

    // New events: the running projector picks them up.
    let more = journal(&SampleOptions { messages: 50, seed: 2, ..SampleOptions::default() });
    append(store.journal(), &more).await;
    let head = store.journal().head().await.unwrap().0;
    while checkpoint(&url).await < head {
        assert!(Instant::now() < deadline, "the projector did not follow the journal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let stop_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "tern projector exits cleanly on SIGTERM: {status}");
            break;
        }
        assert!(Instant::now() < stop_deadline, "tern projector did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
