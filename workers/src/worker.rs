//! `tern worker`: the configured stages, each on its own runner.

use std::sync::Arc;
use std::time::Duration;

use tern_handlers::billing::Billing;
use tern_handlers::conversations::Conversations;
use tern_handlers::optout::{Keywords, OptOutCheck, OptOutKeywords};
use tern_handlers::replies::{InboundForward, ReplyMatch};
use tern_handlers::routing::Routing;
use tern_handlers::webhook::CALLBACKS_TOPIC;
use tern_handlers::{Mo, Mt, Registry};
use tern_queue::{ConsumerOptions, Store};
use tokio::sync::watch;

use crate::WorkerError;
use crate::callbacks::{Dispatcher, Sender};
use crate::config::{PipelineSettings, StageConfig};
use crate::leader::Leadership;
use crate::mo::{MO_TOPIC, MoStage};
use crate::mt::{MT_TOPIC, MtStage};
use crate::runtime::{Runner, Stage};

/// Name of the callback dispatcher's lease.
pub const DISPATCHER_LEASE: &str = "callbacks-dispatcher";

/// Asks everything started with its receiver to stop.
#[derive(Debug)]
pub struct Shutdown(watch::Sender<bool>);

impl Shutdown {
    /// A shutdown switch and the receiver to hand out.
    pub fn new() -> (Self, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (Self(tx), rx)
    }

    /// Flips the switch.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// The worker role: its handlers and stages.
#[derive(Debug)]
pub struct Worker {
    store: Store,
    settings: PipelineSettings,
    mt: Registry<Mt>,
    mo: Registry<Mo>,
    routing: Routing,
}

impl Worker {
    /// Builds the built-in handlers; more can be registered before [`Worker::run`].
    pub async fn new(store: Store, settings: PipelineSettings) -> Result<Self, WorkerError> {
        let routing = Routing::new(store.clone(), settings.routing.table()).await?;
        let keywords = Keywords::new(&settings.optout)?;
        let mut mt = Registry::<Mt>::default();
        mt.register("optout", Arc::new(OptOutCheck::new(store.clone())))
            .register("routing", Arc::new(routing.clone()))
            .register("billing", Arc::new(Billing::new(store.clone())))
            .register("conversations", Arc::new(Conversations::new(store.clone())));
        let mut mo = Registry::<Mo>::default();
        let window = Duration::from_secs(settings.replies.window_secs);
        mo.register("replies", Arc::new(ReplyMatch::new(store.clone(), window)))
            .register("optout", Arc::new(OptOutKeywords::new(store.clone(), keywords)))
            .register("inbound", Arc::new(InboundForward::new(store.clone())));
        for stage in &settings.worker.stages {
            if !["mt", "mo", "callbacks"].contains(&stage.as_str()) {
                return Err(WorkerError::Config(format!("unknown stage {stage:?}; stages are mt, mo and callbacks")));
            }
        }
        Ok(Self { store, settings, mt, mo, routing })
    }

    /// The outbound handlers, to register more.
    pub fn mt_handlers(&mut self) -> &mut Registry<Mt> {
        &mut self.mt
    }

    /// The inbound handlers, to register more.
    pub fn mo_handlers(&mut self) -> &mut Registry<Mo> {
        &mut self.mo
    }

    /// Runs the configured stages until `shutdown`, then drains them.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), WorkerError> {
        let config = &self.settings.worker;
        let drain = Duration::from_millis(config.drain_timeout_ms);
        let mut tasks = tokio::task::JoinSet::new();
        let runner = |stage: Arc<dyn Stage>, topic: &str, stage_config: StageConfig, options: ConsumerOptions| {
            Runner::new(stage, self.store.queue().consumer(topic, options), stage_config, drain)
        };
        let refresher = self.routing.spawn_refresher(Duration::from_millis(self.settings.routing.reload_ms.max(100)));
        for stage in &config.stages {
            match stage.as_str() {
                "mt" => {
                    let chain = self.mt.chain(&config.handlers.mt)?;
                    tracing::info!(chain = ?chain, "mt stage");
                    let stage = Arc::new(MtStage::new(self.store.clone(), chain));
                    tasks.spawn(runner(stage, MT_TOPIC, config.mt, config.mt.consumer()).run(shutdown.clone()));
                }
                "mo" => {
                    let chain = self.mo.chain(&config.handlers.mo)?;
                    tracing::info!(chain = ?chain, "mo stage");
                    let stage = Arc::new(MoStage::new(self.store.clone(), chain));
                    tasks.spawn(runner(stage, MO_TOPIC, config.mo, config.mo.consumer()).run(shutdown.clone()));
                }
                _ => {
                    let callbacks = self.settings.callbacks;
                    let sender = Arc::new(Sender::new(self.store.clone(), callbacks)?);
                    let stage_config = StageConfig {
                        concurrency: callbacks.concurrency,
                        batch_size: callbacks.batch_size,
                        lease_ms: callbacks.timeout_ms.saturating_mul(2).saturating_add(10_000),
                        max_attempts: u32::MAX,
                    };
                    let options = stage_config.consumer();
                    tasks.spawn(runner(sender, CALLBACKS_TOPIC, stage_config, options).run(shutdown.clone()));
                    let leadership = Leadership::new(self.store.clone(), DISPATCHER_LEASE, Duration::from_secs(10));
                    tasks.spawn(leadership.clone().keep(shutdown.clone()));
                    tasks.spawn(Dispatcher::new(self.store.clone(), leadership).run(shutdown.clone()));
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        refresher.abort();
        Ok(())
    }
}
