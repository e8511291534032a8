//! The `mo` stage: inbound messages recorded by a connector go through the
//! inbound handler chain (reply matching, opt-out keywords, forwarding).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tern_core::{Event, EventKind, MessageId};
use tern_handlers::{Chain, Mo, MoEntry};
use tern_queue::{ClaimedEntry, Consumer, Delivery, NewEntry, Store};

use crate::WorkerError;
use crate::metrics::settled;
use crate::runtime::Stage;

/// Topic of inbound messages waiting for the pipeline.
pub const MO_TOPIC: &str = "mo";

/// An inbound message as a connector hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Its id (the connector makes one per reassembled message).
    pub message_id: MessageId,
    /// The handset, E.164.
    pub from: String,
    /// The number or short code it was sent to.
    pub to: String,
    /// Decoded text.
    pub body: String,
    /// Connector it came through.
    pub connector: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// Records an inbound message and queues it for the `mo` stage, crash-atomically
/// (what a connector calls for each MO it receives). Idempotent per message id.
pub async fn receive(store: &Store, inbound: &Inbound) -> Result<(), WorkerError> {
    let event = Event::new(
        inbound.message_id,
        None,
        inbound.received_at,
        EventKind::InboundReceived {
            from: inbound.from.clone(),
            to: inbound.to.clone(),
            body: inbound.body.clone(),
            connector: inbound.connector.clone(),
        },
    );
    let payload = serde_json::to_vec(&MoEntry { received: event.clone() }).map_err(anyhow::Error::from)?;
    store.accept(&[event], MO_TOPIC, vec![NewEntry::new(inbound.message_id.to_string(), payload)]).await?;
    Ok(())
}

/// The `mo` stage.
#[derive(Debug)]
pub struct MoStage {
    store: Store,
    chain: Chain<Mo>,
}

impl MoStage {
    /// A stage running `chain` over `store`.
    pub fn new(store: Store, chain: Chain<Mo>) -> Self {
        Self { store, chain }
    }
}

#[async_trait]
impl Stage for MoStage {
    fn name(&self) -> &str {
        MO_TOPIC
    }

    #[tracing::instrument(skip_all, fields(entries = deliveries.len()))]
    async fn process(&self, consumer: &Consumer, deliveries: Vec<Delivery>) -> Result<(), WorkerError> {
        let now = Utc::now();
        let mut work = Vec::with_capacity(deliveries.len());
        let mut unreadable = Vec::new();
        let mut readable = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match delivery.payload_json::<MoEntry>().ok().and_then(|e| Mo::from_event(&e.received, now)) {
                Some(mo) => {
                    work.push(mo);
                    readable.push(delivery);
                }
                None => unreadable.push(delivery),
            }
        }
        // Inbound handlers only continue; a stop or retry would be a bug in one.
        let outcomes = self.chain.run(&mut work).await?;
        let events: Vec<Event> = work
            .iter()
            .flat_map(|mo| {
                mo.facts.iter().map(move |kind| Event::new(mo.message_id, mo.account_id(), now, kind.clone()))
            })
            .collect();
        self.store.record(&events).await?;
        for (outcome, mo) in outcomes.iter().zip(&work) {
            if *outcome != tern_handlers::Outcome::Continue {
                tracing::warn!(message_id = %mo.message_id, ?outcome, "an inbound handler did not continue");
            }
        }
        settled(MO_TOPIC, "ack", readable.len());
        consumer.ack_all(readable).await?;
        for delivery in unreadable {
            tracing::error!(entry = delivery.id(), "unreadable mo entry");
            delivery.nack(std::time::Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    async fn dead_lettered(&self, entries: Vec<ClaimedEntry>) -> Result<(), WorkerError> {
        let now = Utc::now();
        let events: Vec<Event> = entries
            .iter()
            .filter_map(|entry| serde_json::from_slice::<MoEntry>(&entry.payload).ok().map(|e| (e, entry.attempts)))
            .map(|(e, attempts)| {
                let kind = EventKind::DeadLettered {
                    stage: MO_TOPIC.into(),
                    attempts,
                    last_error: "its worker stopped before finishing it, every time".into(),
                };
                Event::new(e.received.message_id, None, now, kind)
            })
            .collect();
        settled(MO_TOPIC, "dead", events.len());
        self.store.record(&events).await?;
        Ok(())
    }
}
