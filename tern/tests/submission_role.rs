//! `tern submission` as an operator runs it: configuration from a TOML file
//! overridden by `TERN__SECTION__KEY`, the admin token from
//! `TERN_ADMIN_TOKEN`, and a clean stop on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn status_of(url: &str, token: &str) -> Option<u16> {
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", &format!("Authorization: Bearer {token}"), url])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok().filter(|code| *code != 0)
}

#[test]
fn runs_from_file_and_environment_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tern.toml");
    // The file names one port; the environment overrides it with another.
    std::fs::write(
        &config,
        format!(
            "[store]\nbackend = \"sqlite\"\npath = \"{}\"\n\n[submission]\nlisten = \"127.0.0.1:1\"\n",
            dir.path().join("tern.db").display()
        ),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["submission", "--config"])
        .arg(&config)
        .env("TERN__SUBMISSION__LISTEN", format!("127.0.0.1:{port}"))
        .env("TERN_ADMIN_TOKEN", "from-the-environment")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/admin/v1/accounts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = status_of(&url, "from-the-environment") {
            break status;
        }
        assert!(Instant::now() < deadline, "tern submission did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "TERN_ADMIN_TOKEN is the admin token");
    assert_eq!(status_of(&url, "wrong"), Some(401));

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "SIGTERM is a clean stop: {exit:?}");
            break;
        }
        assert!(Instant::now() < deadline, "tern submission did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_bad_configuration_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tern.toml");
    std::fs::write(&config, "[submission]\nlisten = \"127.0.0.1:0\"\nmax_segmnts = 3\n").unwrap();
    let output =
        Command::new(env!("CARGO_BIN_EXE_tern")).args(["submission", "--config"]).arg(&config).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("max_segmnts"), "{stderr}");
}
