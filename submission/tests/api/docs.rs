//! docs/api.md's curl examples run against a live server: every `sh` block
//! in order, as one bash script, with TERN_URL and TERN_ADMIN_TOKEN set.
//! A block that fails (curl -f, set -e) fails the test.

use crate::helpers::{ADMIN_TOKEN, Backend, spawn_with_reports};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_examples_of_docs_api_md_work() {
    // With a reporting store, as a deployment running the projector has.
    let app = spawn_with_reports(Backend::Sqlite, tern_reporting::test_suite::sqlite_reports().await).await;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let mut script = String::from("set -euo pipefail\n");
    let mut blocks = 0;
    let mut in_block = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```sh") {
            in_block = true;
            blocks += 1;
            script.push_str(&format!("echo '--- block {blocks}' >&2\n"));
        } else if in_block && line.trim_start().starts_with("```") {
            in_block = false;
        } else if in_block {
            script.push_str(line);
            script.push('\n');
        }
    }
    assert!(blocks >= 8, "docs/api.md should show every endpoint; found {blocks} sh blocks");
    let output = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("TERN_URL", &app.url)
        .env("TERN_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "docs/api.md examples failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("\"status\":\"delivered\"") || stdout.contains("accepted"), "{stdout}");
}

/// The signature example of docs/api.md is what Tern's signer produces, so
/// a receiver following the guide verifies real webhooks.
#[test]
fn the_signature_example_of_docs_api_md_is_what_tern_signs() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let value = |name: &str| {
        let line =
            doc.lines().find(|l| l.starts_with(&format!("{name}='"))).unwrap_or_else(|| panic!("no {name}= line"));
        line[name.len() + 2..].split('\'').next().unwrap().to_owned()
    };
    let (secret, header, body) = (value("SECRET"), value("HEADER"), value("BODY"));
    let t: i64 = header.strip_prefix("t=").unwrap().split(',').next().unwrap().parse().unwrap();
    assert_eq!(tern_handlers::webhook::sign(&secret, t, body.as_bytes()), header);
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["type"], "message.inbound");
}
