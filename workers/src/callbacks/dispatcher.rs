//! Tails the journal (one leader at a time) and queues a status callback
//! for every event that changes a message's status, to the message's
//! callback URL or else its account's default. The checkpoint is stored
//! after the entries are published; a restart republishes at most one read's
//! worth, and publishing is idempotent per event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tern_core::{AccountId, Event, EventKind, MessageId, MessageStatus};
use tern_handlers::Outbound;
use tern_handlers::webhook::{CALLBACKS_TOPIC, WebhookEntry};
use tern_queue::{NewEntry, Position, Store};
use tokio::sync::watch;

use crate::WorkerError;
use crate::leader::Leadership;

/// Settings key of the dispatcher's journal position.
pub const CHECKPOINT_SETTING: &str = "checkpoint/callbacks";
/// Journal records read per step.
const READ: usize = 1_000;
/// How long an account's default callback URL is trusted.
const ACCOUNT_TTL: Duration = Duration::from_secs(5);

/// The body of a status callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCallback {
    /// Always `message.status`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The event's id (also in `Tern-Event-Id`; the same on every retry).
    pub id: String,
    /// The message.
    pub message_id: String,
    /// Its status after the event.
    pub status: MessageStatus,
    /// Its status before.
    pub previous_status: Option<MessageStatus>,
    /// The event's type (`routed`, `delivery_report`...).
    pub event: &'static str,
    /// When it happened (RFC 3339).
    pub at: String,
    /// Destination.
    pub to: String,
    /// Sender id.
    pub from: String,
    /// The customer's reference.
    pub client_ref: Option<String>,
    /// Batch.
    pub batch_id: Option<String>,
    /// Why it failed or was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<CallbackError>,
}

/// The reason in a failure callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallbackError {
    /// Machine-readable code.
    pub code: String,
    /// Human-readable detail.
    pub detail: String,
}

/// Events that may move a message's status (the accept itself is answered synchronously).
fn may_change_status(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Scheduled { .. }
            | EventKind::Released
            | EventKind::Routed { .. }
            | EventKind::SubmittedToSmsc { .. }
            | EventKind::DeliveryReport { .. }
            | EventKind::Expired
            | EventKind::Rejected { .. }
            | EventKind::Cancelled { .. }
            | EventKind::Failed { .. }
            | EventKind::SmscRejected { .. }
            | EventKind::DeadLettered { .. }
    )
}

fn error_of(kind: &EventKind) -> Option<CallbackError> {
    let (code, detail) = match kind {
        EventKind::Rejected { code, detail } | EventKind::Failed { code, detail, .. } => (code.clone(), detail.clone()),
        EventKind::SmscRejected { command_status, .. } => {
            ("smsc_rejected".into(), format!("the SMSC refused it with status 0x{command_status:08X}"))
        }
        EventKind::DeadLettered { last_error, attempts, .. } => {
            ("dead_lettered".into(), format!("given up after {attempts} attempts: {last_error}"))
        }
        _ => return None,
    };
    Some(CallbackError { code, detail })
}

/// The journal tailer.
#[derive(Debug)]
pub struct Dispatcher {
    store: Store,
    leadership: Leadership,
    defaults: HashMap<AccountId, (Option<String>, Instant)>,
}

impl Dispatcher {
    /// A dispatcher that works while `leadership` leads.
    pub fn new(store: Store, leadership: Leadership) -> Self {
        Self { store, leadership, defaults: HashMap::new() }
    }

