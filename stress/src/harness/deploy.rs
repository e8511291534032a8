//! The deployment under test: `tern up` as one process, or every role as
//! its own process, all on one configuration file the harness writes.
//! Processes can be killed outright and started again (chaos), and are
//! sampled for memory and CPU.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::report::RoleUsage;

/// How the roles run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `tern up`: every role in one process, SQLite in its data directory.
    Up,
    /// `tern submission`, `tern worker`, `tern scheduler`, `tern connector`
    /// and `tern projector`, each its own process.
    Roles,
}

/// The store the roles share.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// A SQLite file in the run directory.
    Sqlite,
    /// A MongoDB deployment (replica set or the stand-in). With `standin`,
    /// the harness starts that binary itself on a free port, so chaos can
    /// restart the store process.
    Mongodb { uri: String, database: String, standin: Option<PathBuf> },
}

/// What the deployment is made of.
#[derive(Debug, Clone)]
pub struct DeployPlan {
    /// The `tern` binary.
    pub binary: PathBuf,
    /// Where the configuration, the data and the logs go.
    pub dir: PathBuf,
    /// How the roles run.
    pub mode: Mode,
    /// The store.
    pub store: StoreChoice,
    /// The reporting database (`sqlite://…` or `postgres://…`); `tern up` always uses its own SQLite file.
    pub reports_url: String,
    /// The SMSC simulator the connector binds to.
    pub smsc: SocketAddr,
    /// Where the API listens.
    pub http: SocketAddr,
    /// The admin token the roles are given.
    pub admin_token: String,
    /// Lease of the pipeline's and the connector's batches: how soon the
    /// work of a killed process is taken over.
    pub lease_ms: u64,
}

/// One process of the deployment, with what it used in its earlier lives.
#[derive(Debug)]
struct Process {
    name: &'static str,
    args: Vec<String>,
    child: Option<Child>,
    restarts: u32,
    /// CPU seconds of earlier lives, and of this one at the last sample.
    cpu_past: f64,
    cpu_now: f64,
    peak_rss_mb: f64,
    rss_sum_mb: f64,
    samples: u64,
}

/// The running deployment.
#[derive(Debug)]
pub struct Deployment {
    plan: DeployPlan,
    processes: Vec<Process>,
    started: Instant,
    api_url: String,
}

/// The standard Linux clock tick (`sysconf(_SC_CLK_TCK)` is 100 on every
/// mainstream kernel build); only the CPU figures depend on it.
const CLOCK_TICKS: f64 = 100.0;

impl Deployment {
    /// Writes the configuration and starts every process; returns when the API answers.
    pub async fn start(plan: DeployPlan) -> anyhow::Result<Self> {
        std::fs::create_dir_all(plan.dir.join("logs"))
            .with_context(|| format!("cannot create {}", plan.dir.display()))?;
        let config = plan.dir.join("tern.toml");
        std::fs::write(&config, config_toml(&plan)).with_context(|| format!("cannot write {}", config.display()))?;
        let config = config.display().to_string();
        let mut names: Vec<(&'static str, Vec<String>)> = Vec::new();
        if let StoreChoice::Mongodb { standin: Some(binary), .. } = &plan.store {
            let port = store_port(&plan.store)?;
            let data = plan.dir.join("standin");
            names.push((
                "store",
                vec![
                    binary.display().to_string(),
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    port.to_string(),
                    "--storage-path".into(),
                    data.display().to_string(),
                    "--sync-on-commit".into(),
                    "--log-file-max".into(),
                    "16MB".into(),
                ],
            ));
        }
        let tern = plan.binary.display().to_string();
        match plan.mode {
            Mode::Up => {
                if !matches!(plan.store, StoreChoice::Sqlite) {
                    bail!("`tern up` runs on SQLite only; use the roles mode for MongoDB");
                }
                names.push((
                    "up",
                    vec![
                        tern,
                        "up".into(),
                        "--http".into(),
                        plan.http.to_string(),
                        "--smpp-sim".into(),
                        "127.0.0.1:0".into(),
                        "--data-dir".into(),
                        plan.dir.join("data").display().to_string(),
                        "--config".into(),
                        config,
                    ],
                ));
            }
            Mode::Roles => {
                for role in ["submission", "worker", "scheduler", "connector", "projector"] {
                    names.push((role, vec![tern.clone(), role.into(), "--config".into(), config.clone()]));
                }
            }
        }
        let processes = names
            .into_iter()
            .map(|(name, args)| Process {
                name,
                args,
                child: None,
                restarts: 0,
                cpu_past: 0.0,
                cpu_now: 0.0,
                peak_rss_mb: 0.0,
                rss_sum_mb: 0.0,
                samples: 0,
            })
            .collect();
        let api_url = format!("http://{}", plan.http);
        let mut deployment = Self { plan, processes, started: Instant::now(), api_url };
        for i in 0..deployment.processes.len() {
            deployment.spawn(i)?;
            if deployment.processes[i].name == "store" {
                wait_for_port(store_port(&deployment.plan.store)?, Duration::from_secs(30)).await?;
            }
        }
        deployment.wait_ready(Duration::from_secs(60)).await?;
        Ok(deployment)
    }

    /// The API's base URL.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Names of the processes chaos may kill (the store is restarted, not listed).
    pub fn roles(&self) -> Vec<&'static str> {
        self.processes.iter().map(|p| p.name).filter(|n| *n != "store").collect()
    }

