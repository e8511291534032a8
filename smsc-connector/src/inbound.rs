//! What the SMSC delivers: receipts go to the receipt book, inbound (MO)
//! messages into the pipeline's `mo` topic, parts of long ones into the
//! store until the last part arrives. Each `deliver_sm_resp` says OK only
//! once what it acknowledges is durable; a store error answers
//! ESME_RX_T_APPN so the SMSC delivers it again later.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusmpp::CommandStatus;
use rusmpp::pdus::DeliverSm;
use tern_core::MessageId;
use tern_queue::{MoPart, MoPartKey, Store};
use tern_workers::mo::{Inbound as InboundMessage, receive};

use crate::deliver::{Delivered, Mo, classify, decode_text};
use crate::metrics;
use crate::receipts::Receipts;
use crate::session::InboundHandler;

/// A connector's handler of `deliver_sm`.
#[derive(Debug)]
pub struct Inbound {
    connector: String,
    store: Store,
    receipts: Receipts,
}

impl Inbound {
    /// The handler of `connector`.
    pub fn new(connector: &str, store: Store, receipts: Receipts) -> Self {
        Self { connector: connector.to_owned(), store, receipts }
    }

    fn count(&self, metric: &'static str, label: &'static str, value: &'static str) {
        ::metrics::counter!(metric, "connector" => self.connector.clone(), label => value).increment(1);
    }

    /// Records an inbound message or stores a part; `Err` when the store failed.
    async fn mo(&self, mo: Mo, now: DateTime<Utc>) -> Result<(), tern_workers::WorkerError> {
        let Some(concat) = mo.concat else {
            let body = decode_text(mo.data_coding, &mo.payload);
            receive(&self.store, &self.message(MessageId::new(), &mo, body, now)).await?;
            self.count(metrics::INBOUND, "kind", "message");
            return Ok(());
        };
        let key = MoPartKey {
            connector: self.connector.clone(),
            from: mo.from.clone(),
            to: mo.to.clone(),
            reference: concat.reference,
            total: concat.total,
        };
        let part = MoPart {
            key: key.clone(),
            seq: concat.seq,
            data_coding: mo.data_coding,
            payload: mo.payload.clone(),
            received_at: now,
        };
        let parts = self.store.smsc().put_mo_part(&part).await?;
        self.count(metrics::INBOUND, "kind", "part");
        let complete = parts.len() == usize::from(concat.total)
            && parts.iter().enumerate().all(|(i, p)| usize::from(p.seq) == i + 1);
        if !complete {
            return Ok(());
        }
        // Named by its parts and the first one's arrival: if we crash before
        // the parts are deleted, the SMSC's resend completes the same message
        // again, and recording it twice is a no-op.
        let first = parts.iter().map(|p| p.received_at).min().unwrap_or(now);
        let name = format!("{}/{}/{}/{}/{}", key.connector, key.from, key.to, key.reference, key.total);
        let bytes: Vec<u8> = parts.iter().flat_map(|p| p.payload.iter().copied()).collect();
        let body = decode_text(parts[0].data_coding, &bytes);
        receive(&self.store, &self.message(MessageId::derived(first, &name), &mo, body, first)).await?;
        self.store.smsc().delete_mo_parts(&key).await?;
        self.count(metrics::INBOUND, "kind", "message");
        Ok(())
    }

    fn message(&self, message_id: MessageId, mo: &Mo, body: String, at: DateTime<Utc>) -> InboundMessage {
        InboundMessage {
            message_id,
            from: mo.from.clone(),
            to: mo.to.clone(),
            body,
            connector: self.connector.clone(),
            received_at: at,
        }
    }
}

#[async_trait]
impl InboundHandler for Inbound {
    #[tracing::instrument(skip_all, fields(connector = %self.connector))]
    async fn deliver_sm(&self, pdu: DeliverSm) -> CommandStatus {
        let now = Utc::now();
        match classify(&pdu, now) {
            Delivered::Receipt(receipt) => self.receipts.record(receipt).await,
            Delivered::Mo(mo) => match self.mo(mo, now).await {
                Ok(()) => CommandStatus::EsmeRok,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record an inbound message");
                    CommandStatus::EsmeRxTAppn
                }
            },
            Delivered::Unreadable(why) => {
                tracing::warn!(%why, "unreadable deliver_sm refused");
                self.count(metrics::RECEIPTS, "result", "unreadable");
                CommandStatus::EsmeRxPAppn
            }
        }
    }
}
