//! `tern up` as a newcomer runs it: the first start sets up a demo account
//! and prints how to use it; a message sent with the printed key is
//! delivered, with its history, and reaches the SQL store; SIGTERM stops it
//! cleanly with nothing lost, and a restart continues where it stopped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `tern up` and what it printed.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    printed: Vec<String>,
    api: String,
}

impl Up {
    fn start(data_dir: &Path) -> Self {
        let (http, sim) = (free_port(), free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("up")
            .args(["--http", &format!("127.0.0.1:{http}"), "--smpp-sim", &format!("127.0.0.1:{sim}")])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .env_remove("TERN_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut up = Self { child, lines, printed: Vec::new(), api: format!("http://127.0.0.1:{http}") };
        up.wait_for_line("Ctrl-C stops Tern");
        up
    }

    fn wait_for_line(&mut self, wanted: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.printed.push(line.clone());
                    if line.contains(wanted) {
                        return line;
                    }
                }
                Err(_) => panic!("tern up never printed {wanted:?}; it printed:\n{}", self.printed.join("\n")),
            }
        }
    }

    /// The value after `label` in the welcome text.
    fn shown(&self, label: &str) -> String {
        let line = self.printed.iter().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| {
            panic!("no {label:?} in the welcome text:\n{}", self.printed.join("\n"));
        });
        line.trim_start()[label.len()..].split_whitespace().next().unwrap().to_owned()
    }

    /// SIGTERM, then the exit status must be success and the goodbye printed.
    fn terminate(mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        self.wait_for_line("tern stopped");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "tern up exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "tern up did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn send(http: &reqwest::Client, api: &str, key: &str, to: &str) -> String {
    let answer = http
        .post(format!("{api}/v1/messages"))
        .bearer_auth(key)
        .json(&json!({"to": to, "from": "Tern", "body": "Hello from Tern"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202, "{:?}", answer.text().await);
    answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn get(http: &reqwest::Client, url: &str, key: &str) -> Value {
    let answer = http.get(url).bearer_auth(key).send().await.unwrap();
    assert_eq!(answer.status(), 200, "{url}");
    answer.json().await.unwrap()
}

/// Polls `probe` until it is true; the deadline is generous: it only bounds a hang.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut probe: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !probe().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn delivered(http: &reqwest::Client, api: &str, key: &str, ids: &[String]) -> bool {
    for id in ids {
        if get(http, &format!("{api}/v1/messages/{id}"), key).await["status"] != "delivered" {
            return false;
        }
    }
    true
}

/// Messages the SQL store holds for the demo account, by status.
async fn projected(http: &reqwest::Client, api: &str, key: &str, status: &str) -> i64 {
    let summary = get(http, &format!("{api}/v1/reports/summary?group_by=status"), key).await;
    summary["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["key"] == status)
        .map(|row| row["messages"].as_i64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_everything_and_a_restart_continues_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tern-data");
    let http = reqwest::Client::new();

    let up = Up::start(&data);
    let key = up.shown("demo API key");
    let admin_token = up.shown("admin token");
    let api = up.api.clone();
    // The printed commands use the printed key and address.
    let send_line = up.printed.iter().find(|l| l.contains("/v1/messages -H")).unwrap();
    assert!(send_line.contains(&api) && send_line.contains(&key), "{send_line}");
    let balance = get(&http, &format!("{api}/v1/balance"), &key).await;
    assert_eq!(balance["balance"], 100_000, "{balance}");

    let first = send(&http, &api, &key, "+447400123456").await;
    eventually("the first message is delivered", || delivered(&http, &api, &key, std::slice::from_ref(&first))).await;
    let message = get(&http, &format!("{api}/v1/messages/{first}"), &key).await;
    let history: Vec<&str> =
        message["history"].as_array().unwrap().iter().map(|h| h["event"]["type"].as_str().unwrap()).collect();
    for kind in ["accepted", "routed", "charged", "submitted_to_smsc", "delivery_report"] {
        assert!(history.contains(&kind), "{kind} missing from {history:?}");
    }
    eventually("the SQL store shows it delivered", || async { projected(&http, &api, &key, "delivered").await == 1 })
        .await;

    // Stopped with messages in flight: none is lost.
    let mut in_flight = Vec::new();
    for i in 0..20 {
        in_flight.push(send(&http, &api, &key, &format!("+4474001234{i:02}")).await);
    }
    up.terminate();

    let up = Up::start(&data);
    assert_eq!(up.shown("demo API key"), key, "the same demo account and key after a restart");
    assert_eq!(up.shown("admin token"), admin_token, "the same admin token after a restart");
    let accounts = get(&http, &format!("{api}/admin/v1/accounts", api = up.api), &admin_token).await;
    assert_eq!(accounts["data"].as_array().unwrap().len(), 1, "no second demo account: {accounts}");
    let api = up.api.clone();
    eventually("every message sent before the stop is delivered", || delivered(&http, &api, &key, &in_flight)).await;
    eventually("the SQL store shows all 21", || async { projected(&http, &api, &key, "delivered").await == 21 }).await;
    let balance = get(&http, &format!("{api}/v1/balance"), &key).await;
    assert_eq!(balance["balance"], 100_000 - 21 * 5, "each message charged once: {balance}");
    up.terminate();
}
