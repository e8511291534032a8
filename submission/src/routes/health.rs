//! `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.

use actix_web::{HttpResponse, get, web};
use utoipa::OpenApi;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The stores answer.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses((status = 200), (status = 503, body = crate::error::Problem))
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let head = state.store.journal().head().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    state.store.accounts().list_accounts(None, None, 1).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "ready",
        "store": state.store.backend_name(),
        "journal_head": head.0,
    })))
}

/// Prometheus metrics.
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.prometheus.render())
}

/// The OpenAPI 3.1 document of this API.
#[get("/openapi.json")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::ApiDoc::openapi())
}
