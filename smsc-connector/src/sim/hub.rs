//! State the connections share: the live config, counters, the ledger of
//! accepted messages, and which binds of each system_id can take receipts
//! and MOs — with the deliveries stored while none can, as an SMSC keeps
//! them while the ESME is away.
//!
//! Locks here are std mutexes held for a few map operations, never across
//! an await.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::config::SimConfig;
use super::ledger::Ledger;
use super::outbox::Delivery;
use super::stats::Stats;

/// What a connection is told to do from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Drop the link without an unbind.
    Disconnect,
    /// Unbind politely, then close.
    Unbind,
}

/// Deliveries handed to a connection that can receive them.
pub(crate) type Inbound = Vec<(Instant, Delivery)>;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Hub {
    config: RwLock<Arc<SimConfig>>,
    config_version: AtomicU64,
    pub(crate) stats: Stats,
    next_message: AtomicU64,
    ledger: Mutex<Ledger>,
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    next_connection: u64,
    connections: HashMap<u64, UnboundedSender<Control>>,
    systems: HashMap<Arc<str>, System>,
}

/// The receiving side of one system_id.
#[derive(Debug, Default)]
struct System {
    receivers: Vec<(u64, UnboundedSender<Inbound>)>,
    /// Round-robin cursor over `receivers`.
    turn: usize,
    stored: VecDeque<(Instant, Delivery)>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the simulator down with it; the
    // state behind these locks stays consistent between statements.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    pub(crate) fn new(config: SimConfig) -> Self {
        // Ids continue from a random point so that the ids of two runs (or
        // two simulators in one test process) do not meet.
        let start = rand::random::<u64>() >> 28;
        Self {
            config: RwLock::new(Arc::new(config)),
            config_version: AtomicU64::new(0),
            stats: Stats::default(),
            next_message: AtomicU64::new(start),
            ledger: Mutex::new(Ledger::default()),
            registry: Mutex::new(Registry::default()),
        }
    }

    pub(crate) fn config(&self) -> Arc<SimConfig> {
        self.config.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Bumped on every change, so that connections re-read the config
    /// only when it changed: one atomic load per PDU instead of a lock.
    pub(crate) fn config_version(&self) -> u64 {
        self.config_version.load(Ordering::Acquire)
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut SimConfig)) {
        let mut guard = self.config.write().unwrap_or_else(PoisonError::into_inner);
        let mut config = SimConfig::clone(&guard);
        change(&mut config);
        *guard = Arc::new(config);
        self.config_version.fetch_add(1, Ordering::AcqRel);
    }

    /// A number no other message of this simulator has.
    pub(crate) fn next_message_number(&self) -> u64 {
        self.next_message.fetch_add(1, Ordering::Relaxed)
    }

    /// Records an accepted message; whether it repeats an earlier one.
    pub(crate) fn accept(&self, record: super::ledger::Record, digest: u128, max_recorded: usize) -> bool {
        lock(&self.ledger).accept(record, digest, max_recorded)
    }

    pub(crate) fn submitted(&self) -> Vec<super::ledger::Submitted> {
        lock(&self.ledger).submitted()
    }

    pub(crate) fn duplicates(&self) -> Vec<super::ledger::Submitted> {
        lock(&self.ledger).duplicates()
    }

    pub(crate) fn register(&self, control: UnboundedSender<Control>) -> u64 {
        let mut registry = lock(&self.registry);
        registry.next_connection += 1;
        let id = registry.next_connection;
        registry.connections.insert(id, control);
        id
    }

    pub(crate) fn unregister(&self, connection: u64) {
        lock(&self.registry).connections.remove(&connection);
    }

    /// Tells every connection to do `control`.
    pub(crate) fn broadcast(&self, control: Control) {
        for sender in lock(&self.registry).connections.values() {
            let _ = sender.send(control);
        }
    }

    pub(crate) fn connection_count(&self) -> usize {
        lock(&self.registry).connections.len()
    }

    /// Makes a bind a receiver of its system_id's receipts and MOs; returns
    /// those stored while none was bound.
    pub(crate) fn add_receiver(
        &self,
        system_id: &Arc<str>,
        connection: u64,
        inbound: UnboundedSender<Inbound>,
    ) -> Inbound {
        let mut registry = lock(&self.registry);
        let system = registry.systems.entry(system_id.clone()).or_default();
        system.receivers.push((connection, inbound));
        let stored: Inbound = system.stored.drain(..).collect();
        Stats::sub(&self.stats.stored, stored.len() as u64);
        stored
    }

    pub(crate) fn remove_receiver(&self, system_id: &str, connection: u64) {
        if let Some(system) = lock(&self.registry).systems.get_mut(system_id) {
            system.receivers.retain(|(id, _)| *id != connection);
        }
    }

    /// Hands deliveries to the receiving binds of `system_id`, in turn, or
    /// stores them until one binds.
    pub(crate) fn route(&self, system_id: &Arc<str>, deliveries: Inbound) {
        if deliveries.is_empty() {
            return;
        }
        let max_stored = self.config().max_stored;
        let mut registry = lock(&self.registry);
        let system = registry.systems.entry(system_id.clone()).or_default();
        let mut pending = Some(deliveries);
        while let Some(batch) = pending.take() {
            if system.receivers.is_empty() {
                let room = max_stored.saturating_sub(system.stored.len());
                let kept = batch.len().min(room);
                Stats::add(&self.stats.stored, kept as u64);
                Stats::add(&self.stats.stored_dropped, (batch.len() - kept) as u64);
                system.stored.extend(batch.into_iter().take(kept));
                break;
            }
            system.turn = (system.turn + 1) % system.receivers.len();
            let (_, sender) = &system.receivers[system.turn];
            if let Err(returned) = sender.send(batch) {
                // The connection is closing; it hands back what it holds
                // once it has left the registry, so try the next one.
                let turn = system.turn;
                system.receivers.remove(turn);
                pending = Some(returned.0);
            }
        }
    }

    /// Hands deliveries to a receiving bind of `system_id`; gives them
    /// back when there is none.
    pub(crate) fn send_to_receiver(&self, system_id: &str, deliveries: Inbound) -> Result<(), Inbound> {
        let mut registry = lock(&self.registry);
        let Some(system) = registry.systems.get_mut(system_id) else { return Err(deliveries) };
        let mut deliveries = deliveries;
        while !system.receivers.is_empty() {
            system.turn = (system.turn + 1) % system.receivers.len();
            match system.receivers[system.turn].1.send(deliveries) {
                Ok(()) => return Ok(()),
                Err(returned) => {
                    let turn = system.turn;
                    system.receivers.remove(turn);
                    deliveries = returned.0;
                }
            }
        }
        Err(deliveries)
    }
}
