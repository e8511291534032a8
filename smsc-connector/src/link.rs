//! A connector's binds: kept up, reconnected with backoff, and shared by
//! everything that sends.
//!
//! Each bind slot (one transceiver, or a transmitter and a receiver per
//! pair) reconnects on its own with exponential backoff and jitter, so a
//! flapping SMSC is not hammered and several slots do not reconnect in
//! lockstep. Sends go round-robin to the transmitting binds with room in
//! their window, through the connector's token bucket, and pause for a
//! moment when the SMSC says it is throttled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rusmpp::pdus::SubmitSm;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{BindMode, ConnectorConfig};
use crate::metrics;
use crate::session::{BindKind, InboundHandler, OpenError, RequestError, Session, SessionParams, SubmitResponse};

/// ESME_RTHROTTLED and ESME_RMSGQFUL: the SMSC asks us to slow down.
pub const THROTTLING: [u32; 2] = [0x58, 0x14];

/// A session that stayed up this long resets its slot's backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// First and longest pause of all sends after a throttling answer.
const THROTTLE_PAUSE_MIN: Duration = Duration::from_millis(50);
const THROTTLE_PAUSE_MAX: Duration = Duration::from_secs(5);

/// The binds of one connector.
#[derive(Debug)]
pub struct Link {
    name: String,
    config: ConnectorConfig,
    sessions: RwLock<Vec<Session>>,
    next: AtomicUsize,
    up: watch::Sender<usize>,
    limiter: Option<DefaultDirectRateLimiter>,
    throttle: Mutex<Throttle>,
}

#[derive(Debug, Default)]
struct Throttle {
    until: Option<Instant>,
    pause: Duration,
}

impl Link {
    /// Starts the bind slots; they run until `stop` is cancelled, then unbind
    /// after their windows drain. Await the returned set to know they are done.
    pub fn start(
        name: &str,
        config: &ConnectorConfig,
        inbound: Arc<dyn InboundHandler>,
        stop: CancellationToken,
    ) -> (Arc<Self>, JoinSet<()>) {
        let limiter =
            std::num::NonZeroU32::new(config.throughput).map(|rate| RateLimiter::direct(Quota::per_second(rate)));
        let link = Arc::new(Self {
            name: name.to_owned(),
            config: config.clone(),
            sessions: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
            up: watch::Sender::new(0),
            limiter,
            throttle: Mutex::new(Throttle::default()),
        });
        let kinds: &[BindKind] = match config.bind_mode {
            BindMode::Transceiver => &[BindKind::Transceiver],
            BindMode::Pair => &[BindKind::Transmitter, BindKind::Receiver],
        };
        let mut slots = JoinSet::new();
        for _ in 0..config.binds {
            for kind in kinds {
                slots.spawn(link.clone().keep_bound(*kind, inbound.clone(), stop.clone()));
            }
        }
        (link, slots)
    }

    /// Transmitting binds up now.
    pub fn binds_up(&self) -> usize {
        *self.up.borrow()
    }

    /// Waits until a transmitting bind is up.
    pub async fn wait_up(&self) {
        let mut up = self.up.subscribe();
        let _ = up.wait_for(|n| *n > 0).await;
    }

    /// A receiver of the number of transmitting binds up.
    pub fn watch_up(&self) -> watch::Receiver<usize> {
        self.up.subscribe()
    }

    /// Sends one `submit_sm` through a transmitting bind and waits for its
    /// response. Waits for the token bucket and any throttling pause first;
    /// when no bind is up within the response timeout, nothing is sent.
    pub async fn submit(&self, pdu: SubmitSm) -> Result<SubmitResponse, RequestError> {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        self.wait_out_throttling().await;
        let session = match self.pick() {
            Some(session) => session,
            None => {
                let timeout = Duration::from_millis(self.config.response_timeout_ms);
                if tokio::time::timeout(timeout, self.wait_up()).await.is_err() {
                    return Err(RequestError::NotSent);
                }
                self.pick().ok_or(RequestError::NotSent)?
            }
        };
        let response = session.submit(pdu).await;
        if let Ok(response) = &response {
            self.note_status(response.status);
        }
        response
    }

