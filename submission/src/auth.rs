//! API keys and who is calling: `Authorization: Bearer <key>` for accounts
//! (with `Tern-On-Behalf-Of` for a reseller acting for a sub-account), and
//! the admin token for `/admin/v1`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures::future::LocalBoxFuture;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tern_core::AccountId;
use tern_queue::{Account, ApiKeyRecord};

use crate::AppState;
use crate::error::ApiError;

/// Header a reseller names the sub-account it acts for in.
pub const ON_BEHALF_OF: &str = "Tern-On-Behalf-Of";

const KEY_PREFIX: &str = "tern_";

/// A freshly made key: the secret shown once, and what is stored.
#[derive(Debug)]
pub struct NewKey {
    /// The whole key, given to the customer once.
    pub secret: String,
    /// What the store keeps.
    pub record: ApiKeyRecord,
}

/// Makes a key for `account`: `tern_<id>_<secret>`, 128 random bits of
/// secret, stored as a SHA-256 (a slow hash buys nothing for random keys).
pub fn new_key(account: AccountId, name: Option<String>) -> NewKey {
    let mut rng = rand::rng();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 16];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let key = format!("{KEY_PREFIX}{id}_{}", hex::encode(secret));
    let record = ApiKeyRecord {
        id,
        account_id: account,
        secret_hash: hash_key(&key),
        name,
        created_at: chrono::Utc::now(),
        revoked_at: None,
    };
    NewKey { secret: key, record }
}

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The key id of a well-formed key.
fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && secret.len() == 32).then_some(id)
}

/// The bearer token of a request.
fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("the Authorization header is missing; send `Bearer <key>`".into()))?;
    let value =
        value.to_str().map_err(|_| ApiError::Unauthorized("the Authorization header is not valid ASCII".into()))?;
    // The scheme is case-insensitive (RFC 7235).
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be `Bearer <key>`".into()))?;
    if token.is_empty() {
        return Err(ApiError::Unauthorized("the bearer token is empty".into()));
    }
    Ok(token)
}

/// Authenticated accounts, remembered briefly so a hot key costs no lookup.
/// Revocation and suspension through this process evict at once; through
/// another process they take at most the cache's lifetime.
#[derive(Debug)]
pub struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<Account>)>>,
}

impl AuthCache {
    /// A cache trusting entries for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn get(&self, key: &str) -> Option<Arc<Account>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, a)| a.clone())
    }

    fn put(&self, key: &str, account: Arc<Account>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() > 100_000 {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        entries.insert(key.to_owned(), (Instant::now(), account));
    }

    /// Forgets everything (after a revocation or suspension).
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

async fn authenticate(state: &AppState, key: &str) -> Result<Arc<Account>, ApiError> {
    if let Some(account) = state.auth.get(key) {
        return Ok(account);
    }
    let invalid = || ApiError::Unauthorized("the API key is not valid".into());
    let id = key_id(key).ok_or_else(invalid)?;
    let record = state.store.accounts().key(id).await?.ok_or_else(invalid)?;
    if record.secret_hash != hash_key(key) {
        return Err(invalid());
    }
    if record.revoked_at.is_some() {
        return Err(ApiError::Unauthorized("the API key has been revoked".into()));
    }
    let account = state.store.accounts().account(record.account_id).await?.ok_or_else(invalid)?;
    let account = Arc::new(account);
    state.auth.put(key, account.clone());
    Ok(account)
}

/// The account a request acts as: the key's own, or the sub-account a
/// reseller names in `Tern-On-Behalf-Of`.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account acted for; every read and write is scoped to it.
    pub account: Arc<Account>,
    /// The account whose key authenticated the request.
    pub key_account: AccountId,
}

impl Caller {
    /// The account acted for.
    pub fn id(&self) -> AccountId {
        self.account.id
    }
}

async fn caller(req: HttpRequest) -> Result<Caller, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("the app state is not configured")))?;
    let key = bearer(&req)?;
    let own = authenticate(state, key).await?;
    if own.suspended {
        return Err(ApiError::Forbidden(format!("account {} is suspended", own.id)));
    }
    // Limits are the key's account's: a reseller's sub-accounts share its budget of requests.
    state.limiter.check_request(own.id, own.limits)?;
    let Some(target) = req.headers().get(ON_BEHALF_OF) else {
        return Ok(Caller { key_account: own.id, account: own });
    };
    let target: AccountId = target
        .to_str()
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| ApiError::field(ON_BEHALF_OF, format!("{ON_BEHALF_OF} must be an account id (a UUID)")))?;
    if target == own.id {
        return Ok(Caller { key_account: own.id, account: own });
    }
    let not_yours = || ApiError::Forbidden(format!("account {target} is not a sub-account of {}", own.id));
    let sub = state.store.accounts().account(target).await?.ok_or_else(not_yours)?;
    if sub.parent_id != Some(own.id) {
        return Err(not_yours());
    }
    if sub.suspended {
        return Err(ApiError::Forbidden(format!("account {target} is suspended")));
    }
    Ok(Caller { key_account: own.id, account: Arc::new(sub) })
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(caller(req.clone()))
    }
}

/// Proof that a request carries the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(admin(req))
    }
}

fn admin(req: &HttpRequest) -> Result<Admin, ApiError> {
    let expected = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.admin_token.clone())
        .ok_or_else(|| ApiError::Unauthorized("the admin API is disabled: no admin token is configured".into()))?;
    let token = bearer(req)?;
    // Compare digests so the comparison time says nothing about the token.
    if Sha256::digest(token.as_bytes()) != Sha256::digest(expected.as_bytes()) {
        return Err(ApiError::Unauthorized("the admin token is not valid".into()));
    }
    Ok(Admin)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_well_formed_and_only_their_hash_is_stored() {
        let account = AccountId::new();
        let key = new_key(account, None);
        assert_eq!(key_id(&key.secret), Some(key.record.id.as_str()));
        assert_ne!(key.record.secret_hash, key.secret);
        assert_eq!(key.record.secret_hash, hash_key(&key.secret));
        assert_eq!(key_id("tern_short_x"), None);
        assert_eq!(key_id("nope"), None);
    }
}
