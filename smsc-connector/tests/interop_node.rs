//! The connector against a third-party SMSC: node-smpp (the `smpp` package
//! of the npm registry) run as the server by `tests/interop/node/smsc.js`.
//! `scripts/test.sh` installs it with `npm ci` from the committed lockfile.
//! Proves bind, submit (short and UDH-concatenated), receipts and MO
//! against an implementation that is not ours.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code, unused_imports)]
#[path = "connector/helpers.rs"]
mod helpers;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use helpers::*;
use serde_json::{Value, json};
use tern_core::{EventKind, MessageStatus};
use tern_handlers::MoEntry;
use tern_queue::ConsumerOptions;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

struct NodeSmsc {
    child: Child,
    stdin: ChildStdin,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl NodeSmsc {
    async fn start() -> (Self, u16) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/node");
        assert!(
            dir.join("node_modules/smpp").is_dir(),
            "node-smpp is not installed in {}: run the tests through scripts/test.sh (it runs npm ci there)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("smsc.js")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (scripts/test.sh installs Node.js when it is missing)");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let record = seen.clone();
        tokio::spawn(async move {
            let mut port_tx = Some(port_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                let event: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if event["event"] == "listening"
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(u16::try_from(event["port"].as_u64().unwrap()).unwrap());
                }
                record.lock().unwrap().push(event);
            }
        });
        let port = tokio::time::timeout(Duration::from_secs(30), port_rx).await.expect("node-smpp listens").unwrap();
        (Self { child, stdin, seen }, port)
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        self.seen.lock().unwrap().iter().filter(|e| e["event"] == kind).cloned().collect()
    }

    async fn send_mo(&mut self, from: &str, to: &str, text: &str) {
        let line = json!({ "mo": { "from": from, "to": to, "text": text } }).to_string() + "\n";
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_binds_submits_and_receives_from_node_smpp() {
    let (mut node, port) = NodeSmsc::start().await;
    let store = fresh(Backend::Sqlite).await;
    let account = account(&store, 10_000).await;
    let connector = start(&store, &connector_config(port));

    let short = routed(&store, &account, Send { body: "Hello from Tern".into(), ..Send::default() }).await;
    let long_body = "A message long enough to travel in three concatenated parts. ".repeat(6);
    let long =
        routed(&store, &account, Send { to: "+447400000077".into(), body: long_body.clone(), ..Send::default() }).await;
    wait_for(&store, &[short, long], MessageStatus::Delivered).await;

    let bound = node.events("bound");
    assert_eq!(bound.len(), 1, "{bound:?}");
    assert_eq!(bound[0]["interface_version"], 0x34, "Tern binds as SMPP 3.4");
    let submits = node.events("submit_sm");
    let segments = tern_core::encoding::segment_count(&long_body);
    assert_eq!(submits.len(), 1 + segments, "{submits:?}");
    let first = submits.iter().find(|s| s["destination"] == "447400123456").unwrap();
    assert_eq!(first["text"], "Hello from Tern");
    assert_eq!(first["source"], "ACME");
    assert_eq!(first["registered_delivery"], 1);
    let parts: Vec<&Value> = submits.iter().filter(|s| s["destination"] == "447400000077").collect();
    assert!(parts.iter().all(|p| p["esm_class"].as_u64().unwrap() & 0x40 != 0), "UDH indicator set: {parts:?}");
    let receipts = node.events("receipt_resp");
    assert!(receipts.iter().all(|r| r["status"] == 0), "every receipt acknowledged: {receipts:?}");
    let kinds = history(&store, short).await;
    assert!(kinds.iter().any(
        |k| matches!(k, EventKind::SubmittedToSmsc { smsc_message_id, .. } if smsc_message_id.starts_with("node"))
    ));

    node.send_mo("447700900111", "4000", "STOP please").await;
    eventually("the MO reached the pipeline", || async {
        let consumer = store.queue().consumer(tern_workers::mo::MO_TOPIC, ConsumerOptions::default());
        let claimed = consumer.claim(10).await.unwrap();
        let found = claimed.deliveries.iter().any(|d| {
            let entry: MoEntry = d.payload_json().unwrap();
            matches!(&entry.received.kind, EventKind::InboundReceived { from, to, body, .. }
                if from == "+447700900111" && to == "4000" && body == "STOP please")
        });
        let leases: Vec<_> = claimed.deliveries.iter().map(|d| d.lease().clone()).collect();
        consumer.release_leases(&leases).await.unwrap();
        found
    })
    .await;
    assert_eq!(node.events("mo_resp")[0]["status"], 0);

    connector.stop().await;
    eventually("node-smpp saw the unbind", || async { !node.events("unbound").is_empty() }).await;
    let _ = node.child.kill().await;
}