    /// Whether the harness runs the store process (so chaos can restart it).
    pub fn owns_store(&self) -> bool {
        self.processes.iter().any(|p| p.name == "store")
    }

    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let process = &mut self.processes[index];
        let log_path = self.plan.dir.join("logs").join(format!("{}.log", process.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let (program, args) = process.args.split_first().context("a process without a command")?;
        let child = Command::new(program)
            .args(args)
            .env("TERN_ADMIN_TOKEN", &self.plan.admin_token)
            .env("RUST_LOG", std::env::var("TERN_STRESS_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {program} {}", args.join(" ")))?;
        process.child = Some(child);
        Ok(())
    }

    /// Waits until the API answers `/healthz` and the admin API takes the token.
    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        loop {
            let probe = http
                .get(format!("{}/admin/v1/accounts?limit=1", self.api_url))
                .bearer_auth(&self.plan.admin_token)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the API at {} did not come up; see {}/logs", self.api_url, self.plan.dir.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILLs the named process (like a crashed machine) and starts it
    /// again after `down_for`.
    pub async fn kill_and_restart(&mut self, name: &str, down_for: Duration) -> anyhow::Result<()> {
        let index = self.processes.iter().position(|p| p.name == name).context("no such process")?;
        self.sample_one(index);
        let process = &mut self.processes[index];
        if let Some(mut child) = process.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        process.cpu_past += process.cpu_now;
        process.cpu_now = 0.0;
        process.restarts += 1;
        tokio::time::sleep(down_for).await;
        self.spawn(index)?;
        if name == "store" {
            wait_for_port(store_port(&self.plan.store)?, Duration::from_secs(30)).await?;
        }
        Ok(())
    }

    /// Names of processes that exited by themselves (a crash the harness did not cause).
    pub fn exited(&mut self) -> Vec<String> {
        let mut exited = Vec::new();
        for process in &mut self.processes {
            if let Some(child) = &mut process.child
                && let Ok(Some(status)) = child.try_wait()
            {
                exited.push(format!("{} ({status})", process.name));
            }
        }
        exited
    }

    /// Reads every live process's memory and CPU.
    pub fn sample(&mut self) {
        for i in 0..self.processes.len() {
            self.sample_one(i);
        }
    }

    fn sample_one(&mut self, index: usize) {
        let process = &mut self.processes[index];
        let Some(pid) = process.child.as_ref().map(Child::id) else { return };
        if let Some(rss) = rss_mb(pid) {
            process.peak_rss_mb = process.peak_rss_mb.max(rss);
            process.rss_sum_mb += rss;
            process.samples += 1;
        }
        if let Some(cpu) = cpu_secs(pid) {
            process.cpu_now = cpu;
        }
    }

    /// Memory and CPU of each process so far.
    pub fn usage(&self) -> Vec<RoleUsage> {
        let wall = self.started.elapsed().as_secs_f64().max(0.001);
        self.processes
            .iter()
            .map(|p| RoleUsage {
                name: p.name.to_owned(),
                restarts: p.restarts,
                peak_rss_mb: p.peak_rss_mb,
                mean_rss_mb: if p.samples == 0 { 0.0 } else { p.rss_sum_mb / p.samples as f64 },
                cpu_secs: p.cpu_past + p.cpu_now,
                cpu_cores: (p.cpu_past + p.cpu_now) / wall,
            })
            .collect()
    }

    /// Stops every role gracefully, SIGKILL after a grace period; a store
    /// the deployment started stays up for the last reads.
    pub async fn stop_roles(&mut self) {
        self.sample();
        let grace = Instant::now() + Duration::from_secs(40);
        for process in self.processes.iter_mut().rev().filter(|p| p.name != "store") {
            if let Some(child) = &process.child {
                terminate(child.id());
            }
        }
        for process in self.processes.iter_mut().filter(|p| p.name != "store") {
            wait_or_kill(process, grace).await;
        }
    }

    /// SIGTERMs every process (the store last) and waits for them, then
    /// kills what is left.
    pub async fn stop(mut self) {
        self.stop_roles().await;
        for process in self.processes.iter_mut().filter(|p| p.name == "store") {
            if let Some(child) = &process.child {
                terminate(child.id());
            }
            wait_or_kill(process, Instant::now() + Duration::from_secs(10)).await;
        }
    }
}

impl Drop for Deployment {
    /// A harness that fails half-way leaves no process behind.
    fn drop(&mut self) {
        for process in &mut self.processes {
            if let Some(mut child) = process.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The port of the stand-in the harness runs, from its URI.
fn store_port(store: &StoreChoice) -> anyhow::Result<u16> {
    match store {
        StoreChoice::Mongodb { uri, .. } => uri
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .context("the stand-in URI has no port"),
        StoreChoice::Sqlite => bail!("SQLite has no store process"),
    }
}

async fn wait_or_kill(process: &mut Process, until: Instant) {
    let Some(mut child) = process.child.take() else { return };
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(role = process.name, "did not stop within its grace period; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

fn terminate(pid: u32) {
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
}

async fn wait_for_port(port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its closing
    // parenthesis are fixed: utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS)
}

/// The configuration every process reads. Leases and retry delays are
/// short so that the work of a killed process is taken over within
/// seconds, as a stress run of a minute needs.
fn config_toml(plan: &DeployPlan) -> String {
    let store = match &plan.store {
        StoreChoice::Sqlite => format!("backend = \"sqlite\"\npath = {:?}\n", path(&plan.dir.join("tern.db"))),
        StoreChoice::Mongodb { uri, database, .. } => {
            format!("backend = \"mongodb\"\nuri = {uri:?}\ndatabase = {database:?}\n")
        }
    };
    let lease = plan.lease_ms;
    let response_timeout = (lease / 4).max(500);
    format!(
        r#"[store]
{store}
[submission]
listen = "{http}"

[worker.mt]
lease_ms = {lease}

[worker.mo]
lease_ms = {lease}

[routing]
default = {{ connector = "sim" }}

[callbacks]
min_delay_ms = 200
max_delay_secs = 5
give_up_after_secs = 60

[scheduler]
lease_ms = 3000
repair_every_secs = 5

[connectors.sim]
host = "{smsc_host}"
port = {smsc_port}
window = 100
lease_ms = {lease}
response_timeout_ms = {response_timeout}
reconnect_min_ms = 100
reconnect_max_ms = 2000
retry_min_ms = 200
retry_max_ms = 5000
down_after_ms = 60000
drain_timeout_ms = 5000

[reporting]
database_url = {reports:?}
listen = "127.0.0.1:0"
poll_ms = 100
"#,
        http = plan.http,
        smsc_host = plan.smsc.ip(),
        smsc_port = plan.smsc.port(),
        reports = plan.reports_url,
    )
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_of_this_process_are_read_from_proc() {
        let pid = std::process::id();
        assert!(rss_mb(pid).unwrap() > 0.0);
        assert!(cpu_secs(pid).unwrap() >= 0.0);
        assert_eq!(rss_mb(u32::MAX), None);
    }
}
