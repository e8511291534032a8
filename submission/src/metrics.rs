//! Metric names of the submission role, and the middleware that records
//! every request.

use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

/// Requests answered, by route, method and status.
pub const HTTP_REQUESTS: &str = "tern_http_requests_total";
/// Request latency in seconds, by route and method.
pub const HTTP_DURATION: &str = "tern_http_request_duration_seconds";
/// Messages accepted, by kind (single, batch).
pub const MESSAGES_ACCEPTED: &str = "tern_messages_accepted_total";

/// Records each request's route, status and latency.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    // Only standard methods become labels: arbitrary ones would grow the series without bound.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    let response = next.call(req).await?;
    let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method).record(started.elapsed().as_secs_f64());
    Ok(response)
}
