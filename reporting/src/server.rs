//! The projector role's small HTTP endpoint: `/healthz`, `/readyz` (lag
//! included) and `/metrics` (Prometheus).

use std::net::TcpListener;
use std::sync::{Arc, OnceLock};

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, get, web};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::projector::Progress;
use crate::store::ReportStore;

struct State {
    store: ReportStore,
    progress: Arc<Progress>,
    max_lag_secs: u64,
}

/// Bucket bounds, in seconds, of every `*_seconds` histogram.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process's Prometheus recorder. Metrics are process-wide and `tern up`
/// runs every role in one process, so every role that serves `/metrics`
/// takes this one, installed on first use.
pub fn prometheus() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS)
                .map_err(|e| e.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            ::metrics::set_global_recorder(recorder).map_err(|_| "another metrics recorder is installed".to_owned())?;
            Ok(handle)
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready when the store answers, the last step succeeded, and the lag is
/// within `ready_max_lag_secs`; the body shows the lag either way.
#[get("/readyz")]
async fn readyz(state: web::Data<State>) -> HttpResponse {
    let lag = state.progress.lag();
    let problem = match state.store.ping().await {
        Err(e) => Some(format!("the reporting store does not answer: {e}")),
        Ok(()) if !lag.healthy => Some("the last projection step failed; see the log".to_owned()),
        Ok(()) if lag.seconds > state.max_lag_secs as f64 => {
            Some(format!("{:.0} s behind the journal (more than {} s)", lag.seconds, state.max_lag_secs))
        }
        Ok(()) => None,
    };
    let body = json!({
        "status": if problem.is_none() { "ready" } else { "not_ready" },
        "detail": problem,
        "store": state.store.dialect(),
        "checkpoint": lag.checkpoint,
        "journal_head": lag.head,
        "lag_events": lag.events,
        "lag_seconds": lag.seconds,
    });
    if problem.is_none() { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// Serves the endpoint on `listener` until the returned server is stopped.
pub fn serve(
    listener: TcpListener,
    store: ReportStore,
    progress: Arc<Progress>,
    max_lag_secs: u64,
) -> anyhow::Result<Server> {
    start(listener, Some(web::Data::new(State { store, progress, max_lag_secs })))
}

/// Serves the process's `/metrics` and `/healthz` on `listener`, for roles
/// without an HTTP server of their own (worker, scheduler, connector). It
/// lives here because this crate owns the process's recorder.
pub fn serve_metrics(listener: TcpListener) -> anyhow::Result<Server> {
    start(listener, None)
}

/// `/healthz` and `/metrics`, plus the projector's `/readyz` when given its state.
fn start(listener: TcpListener, projector: Option<web::Data<State>>) -> anyhow::Result<Server> {
    let prometheus = web::Data::new(prometheus()?);
    let server = HttpServer::new(move || {
        let app = App::new().app_data(prometheus.clone()).service(healthz).service(metrics);
        match &projector {
            Some(state) => app.app_data(state.clone()).service(readyz),
            None => app,
        }
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

#[get("/metrics")]
async fn metrics(prometheus: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(prometheus.render())
}
