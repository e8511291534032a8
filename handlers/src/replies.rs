//! 2-way messaging: an inbound message is matched to the latest outbound
//! message its handset received from the number it replied to, within a
//! window; the match attributes it to that message's account, which can
//! list it (`GET /v1/inbound`) and receives it at its inbound webhook.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tern_core::EventKind;
use tern_queue::{InboundRow, NewEntry, Store};

use crate::webhook::{CALLBACKS_TOPIC, WebhookEntry};
use crate::{Handler, HandlerError, Mo, Outcome};

/// `mo` handler: finds the conversation an inbound message answers.
#[derive(Debug, Clone)]
pub struct ReplyMatch {
    store: Store,
    window: Duration,
}

impl ReplyMatch {
    /// Matches replies to messages sent at most `window` before them.
    pub fn new(store: Store, window: Duration) -> Self {
        Self { store, window }
    }
}

#[async_trait]
impl Handler<Mo> for ReplyMatch {
    async fn handle(&self, batch: &mut [&mut Mo]) -> Result<Vec<Outcome>, HandlerError> {
        let window = chrono::TimeDelta::from_std(self.window).unwrap_or(chrono::TimeDelta::MAX);
        for mo in batch.iter_mut() {
            let since = mo.received_at.checked_sub_signed(window).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
            // The handset replies to the sender id it saw: that is our `from`, its `to`.
            let Some(conversation) = self.store.contacts().latest_conversation(&mo.to, &mo.from, since).await? else {
                continue;
            };
            let Some(account) = self.store.accounts().account(conversation.account_id).await? else {
                continue;
            };
            mo.account = Some(Arc::new(account));
            mo.reply_to = Some(conversation.message_id);
            mo.facts.push(EventKind::ReplyMatched { outbound_message_id: conversation.message_id });
        }
        Ok(vec![Outcome::Continue; batch.len()])
    }
}

/// The body of an inbound webhook.
#[derive(Debug, Clone, Serialize)]
pub struct InboundWebhook<'a> {
    /// Always `message.inbound`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The inbound message's id.
    pub id: String,
    /// The handset.
    pub from: &'a str,
    /// The number it wrote to.
    pub to: &'a str,
    /// Text.
    pub body: &'a str,
    /// The outbound message it answers.
    pub reply_to: Option<String>,
    /// When it arrived (RFC 3339).
    pub received_at: String,
}

/// `mo` handler: lists the message for its account and queues the account's
/// inbound webhook. Unattributed messages pass through untouched.
#[derive(Debug, Clone)]
pub struct InboundForward {
    store: Store,
}

impl InboundForward {
    /// A handler writing to `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Handler<Mo> for InboundForward {
    async fn handle(&self, batch: &mut [&mut Mo]) -> Result<Vec<Outcome>, HandlerError> {
        let mut rows = Vec::new();
        let mut webhooks = Vec::new();
        for mo in batch.iter() {
            let Some(account) = &mo.account else { continue };
            rows.push(InboundRow {
                message_id: mo.message_id,
                account_id: account.id,
                from: mo.from.clone(),
                to: mo.to.clone(),
                body: mo.body.clone(),
                connector: mo.connector.clone(),
                reply_to: mo.reply_to,
                received_at: mo.received_at,
            });
            let Some(url) = &account.inbound_url else { continue };
            let body = serde_json::to_string(&InboundWebhook {
                kind: "message.inbound",
                id: mo.message_id.to_string(),
                from: &mo.from,
                to: &mo.to,
                body: &mo.body,
                reply_to: mo.reply_to.map(|m| m.to_string()),
                received_at: mo.received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
            .map_err(anyhow::Error::from)?;
            let entry = WebhookEntry {
                account_id: account.id,
                message_id: mo.message_id,
                event_id: mo.received,
                url: url.clone(),
                body,
                first_at: mo.received_at,
            };
            webhooks.push(NewEntry::new(entry.entry_id(), serde_json::to_vec(&entry).map_err(anyhow::Error::from)?));
        }
        self.store.contacts().put_inbound(&rows).await?;
        self.store.queue().producer(CALLBACKS_TOPIC).publish(webhooks).await?;
        Ok(vec![Outcome::Continue; batch.len()])
    }
}
