//! `/v1/inbound`: the messages handsets sent to the account (replies and
//! keywords), as the worker pipeline attributed them.

use actix_web::{HttpRequest, HttpResponse, get, web};
use tern_core::MessageId;
use tern_queue::InboundRow;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::model::{InboundMessage, ListInbound, Page};
use crate::{AppState, body};

fn item(row: InboundRow) -> InboundMessage {
    InboundMessage {
        id: row.message_id.to_string(),
        from: row.from,
        to: row.to,
        body: row.body,
        connector: row.connector,
        reply_to: row.reply_to.map(|m| m.to_string()),
        received_at: row.received_at,
    }
}

/// List the account's inbound messages, newest first.
#[utoipa::path(
    get, path = "/v1/inbound", tag = "inbound",
    params(ListInbound),
    responses(
        (status = 200, body = Page<InboundMessage>),
        (status = 401, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
#[get("/v1/inbound")]
#[tracing::instrument(skip_all, fields(account_id = %caller.id()))]
pub async fn list(state: web::Data<AppState>, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    let q: ListInbound = body::query(&req)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "limit must be between 1 and 1000"));
    }
    let before: Option<MessageId> = q
        .cursor
        .as_deref()
        .map(|c| c.parse().map_err(|_| ApiError::field("cursor", "cursor is not one this API returned")))
        .transpose()?;
    // One more than asked tells whether another page follows, so the last
    // page has no cursor even when it is exactly full.
    let mut rows = state.store.contacts().list_inbound(caller.id(), before, limit + 1).await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = rows.last().filter(|_| more).map(|r| r.message_id.to_string());
    Ok(HttpResponse::Ok().json(Page { data: rows.into_iter().map(item).collect(), next_cursor }))
}
