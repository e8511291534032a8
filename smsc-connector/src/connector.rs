//! One connector: its binds, the stage that sends, the receipt book, and
//! the `connector-down` lease that lets failover routes skip it.

use std::sync::Arc;
use std::time::Duration;

use tern_handlers::Dispatch;
use tern_handlers::routing::down_lease;
use tern_queue::{ConsumerOptions, Store};
use tern_workers::config::StageConfig;
use tern_workers::runtime::Runner;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ConnectorConfig;
use crate::dispatch::DispatchStage;
use crate::error::ConnectorError;
use crate::inbound::Inbound;
use crate::link::Link;
use crate::metrics;
use crate::receipts::{ReceiptMatcher, ReceiptStage, Receipts, receipt_topic};

/// How long the `connector-down` lease lasts; renewed every third of it while down.
const DOWN_LEASE: Duration = Duration::from_secs(15);

/// A running connector.
#[derive(Debug)]
pub struct Running {
    /// Its binds (tests sever them to simulate a broken network).
    pub link: Arc<Link>,
    /// Ends when the connector has drained and unbound after shutdown.
    pub done: JoinHandle<()>,
}

/// Starts connector `name` on `store`; it runs until `shutdown` turns true,
/// then stops claiming, lets in-flight messages finish (their responses
/// are recorded), unbinds, and ends.
pub fn start(
    name: &str,
    config: &ConnectorConfig,
    store: Store,
    shutdown: watch::Receiver<bool>,
) -> Result<Running, ConnectorError> {
    config.validate(name).map_err(ConnectorError::Config)?;
    let matcher = Arc::new(ReceiptMatcher::new(name, store.clone(), config.receipt_ids));
    let (receipts, recorder) = Receipts::start(matcher.clone());
    let inbound = Arc::new(Inbound::new(name, store.clone(), receipts));
    let stop_binds = CancellationToken::new();
    let (link, mut binds) = Link::start(name, config, inbound, stop_binds.clone());

    let drain = Duration::from_millis(config.drain_timeout_ms);
    let sending = StageConfig {
        concurrency: config.concurrency,
        batch_size: config.batch_size,
        lease_ms: config.lease_ms,
        max_attempts: config.max_attempts,
    };
    let stage = Arc::new(DispatchStage::new(name, store.clone(), link.clone(), config.clone(), matcher.clone()));
    let consumer = store.queue().consumer(Dispatch::topic(name), sending.consumer());
    let dispatch = Runner::new(stage, consumer, sending, drain);
    let matching = StageConfig { concurrency: 1, batch_size: 500, lease_ms: 30_000, max_attempts: u32::MAX };
    let window = Duration::from_secs(config.receipt_match_window_secs);
    let receipts = Runner::new(
        Arc::new(ReceiptStage::new(matcher, window)),
        store
            .queue()
            .consumer(receipt_topic(name), ConsumerOptions { lease: Duration::from_secs(30), max_attempts: u32::MAX }),
        matching,
        drain,
    );
    let down = tokio::spawn(hold_down_lease(
        name.to_owned(),
        store,
        link.clone(),
        Duration::from_millis(config.down_after_ms),
        stop_binds.clone(),
    ));
    let name = name.to_owned();
    let done = tokio::spawn(async move {
        let receipts = tokio::spawn(receipts.run(shutdown.clone()));
        dispatch.run(shutdown).await;
        // Only now: the drained batches needed the binds for their responses.
        stop_binds.cancel();
        while binds.join_next().await.is_some() {}
        let _ = receipts.await;
        let _ = down.await;
        // The binds are gone, and with them the last handle of the recorder.
        let _ = tokio::time::timeout(Duration::from_secs(10), recorder).await;
        tracing::info!(connector = %name, "connector stopped");
    });
    Ok(Running { link, done })
}

/// Holds `connector-down/<name>` while no transmitting bind has been up for
/// `after`, so that failover and weighted routes send elsewhere.
async fn hold_down_lease(name: String, store: Store, link: Arc<Link>, after: Duration, stop: CancellationToken) {
    let lease = down_lease(&name);
    let holder = format!("{}/{:016x}", std::process::id(), rand::random::<u64>());
    let mut up = link.watch_up();
    let gauge = || ::metrics::gauge!(metrics::DOWN, "connector" => name.clone());
    loop {
        tokio::select! {
            _ = up.wait_for(|n| *n == 0) => {}
            () = stop.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(after) => {}
            _ = up.wait_for(|n| *n > 0) => continue,
            () = stop.cancelled() => return,
        }
        tracing::warn!(connector = %name, "every bind is down; failover routes will skip this connector");
        loop {
            match store.coordination().try_lease(&lease, &holder, DOWN_LEASE).await {
                Ok(true) => gauge().set(1.0),
                Ok(false) => {}
                Err(e) => tracing::warn!(connector = %name, error = %e, "cannot hold the connector-down lease"),
            }
            tokio::select! {
                () = tokio::time::sleep(DOWN_LEASE / 3) => {}
                _ = up.wait_for(|n| *n > 0) => break,
                () = stop.cancelled() => break,
            }
        }
        if let Err(e) = store.coordination().release_lease(&lease, &holder).await {
            tracing::warn!(connector = %name, error = %e, "cannot release the connector-down lease; it will expire");
        }
        gauge().set(0.0);
        if stop.is_cancelled() {
            return;
        }
        tracing::info!(connector = %name, "a bind is up again");
    }
}
