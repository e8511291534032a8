//! `Idempotency-Key`: the same key with the same request returns the first
//! response (for the configured time, 24 h by default); with a different
//! request it answers 422.
//!
//! The first request stores its *plan* (the ids and timestamp it will use)
//! before writing anything. A retry of a request that never finished (the
//! process died, the client timed out) redoes the same plan: the message and
//! event ids are the same, so the accept is a no-op where it had gone
//! through, and completes where it had not. No copy, no lost message.

use actix_web::HttpRequest;
use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tern_queue::{Begin, IdempotencyRecord};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// The header.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// What an earlier request with the same key settles, before any check
/// that depends on the time or on rate limits: a retry must get the first
/// answer even when its `send_at` has passed or the account is at its limit.
#[derive(Debug)]
pub enum Earlier<P> {
    /// The key is new: check, rate-limit, then [`begin`].
    None,
    /// Answer the stored response.
    Replay { status: u16, body: String },
    /// The first attempt never finished: redo its plan (no new rate charge).
    Redo { key: String, plan: P },
}

/// Looks the key up; writes nothing.
pub async fn earlier<P: DeserializeOwned>(
    state: &AppState,
    caller: &Caller,
    key: &str,
    hash: &str,
) -> ApiResult<Earlier<P>> {
    let expire_before = Utc::now() - crate::compose::secs(state.config.idempotency_ttl_secs);
    let Some(record) = state.store.accounts().find_request(caller.id(), key, expire_before).await? else {
        return Ok(Earlier::None);
    };
    settle(key, hash, record).map(|step| match step {
        Step::Replay { status, body } => Earlier::Replay { status, body },
        Step::Run { key, plan } => Earlier::Redo { key, plan },
    })
}

fn settle<P: DeserializeOwned>(key: &str, hash: &str, existing: IdempotencyRecord) -> ApiResult<Step<P>> {
    if existing.request_hash != hash {
        return Err(ApiError::IdempotencyMismatch(format!(
            "Idempotency-Key {key:?} was used at {} with a different request; use a new key for a new request",
            existing.created_at.to_rfc3339()
        )));
    }
    match existing.response {
        Some((status, body)) => Ok(Step::Replay { status, body }),
        None => {
            let plan = serde_json::from_str(&existing.plan).map_err(anyhow::Error::from)?;
            Ok(Step::Run { key: key.to_owned(), plan })
        }
    }
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Step<P> {
    /// Run the plan (new, or an unfinished earlier attempt); then call [`finish`].
    Run { key: String, plan: P },
    /// Answer the stored response.
    Replay { status: u16, body: String },
}

/// The request's key, checked: 1 to 255 visible ASCII characters.
pub fn key_of(req: &HttpRequest) -> ApiResult<Option<String>> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(|k| Some(k.to_owned()))
        .ok_or_else(|| ApiError::field(IDEMPOTENCY_KEY, "Idempotency-Key must be 1 to 255 visible ASCII characters"))
}

/// Hash of what makes two requests "the same": method, path, query, the
/// account acted for, content type and body.
pub fn request_hash(req: &HttpRequest, caller: &Caller, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    for part in [req.method().as_str(), req.path(), req.query_string()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.update(caller.id().to_string().as_bytes());
    let content_type = req.headers().get("content-type").map(|v| v.as_bytes()).unwrap_or_default();
    hash.update(content_type);
    hash.update([0]);
    hash.update(body);
    hex::encode(hash.finalize())
}

/// Registers the key with `plan`, or finds what an earlier request did.
pub async fn begin<P: Serialize + DeserializeOwned>(
    state: &AppState,
    caller: &Caller,
    key: String,
    hash: String,
    plan: P,
) -> ApiResult<Step<P>> {
    let now = Utc::now();
    let ttl = crate::compose::secs(state.config.idempotency_ttl_secs);
    let record = IdempotencyRecord {
        request_hash: hash.clone(),
        plan: serde_json::to_string(&plan).map_err(anyhow::Error::from)?,
        response: None,
        created_at: now,
    };
    match state.store.accounts().begin_request(caller.id(), &key, &record, now - ttl).await? {
        Begin::Started => Ok(Step::Run { key, plan }),
        // A twin request registered the key between our lookup and now.
        Begin::Existing(existing) => settle(&key, &hash, existing),
    }
}

/// Stores the response of a request run under `key`.
pub async fn finish(state: &AppState, caller: &Caller, key: &str, status: u16, body: &str) -> ApiResult<()> {
    state.store.accounts().finish_request(caller.id(), key, status, body).await?;
    Ok(())
}
