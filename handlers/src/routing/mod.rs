//! Routing, jasmin-style: an ordered table of routes whose filters must all
//! match, each with an action (one connector, a failover list, weighted
//! spread), and a default. The table comes from configuration and may be
//! replaced at run time through the admin API (stored as the `routing`
//! setting); every process polls the setting and swaps tables without a
//! restart. An invalid stored table is refused at the API and, should one
//! get in anyway, logged and ignored.

mod table;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tern_core::EventKind;
use tern_queue::Store;

pub use self::table::{
    Action, CompiledTable, Filters, Matched, Route, RouteQuery, RoutingError, RoutingTable, TimeWindow, choose,
};
use crate::work::RouteChoice;
use crate::{Handler, HandlerError, Mt, Outcome};

/// Settings key under which the admin API stores the routing table.
pub const ROUTING_SETTING: &str = "routing";

/// Lease a connector holds while all its binds are down, so that failover
/// routes skip it (`connector-down/<name>`).
pub fn down_lease(connector: &str) -> String {
    format!("connector-down/{connector}")
}

#[derive(Debug)]
struct Live {
    table: Arc<CompiledTable>,
    /// Version of the stored table in use; 0 for the configured one.
    version: i64,
    /// The connectors `table` names, whose down leases are watched.
    connectors: Vec<String>,
    /// A stored version that did not compile, so it is not parsed (and
    /// logged) again on every refresh.
    refused: i64,
    down: HashSet<String>,
}

/// The table in use, refreshed from the store.
#[derive(Debug, Clone)]
pub struct Routing {
    store: Store,
    live: Arc<RwLock<Live>>,
}

impl Routing {
    /// Starts from the configured table, then the stored one if there is one.
    pub async fn new(store: Store, configured: RoutingTable) -> Result<Self, HandlerError> {
        let table = configured.compile().map_err(|e| HandlerError::Config(format!("routing table: {e}")))?;
        let live = Live {
            table: Arc::new(table),
            version: 0,
            connectors: configured.connectors(),
            refused: 0,
            down: HashSet::new(),
        };
        let this = Self { store, live: Arc::new(RwLock::new(live)) };
        this.refresh().await?;
        Ok(this)
    }

    /// Reloads the stored table if it changed, and which connectors are down.
    pub async fn refresh(&self) -> Result<(), HandlerError> {
        let stored = self.store.coordination().setting(ROUTING_SETTING).await?;
        let (current, refused, mut connectors) = {
            let live = self.live.read().map_err(|_| anyhow::anyhow!("routing table lock poisoned"))?;
            (live.version, live.refused, live.connectors.clone())
        };
        let mut replacement = None;
        let mut newly_refused = None;
        if let Some(setting) = stored.filter(|s| s.version != current && s.version != refused) {
            match serde_json::from_str::<RoutingTable>(&setting.value)
                .map_err(|e| e.to_string())
                .and_then(|t| t.compile().map(|c| (t, c)).map_err(|e| e.to_string()))
            {
                Ok((table, compiled)) => {
                    tracing::info!(version = setting.version, routes = table.routes.len(), "routing table loaded");
                    connectors = table.connectors();
                    replacement = Some((Arc::new(compiled), setting.version));
                }
                Err(e) => {
                    tracing::error!(version = setting.version, error = %e, "stored routing table ignored");
                    newly_refused = Some(setting.version);
                }
            }
        }
        let mut down = HashSet::new();
        for connector in &connectors {
            if self.store.coordination().lease_holder(&down_lease(connector)).await?.is_some() {
                down.insert(connector.clone());
            }
        }
        let mut live = self.live.write().map_err(|_| anyhow::anyhow!("routing table lock poisoned"))?;
        if let Some((table, version)) = replacement {
            live.table = table;
            live.version = version;
            live.connectors = connectors;
            metrics::gauge!(crate::metrics::ROUTING_TABLE_VERSION).set(version as f64);
        }
        if let Some(version) = newly_refused {
            live.refused = version;
        }
        live.down = down;
        Ok(())
    }

    /// Refreshes every `every` until the process ends.
    pub fn spawn_refresher(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = this.refresh().await {
                    tracing::warn!(error = %e, "routing table refresh failed; keeping the current one");
                }
            }
        })
    }

    /// Version of the stored table in use, 0 for the configured one.
    pub fn version(&self) -> i64 {
        self.live.read().map(|l| l.version).unwrap_or(0)
    }

    fn snapshot(&self) -> (Arc<CompiledTable>, HashSet<String>) {
        match self.live.read() {
            Ok(live) => (live.table.clone(), live.down.clone()),
            Err(poisoned) => {
                let live = poisoned.into_inner();
                (live.table.clone(), live.down.clone())
            }
        }
    }
}

#[async_trait]
impl Handler<Mt> for Routing {
    async fn handle(&self, batch: &mut [&mut Mt]) -> Result<Vec<Outcome>, HandlerError> {
        let (table, down) = self.snapshot();
        let available = |c: &str| !down.contains(c);
        Ok(batch.iter_mut().map(|mt| route_one(&table, &available, mt)).collect())
    }
}

fn route_one(table: &CompiledTable, available: &dyn Fn(&str) -> bool, mt: &mut Mt) -> Outcome {
    let attempt = mt.route_attempt();
    // A redelivered message goes where its first delivery sent it.
    let recorded = mt.recorded(|k| match k {
        EventKind::Routed { connector, route, attempt: a } if *a == attempt => {
            Some(RouteChoice { connector: connector.clone(), route: route.clone() })
        }
        _ => None,
    });
    let choice = match recorded {
        Some(choice) => choice,
        None => {
            let digits = mt.message.to.trim_start_matches('+');
            let query = RouteQuery {
                message_id: mt.id(),
                digits,
                country: mt.message.country.as_deref(),
                account: mt.account.id,
                reseller: mt.account.parent_id,
                sender: &mt.message.from,
                encoding: mt.message.encoding,
                at: mt.now,
            };
            let Some(matched) = table.find(&query) else {
                return Outcome::Stop(EventKind::Rejected {
                    code: "no_route".into(),
                    detail: format!(
                        "no route matches this message (to {}, country {}, sender {:?}, encoding {:?}) and there is no default route",
                        mt.message.to,
                        mt.message.country.as_deref().unwrap_or("unknown"),
                        mt.message.from,
                        mt.message.encoding
                    ),
                });
            };
            let Some(connector) = choose(matched.action, mt.id(), attempt, available) else {
                return Outcome::Stop(EventKind::Failed {
                    code: "routes_exhausted".into(),
                    detail: format!(
                        "route {:?} has no connector left to try after {} attempts",
                        matched.route,
                        attempt - 1
                    ),
                    smpp_status: None,
                });
            };
            RouteChoice { connector, route: matched.route.to_owned() }
        }
    };
    mt.facts.push(EventKind::Routed { connector: choice.connector.clone(), route: choice.route.clone(), attempt });
    mt.route = Some(choice);
    Outcome::Continue
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