    /// Dispatches until `shutdown`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            let wait = if !self.leadership.is_leader() {
                Duration::from_millis(500)
            } else {
                match self.step().await {
                    Ok(0) => Duration::from_millis(50),
                    Ok(_) => {
                        failures = 0;
                        Duration::ZERO
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let wait = Duration::from_millis(100 * 2u64.saturating_pow(failures.min(7)));
                        tracing::warn!(error = %e, retry_in = ?wait, "callback dispatch failed");
                        wait
                    }
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Reads one batch of the journal and queues its callbacks; returns how
    /// many records it read.
    pub async fn step(&mut self) -> Result<usize, WorkerError> {
        let coordination = self.store.coordination().clone();
        let Some(setting) = coordination.setting(CHECKPOINT_SETTING).await? else {
            // First start: status changes from now on, not the whole history.
            let head = self.store.journal().head().await?;
            coordination.put_setting(CHECKPOINT_SETTING, &head.0.to_string()).await?;
            return Ok(0);
        };
        let after = setting.value.parse::<u64>().map_err(|e| anyhow::anyhow!("bad callbacks checkpoint: {e}"))?;
        let records = self.store.journal().read_from(Position(after), READ).await?;
        let Some(last) = records.last().map(|r| r.position) else { return Ok(0) };
        let candidates: Vec<&Event> = records.iter().map(|r| &r.event).filter(|e| may_change_status(&e.kind)).collect();
        let mut ids: Vec<MessageId> = candidates.iter().map(|e| e.message_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut histories: HashMap<MessageId, Vec<Event>> = HashMap::new();
        for event in self.store.journal().messages_events(&ids).await? {
            histories.entry(event.message_id).or_default().push(event);
        }
        let mut entries = Vec::new();
        for event in candidates {
            let Some(history) = histories.get(&event.message_id) else { continue };
            if let Some(entry) = self.callback(event, history).await? {
                entries.push(NewEntry::new(entry.entry_id(), serde_json::to_vec(&entry).map_err(anyhow::Error::from)?));
            }
        }
        self.store.queue().producer(CALLBACKS_TOPIC).publish(entries).await?;
        coordination.put_setting(CHECKPOINT_SETTING, &last.0.to_string()).await?;
        Ok(records.len())
    }

    async fn callback(&mut self, event: &Event, history: &[Event]) -> Result<Option<WebhookEntry>, WorkerError> {
        let Some(message) = history.iter().find_map(|e| Outbound::from_kind(&e.kind)) else { return Ok(None) };
        let Some(account) = event.account_id.or_else(|| history.iter().find_map(|e| e.account_id)) else {
            return Ok(None);
        };
        let url = match message.callback_url.clone() {
            Some(url) => Some(url),
            None => self.default_url(account).await?,
        };
        let Some(url) = url else { return Ok(None) };
        let (before, after) = status_change(event, history);
        let Some(status) = after.filter(|after| Some(*after) != before) else { return Ok(None) };
        let body = StatusCallback {
            kind: "message.status",
            id: event.id.to_string(),
            message_id: event.message_id.to_string(),
            status,
            previous_status: before,
            event: event.kind.type_name(),
            at: rfc3339(event.at),
            to: message.to,
            from: message.from,
            client_ref: message.client_ref,
            batch_id: message.batch_id.map(|b| b.to_string()),
            error: error_of(&event.kind),
        };
        Ok(Some(WebhookEntry {
            account_id: account,
            message_id: event.message_id,
            event_id: event.id,
            url,
            body: serde_json::to_string(&body).map_err(anyhow::Error::from)?,
            first_at: event.at,
        }))
    }

    async fn default_url(&mut self, account: AccountId) -> Result<Option<String>, WorkerError> {
        if let Some((url, at)) = self.defaults.get(&account)
            && at.elapsed() < ACCOUNT_TTL
        {
            return Ok(url.clone());
        }
        let url = self.store.accounts().account(account).await?.and_then(|a| a.callback_url);
        self.defaults.insert(account, (url.clone(), Instant::now()));
        Ok(url)
    }
}

/// The message's status just before and just after `event` reached the
/// journal: the fold of the events journaled before it, then with it
/// (`history` is in journal order). Not by the events' own times: a receipt
/// journaled late but stamped early (segments' receipts arriving out of
/// order) completes the message when it arrives, and its callback must say
/// so; by timestamps, the change would belong to a receipt already
/// dispatched, and no callback would ever report it.
fn status_change(event: &Event, history: &[Event]) -> (Option<MessageStatus>, Option<MessageStatus>) {
    match history.iter().position(|e| e.id == event.id) {
        Some(at) => (MessageStatus::fold(&history[..at]), MessageStatus::fold(&history[..=at])),
        // Not in the history read after it: cannot happen with an
        // append-only journal; judge it against the whole history.
        None => {
            let before = MessageStatus::fold(history);
            (before, MessageStatus::fold(history.iter().chain(std::iter::once(event))))
        }
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
