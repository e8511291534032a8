//! `tern stress`, briefly: a deployment of one process per role on SQLite
//! under load with chaos, then the invariants. The run must pass, the
//! report must show the faults it injected and the figures it measured,
//! and a baseline is compared. (`scripts/test.sh` also runs a 60-second
//! run; the nightly run is hours long.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use serde_json::Value;

fn stress(out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["stress", "--mode", "roles", "--duration", "12s", "--drain", "90s", "--rate", "150"])
        .args(["--accounts", "2", "--clients", "8", "--batch-size", "20", "--callback-share", "0.3"])
        .args(["--receipt-delay-ms", "50..300", "--lease-ms", "3000"])
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn a_short_chaos_run_keeps_every_invariant_and_reports_its_figures() {
    let out = tempfile::tempdir().unwrap();
    let run = stress(out.path(), &["--chaos", "--chaos-every", "2s"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "tern stress failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));

    let report: Value = serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    let invariants = report["invariants"].as_array().unwrap();
    assert!(invariants.len() >= 7, "{invariants:?}");
    assert!(invariants.iter().all(|i| i["held"] == true), "{invariants:?}");
    let accepted = report["counts"]["accepted"].as_u64().unwrap();
    assert!(accepted > 100, "{}", report["counts"]);
    assert_eq!(report["counts"]["journal_accepted"].as_u64(), Some(accepted));
    assert!(report["counts"]["callbacks_received"].as_u64().unwrap() > 0, "{}", report["counts"]);

    // Faults went round: the links first, then each role once.
    let actions: Vec<&str> =
        report["chaos_events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.len() >= 3, "{actions:?}");
    assert_eq!(&actions[..3], ["dropped SMPP links", "SIGKILL submission", "SIGKILL worker"]);
    let roles = report["roles"].as_array().unwrap();
    let names: Vec<&str> = roles.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["submission", "worker", "scheduler", "connector", "projector"]);
    assert!(roles.iter().all(|r| r["peak_rss_mb"].as_f64().unwrap() > 1.0), "{roles:?}");
    assert_eq!(roles[0]["restarts"], 1);
    for latency in ["accept", "accept_to_submit", "accept_to_receipt"] {
        assert!(report["latency_ms"][latency]["count"].as_u64().unwrap() > 0, "{latency}: {}", report["latency_ms"]);
    }
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("All invariants held"));

    // A second run, without faults and with single sends only, compared
    // figure by figure with the first as its baseline.
    std::fs::copy(out.path().join("report.json"), out.path().join("baseline.json")).unwrap();
    let second = tempfile::tempdir().unwrap();
    let baseline = out.path().join("baseline.json");
    let run = stress(second.path(), &["--baseline", baseline.to_str().unwrap(), "--mix", "single=1"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    let html = std::fs::read_to_string(second.path().join("report.html")).unwrap();
    assert!(html.contains("Compared with the baseline"), "no comparison in the page");
}

/// The production shape: the MongoDB stand-in (started by the run, so
/// chaos can restart it) and the reporting store on PostgreSQL (a scratch
/// database made by the run), with the first faults going round the links,
/// the store and the API. The SQL store is compared with the journal there
/// too.
#[test]
fn a_chaos_run_on_mongodb_and_postgres_survives_a_store_restart() {
    let server = std::env::var("TERN_TEST_POSTGRES_URL")
        .expect("TERN_TEST_POSTGRES_URL is not set: run the tests through scripts/test.sh");
    let standin = std::env::var("TERN_TEST_SECANTUSD")
        .expect("TERN_TEST_SECANTUSD is not set: run the tests through scripts/test.sh");
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["stress", "--duration", "12s", "--drain", "120s", "--rate", "60", "--accounts", "1", "--clients", "4"])
        .args(["--backend", "mongodb", "--standin", &standin, "--postgres", &server, "--mix", "single=3,long=1"])
        .args(["--chaos", "--chaos-every", "3s", "--lease-ms", "3000"])
        .arg("--out")
        .arg(out.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!((report["backend"].as_str(), report["reports"].as_str()), (Some("mongodb"), Some("postgres")));
    let invariants = report["invariants"].as_array().unwrap();
    assert!(invariants.iter().all(|i| i["held"] == true), "{invariants:?}");
    let actions: Vec<&str> =
        report["chaos_events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(&actions[..2], ["dropped SMPP links", "restarted the store process"], "{actions:?}");
    let store = invariants.iter().find(|i| i["name"] == "the SQL store equals a fold of the journal").unwrap();
    assert!(store["detail"].as_str().unwrap().starts_with(&report["counts"]["accepted"].to_string()), "{store}");
}