    /// Round robin over transmitting binds, preferring one with room in its window.
    fn pick(&self) -> Option<Session> {
        let sessions = self.sessions.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = sessions.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|i| &sessions[(start + i) % count])
            .find(|s| !s.is_closed() && s.available() > 0)
            .or_else(|| sessions.iter().find(|s| !s.is_closed()))
            .cloned()
    }

    async fn wait_out_throttling(&self) {
        let until = self.throttle.lock().ok().and_then(|t| t.until);
        if let Some(until) = until.filter(|u| *u > Instant::now()) {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    /// A throttling answer pauses every send, longer each time in a row; any
    /// other answer ends the streak.
    fn note_status(&self, status: u32) {
        let Ok(mut throttle) = self.throttle.lock() else { return };
        if THROTTLING.contains(&status) {
            ::metrics::counter!(metrics::THROTTLED, "connector" => self.name.clone()).increment(1);
            throttle.pause = (throttle.pause * 2).clamp(THROTTLE_PAUSE_MIN, THROTTLE_PAUSE_MAX);
            throttle.until = Some(Instant::now() + throttle.pause);
        } else if throttle.until.is_some() {
            *throttle = Throttle::default();
        }
    }

    fn params(&self, kind: BindKind) -> SessionParams {
        let c = &self.config;
        SessionParams {
            connector: self.name.clone(),
            address: format!("{}:{}", c.host, c.port),
            system_id: c.system_id.clone(),
            password: c.password.clone(),
            system_type: c.system_type.clone(),
            kind,
            window: c.window,
            response_timeout: Duration::from_millis(c.response_timeout_ms),
            enquire_link: Duration::from_secs(c.enquire_link_secs),
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
        }
    }

    /// One bind slot: binds, waits for the session to end, and binds again
    /// after a backoff, until `stop`.
    async fn keep_bound(self: Arc<Self>, kind: BindKind, inbound: Arc<dyn InboundHandler>, stop: CancellationToken) {
        let mut backoff = self.backoff();
        let labels = [("connector", self.name.clone()), ("kind", kind.as_str().to_owned())];
        while !stop.is_cancelled() {
            let opened = tokio::select! {
                opened = Session::open(self.params(kind), inbound.clone()) => opened,
                () = stop.cancelled() => break,
            };
            match opened {
                Ok((session, ended)) => {
                    ::metrics::counter!(metrics::BINDS, "connector" => self.name.clone(), "result" => "ok")
                        .increment(1);
                    ::metrics::gauge!(metrics::BINDS_UP, &labels).increment(1.0);
                    self.register(&session);
                    let started = Instant::now();
                    tokio::pin!(ended);
                    let reason = tokio::select! {
                        reason = &mut ended => reason.unwrap_or_else(|e| e.to_string()),
                        () = stop.cancelled() => {
                            self.deregister(&session);
                            session.unbind(Duration::from_millis(self.config.drain_timeout_ms)).await;
                            let _ = ended.await;
                            ::metrics::gauge!(metrics::BINDS_UP, &labels).decrement(1.0);
                            return;
                        }
                    };
                    self.deregister(&session);
                    ::metrics::gauge!(metrics::BINDS_UP, &labels).decrement(1.0);
                    tracing::warn!(connector = %self.name, kind = kind.as_str(), %reason, "link down; reconnecting");
                    if started.elapsed() >= STABLE_AFTER {
                        backoff = self.backoff();
                    }
                }
                Err(e) => {
                    let result = if matches!(e, OpenError::Refused(_)) { "refused" } else { "failed" };
                    ::metrics::counter!(metrics::BINDS, "connector" => self.name.clone(), "result" => result)
                        .increment(1);
                    tracing::warn!(connector = %self.name, kind = kind.as_str(), error = %e, "cannot bind");
                }
            }
            let wait = backoff.next().unwrap_or(Duration::from_millis(self.config.reconnect_max_ms));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => break,
            }
        }
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.config.reconnect_min_ms))
            .with_max_delay(Duration::from_millis(self.config.reconnect_max_ms))
            .with_jitter()
            .without_max_times()
            .build()
    }

    fn register(&self, session: &Session) {
        if !session.kind().transmits() {
            return;
        }
        let mut sessions = self.sessions.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.push(session.clone());
        self.up.send_replace(sessions.len());
    }

    fn deregister(&self, session: &Session) {
        if !session.kind().transmits() {
            return;
        }
        let mut sessions = self.sessions.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.retain(|s| !s.same(session));
        self.up.send_replace(sessions.len());
    }

    /// Drops every bind at once, as a broken network would (tests use it).
    pub fn sever(&self) {
        for session in self.sessions.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            session.abort();
        }
    }
}
