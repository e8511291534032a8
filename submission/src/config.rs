//! The `[submission]` section of Tern's configuration.

use std::net::SocketAddr;

use serde::Deserialize;

/// Settings of the submission role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubmissionConfig {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Bearer token of the admin API (`TERN_ADMIN_TOKEN` overrides it). The
    /// admin API answers 401 to everything while it is unset.
    pub admin_token: Option<String>,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// Largest JSON body of a single request, in bytes.
    pub max_json_bytes: usize,
    /// Largest batch body (JSON or CSV), in bytes.
    pub max_batch_bytes: usize,
    /// Most recipients in one batch.
    pub max_batch_recipients: usize,
    /// Most SMS segments in one message.
    pub max_segments: u16,
    /// Validity of a message that names none, in seconds.
    pub default_validity_secs: u64,
    /// Longest validity a message may ask for, in seconds.
    pub max_validity_secs: u64,
    /// Farthest in the future a message may be scheduled, in seconds.
    pub max_schedule_ahead_secs: u64,
    /// How long an `Idempotency-Key` is remembered, in seconds.
    pub idempotency_ttl_secs: u64,
    /// How long an authenticated key is trusted before it is looked up again,
    /// in milliseconds (revocations by another process take this long).
    pub auth_cache_ms: u64,
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            workers: 0,
            max_json_bytes: 64 * 1024,
            max_batch_bytes: 32 * 1024 * 1024,
            max_batch_recipients: 100_000,
            max_segments: 10,
            default_validity_secs: 48 * 3600,
            max_validity_secs: 7 * 24 * 3600,
            max_schedule_ahead_secs: 365 * 24 * 3600,
            idempotency_ttl_secs: 24 * 3600,
            auth_cache_ms: 2_000,
        }
    }
}
