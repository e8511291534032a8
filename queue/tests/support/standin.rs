//! Starting and stopping MongoDB stand-in processes from a test, for tests
//! that take a deployment down. The binary comes from `TERN_TEST_SECANTUSD`
//! (set by `scripts/test.sh`).
#![allow(clippy::expect_used, clippy::panic, dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One stand-in process with its own data directory and port.
#[derive(Debug)]
pub struct StandIn {
    binary: PathBuf,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl StandIn {
    /// Starts a stand-in on a free loopback port.
    pub fn start() -> Self {
        let binary = match std::env::var("TERN_TEST_SECANTUSD") {
            Ok(path) if !path.is_empty() => PathBuf::from(path),
            _ => panic!("TERN_TEST_SECANTUSD is not set: run the suite through scripts/test.sh"),
        };
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let dir = tempfile::Builder::new().prefix("tern-standin-").tempdir().expect("temp dir");
        let mut standin = Self { binary, port, dir, child: None };
        standin.resume();
        standin
    }

    /// The URI clients connect with.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }

    /// Kills the process (SIGKILL, like a crashed machine); data stays on disk.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port and data.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "stand-in already running");
        let log = std::fs::File::create(self.dir.path().join("log")).expect("log file");
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--storage-path"])
            .arg(self.dir.path().join("data"))
            .args(["--sync-on-commit", "--log-file-max", "16MB"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start secantusd-rs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "stand-in did not listen on {} within 30 s", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.kill();
    }
}
