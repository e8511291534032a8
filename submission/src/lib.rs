//! The submission role: Tern's REST API for resellers and enterprises
//! (accounts and keys, single and bulk sends, status and audit trail,
//! balance, inbound messages; the routing table for the operator), an
//! actix-web server over the configured [`tern_queue::Store`].
//!
//! `docs/api.md` is the user's guide; `GET /openapi.json` the reference.

pub mod auth;
mod body;
mod compose;
pub mod config;
pub mod error;
mod idempotency;
pub mod metrics;
pub mod model;
pub mod openapi;
mod rate_limit;
pub mod routes;
mod template;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::PrometheusHandle;
use tern_queue::Store;
use tern_reporting::ReportStore;

use crate::auth::AuthCache;
pub use crate::config::SubmissionConfig;
use crate::error::ApiError;
use crate::rate_limit::RateLimiter;
use crate::routes::{account, admin, batches, health, inbound, messages, reports, routing};

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Settings.
    pub config: SubmissionConfig,
    /// The admin token, if the admin API is enabled.
    pub admin_token: Option<String>,
    /// The reporting store `/v1/reports` reads, if one is configured.
    pub reports: Option<ReportStore>,
    auth: AuthCache,
    limiter: RateLimiter,
    prometheus: PrometheusHandle,
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(messages::send)
        .service(messages::list)
        .service(messages::get_message)
        .service(messages::cancel)
        .service(batches::create)
        .service(batches::get_batch)
        .service(account::balance)
        .service(inbound::list)
        .service(reports::summary)
        .service(admin::create_account)
        .service(admin::list_accounts)
        .service(admin::get_account)
        .service(admin::update_account)
        .service(admin::suspend)
        .service(admin::reinstate)
        .service(admin::top_up)
        .service(admin::create_key)
        .service(admin::list_keys)
        .service(admin::revoke_key)
        .service(routing::get_routing)
        .service(routing::put_routing)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(health::openapi);
}

async fn no_route(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no endpoint {} {}", req.method(), req.path())))
}

/// A bound, not yet running, submission server.
#[derive(Debug)]
pub struct Submission {
    listener: TcpListener,
    state: AppState,
}

impl Submission {
    /// Binds `listener` (use port 0 for any free port) and prepares the server.
    pub fn new(store: Store, config: SubmissionConfig, listener: TcpListener) -> anyhow::Result<Self> {
        let admin_token = config.admin_token.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
        tern_core::Msisdn::prepare();
        let state = AppState {
            store,
            auth: AuthCache::new(Duration::from_millis(config.auth_cache_ms)),
            limiter: RateLimiter::default(),
            // One recorder per process, whichever roles it runs.
            prometheus: tern_reporting::server::prometheus()?,
            admin_token,
            reports: None,
            config,
        };
        Ok(Self { listener, state })
    }

    /// Serves `/v1/reports` from `reports` (without one they answer 503).
    pub fn with_reports(mut self, reports: ReportStore) -> Self {
        self.state.reports = Some(reports);
        self
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Starts serving; the server stops on SIGTERM/SIGINT (draining
    /// requests in flight) or through its handle.
    pub fn run(self) -> anyhow::Result<Server> {
        let state = web::Data::new(self.state);
        let workers = match state.config.workers {
            0 => std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            n => n,
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(crate::metrics::record))
                .configure(routes)
                .default_service(web::to(no_route))
        })
        .workers(workers)
        .shutdown_timeout(30)
        .listen(self.listener)?
        .run();
        Ok(server)
    }
}
