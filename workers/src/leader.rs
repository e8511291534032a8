//! Leader election through a lease in the store: any number of processes
//! may run a job; the one holding the lease does it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tern_queue::Store;
use tokio::sync::watch;

use crate::metrics;

/// A process's claim on one job.
#[derive(Debug, Clone)]
pub struct Leadership {
    store: Store,
    job: String,
    holder: String,
    ttl: Duration,
    leading: Arc<AtomicBool>,
}

impl Leadership {
    /// A claim on `job` by a holder unique to this process and call.
    pub fn new(store: Store, job: impl Into<String>, ttl: Duration) -> Self {
        let holder = format!("{}/{}", std::process::id(), uuid::Uuid::new_v4());
        Self { store, job: job.into(), holder, ttl, leading: Arc::default() }
    }

    /// Whether this process held the lease at its last renewal. A holder
    /// renews at a third of the lease, so it stops leading before anyone
    /// else can take over.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Tries to take or renew the lease once.
    pub async fn renew(&self) -> bool {
        let leading = match self.store.coordination().try_lease(&self.job, &self.holder, self.ttl).await {
            Ok(leading) => leading,
            Err(e) => {
                tracing::warn!(job = %self.job, error = %e, "cannot renew the lease; not leading until it can");
                false
            }
        };
        let was = self.leading.swap(leading, Ordering::AcqRel);
        if was != leading {
            tracing::info!(job = %self.job, leading, "leadership changed");
        }
        ::metrics::gauge!(metrics::LEADER, "job" => self.job.clone()).set(if leading { 1.0 } else { 0.0 });
        leading
    }

    /// Renews every third of the lease until `shutdown`, then gives the lease up.
    pub async fn keep(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => { self.renew().await; }
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        self.leading.store(false, Ordering::Release);
        if let Err(e) = self.store.coordination().release_lease(&self.job, &self.holder).await {
            tracing::warn!(job = %self.job, error = %e, "cannot release the lease; it will expire");
        }
    }
}
