//! Per-account rate limits: requests per second and messages per second.
//!
//! Token buckets (one second of burst) that may go into debt: a batch larger
//! than the burst is admitted when the bucket is full and then holds the
//! account back until the debt is paid, so a 10,000-recipient batch on a
//! 1,000 msg/s account is possible but costs ten seconds. governor's GCRA
//! refuses any cell count above the burst outright, hence this small type.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use tern_core::AccountId;
use tern_queue::RateLimits;

use crate::error::ApiError;

#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self { rate, tokens: rate, at: Instant::now() }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at = now;
    }

    /// Seconds until `n` could be taken, or 0 if they can now.
    fn wait_for(&self, n: f64) -> f64 {
        let needed = n.min(self.rate);
        if self.tokens >= needed { 0.0 } else { (needed - self.tokens) / self.rate }
    }
}

#[derive(Debug)]
struct Buckets {
    limits: RateLimits,
    requests: Bucket,
    messages: Bucket,
}

/// The buckets of every account seen.
#[derive(Debug, Default)]
pub struct RateLimiter {
    accounts: Mutex<HashMap<AccountId, Buckets>>,
}

impl RateLimiter {
    /// Takes one request from the account's request bucket, or answers 429
    /// with the seconds to wait.
    pub fn check_request(&self, account: AccountId, limits: RateLimits) -> Result<(), ApiError> {
        self.take(
            account,
            limits,
            |b| &mut b.requests,
            1,
            || format!("{} requests per second", limits.requests_per_second),
        )
    }

    /// Takes `messages` from the account's message bucket; a refused request takes nothing.
    pub fn check_messages(&self, account: AccountId, limits: RateLimits, messages: u64) -> Result<(), ApiError> {
        self.take(
            account,
            limits,
            |b| &mut b.messages,
            messages,
            || format!("{} messages per second", limits.messages_per_second),
        )
    }

    fn take(
        &self,
        account: AccountId,
        limits: RateLimits,
        bucket: impl FnOnce(&mut Buckets) -> &mut Bucket,
        n: u64,
        what: impl FnOnce() -> String,
    ) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = || Buckets {
            limits,
            requests: Bucket::new(limits.requests_per_second),
            messages: Bucket::new(limits.messages_per_second),
        };
        let buckets = accounts.entry(account).or_insert_with(fresh);
        if buckets.limits != limits {
            *buckets = fresh();
        }
        let bucket = bucket(buckets);
        bucket.refill(now);
        // Precision loss only matters beyond 2^53 messages.
        #[allow(clippy::cast_precision_loss)]
        let n = n as f64;
        let wait = bucket.wait_for(n);
        if wait <= 0.0 {
            bucket.tokens -= n;
            return Ok(());
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let retry_after_secs = wait.ceil().max(1.0) as u64;
        Err(ApiError::RateLimited {
            detail: format!("account {account} is limited to {}; retry in {retry_after_secs} s", what()),
            retry_after_secs,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_beyond_the_burst_are_refused_with_a_wait() {
        let limiter = RateLimiter::default();
        let account = AccountId::new();
        let limits = RateLimits { requests_per_second: 3, messages_per_second: 1_000 };
        for _ in 0..3 {
            limiter.check_request(account, limits).unwrap();
        }
        let err = limiter.check_request(account, limits).unwrap_err();
        assert!(matches!(err, ApiError::RateLimited { retry_after_secs: 1, .. }), "{err:?}");
        limiter.check_request(AccountId::new(), limits).unwrap();
    }

    #[test]
    fn a_batch_above_the_burst_goes_into_debt() {
        let limiter = RateLimiter::default();
        let account = AccountId::new();
        let limits = RateLimits { requests_per_second: 100, messages_per_second: 10 };
        limiter.check_messages(account, limits, 50).unwrap();
        let err = limiter.check_messages(account, limits, 1).unwrap_err();
        let ApiError::RateLimited { retry_after_secs, .. } = err else { panic!("{err:?}") };
        assert!(retry_after_secs >= 4, "40 messages of debt at 10/s: {retry_after_secs}");
    }
}
