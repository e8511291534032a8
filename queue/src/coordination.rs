//! Coordination between processes through the store: leases that elect one
//! holder of a job (the scheduler, the callback dispatcher), and small
//! versioned settings documents (the routing table, checkpoints).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// A settings document as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The value, JSON.
    pub value: String,
    /// Incremented by every write, starting at 1.
    pub version: i64,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

/// What one backend implements. Callers use [`Coordination`].
#[async_trait]
pub trait CoordinationBackend: Send + Sync + fmt::Debug + 'static {
    /// Takes or renews the lease `name` for `holder` until `ttl` from now;
    /// `false` when another holder has an unexpired lease.
    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;
    /// Gives the lease up if `holder` has it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    /// The current holder of `name` and its expiry, if the lease is held.
    async fn lease_holder(&self, name: &str) -> Result<Option<(String, DateTime<Utc>)>>;
    /// One setting.
    async fn setting(&self, key: &str) -> Result<Option<Setting>>;
    /// Writes a setting; returns its new version.
    async fn put_setting(&self, key: &str, value: &str) -> Result<i64>;
}

/// Leases and settings, whatever the backend.
#[derive(Debug, Clone)]
pub struct Coordination {
    backend: Arc<dyn CoordinationBackend>,
}

impl std::ops::Deref for Coordination {
    type Target = dyn CoordinationBackend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl Coordination {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn CoordinationBackend>) -> Self {
        Self { backend }
    }
}
