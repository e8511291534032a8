//! An SMSC simulator: an SMPP 3.4 server for development, tests and stress
//! runs (`tern smsc-sim`).
//!
//! It checks credentials on bind, answers `submit_sm` (and `data_sm`) with
//! message ids, sends delivery receipts after a random delay with a
//! configurable mix of outcomes, answers a share of delivered messages
//! with an MO from the handset, and injects faults on demand: throttling,
//! permanent rejections, slow and lost responses, dropped links, receipts
//! ahead of their response. Receipts and MOs are delivered at least once:
//! kept until a `deliver_sm_resp` with status 0, sent again after a
//! refusal or a timeout, and stored while no bind of the system_id can
//! take them.
//!
//! Each connection is a session task and a writer task; receipts due later
//! wait in the session's timer heap. [`SimHandle::stats`],
//! [`SimHandle::submitted`] and [`SimHandle::duplicates`] tell tests what
//! happened.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use tern_smsc_connector::sim::{SimConfig, Simulator};
//!
//! let sim = Simulator::start(SimConfig { listen: "127.0.0.1:0".parse().unwrap(), ..SimConfig::default() }).await?;
//! let address = sim.local_addr(); // bind "tern" / "secret" here
//! sim.update(|config| config.throttle_share = 0.5);
//! // ...
//! println!("{:?}", sim.stats());
//! sim.stop().await;
//! # Ok(())
//! # }
//! ```

mod config;
mod connection;
mod hub;
mod ledger;
mod outbox;
mod pdus;
mod stats;
mod submit;
mod udh;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{info, warn};

pub use config::{MessageIdForm, Outcomes, ReceiptForm, SimAccount, SimConfig};
pub use ledger::Submitted;
pub use stats::SimStats;

use hub::{Control, Hub};
use outbox::{Delivery, Kind};
use pdus::Address;

/// How long a stop waits for connections to unbind (each waits up to a
/// second for its `unbind_resp`) before cutting them.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Starts simulators.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Listens on `config.listen` and serves until [`SimHandle::stop`], or
    /// until every handle is dropped.
    pub async fn start(config: SimConfig) -> io::Result<SimHandle> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let hub = Arc::new(Hub::new(config));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&hub), stopped));
        info!(%local_addr, "SMSC simulator listening");
        Ok(SimHandle {
            hub,
            local_addr,
            lifetime: Arc::new(Lifetime { stop: Mutex::new(Some(stop)), task: Mutex::new(Some(task)) }),
        })
    }
}

/// Controls a running simulator; clones control the same one.
#[derive(Debug, Clone)]
pub struct SimHandle {
    hub: Arc<Hub>,
    local_addr: SocketAddr,
    lifetime: Arc<Lifetime>,
}

/// Dropped with the last handle, which stops the simulator.
#[derive(Debug)]
struct Lifetime {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl SimHandle {
    /// Where it listens (the port picked when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters now.
    pub fn stats(&self) -> SimStats {
        self.hub.stats.snapshot()
    }

    /// Every accepted message, in arrival order (up to
    /// [`SimConfig::max_recorded`]).
    pub fn submitted(&self) -> Vec<Submitted> {
        self.hub.submitted()
    }

    /// The accepted messages that repeat an earlier one (same source,
    /// destination, `short_message` and `message_payload`), in arrival
    /// order; each repeat is listed, the first occurrence is not.
    pub fn duplicates(&self) -> Vec<Submitted> {
        self.hub.duplicates()
    }

    /// Changes the behaviour from the next PDU on; `listen` and
    /// `accounts` changes apply to new binds only (`listen` not at all).
    pub fn update(&self, change: impl FnOnce(&mut SimConfig)) {
        self.hub.update(change);
    }

    /// The config in force.
    pub fn config(&self) -> SimConfig {
        SimConfig::clone(&self.hub.config())
    }

    /// Drops every connection now, without an unbind; clients see the link
    /// fail. Receipts and MOs owed to them wait for their next bind.
    pub fn disconnect_all(&self) {
        self.hub.broadcast(Control::Disconnect);
    }

    /// Sends an MO from handset `from` to `to` (a number or a sender id)
    /// over a receiving bind of `system_id`: one `deliver_sm`, or
    /// UDH-concatenated parts for a long text; GSM 7-bit or UCS-2 as the
    /// text needs. Fails when no such bind is up, or when the addresses or
    /// the text do not fit SMPP.
    pub async fn send_mo(&self, system_id: &str, from: &str, to: &str, text: &str) -> io::Result<()> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        let from = Address::handset(from).ok_or_else(|| invalid("the handset number does not fit an SMPP address"))?;
        let to = Address::service(to).ok_or_else(|| invalid("the destination does not fit an SMPP address"))?;
        let parts = pdus::mo_parts(&from, &to, text, rand::random())
            .ok_or_else(|| invalid("the text needs more than 255 parts"))?;
        let now = Instant::now();
        let deliveries = parts.into_iter().map(|pdu| (now, Delivery::new(pdu, Kind::Mo))).collect();
        self.hub.send_to_receiver(system_id, deliveries).map_err(|_| {
            io::Error::new(io::ErrorKind::NotConnected, format!("no bind of {system_id} can receive an MO"))
        })
    }

    /// Stops listening, unbinds every bind politely (waiting up to a second
    /// for each `unbind_resp`) and closes every connection.
    pub async fn stop(self) {
        let stop = self.lifetime.stop.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let task = self.lifetime.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn accept_loop(listener: TcpListener, hub: Arc<Hub>, mut stopped: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // A stop, or the last handle dropped.
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection::serve(Arc::clone(&hub), stream, peer));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait a little
                    // instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
    drop(listener);
    info!(connections = hub.connection_count(), "SMSC simulator stopping");
    hub.broadcast(Control::Unbind);
    let drained = tokio::time::timeout(STOP_GRACE, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        connections.shutdown().await;
    }
}
