//! `/v1/messages`: send one message, read it with its history, list, cancel.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tern_core::{Event, EventKind, MessageId, MessageStatus, Msisdn};
use tern_queue::{MessageQuery, MessageRow};

use crate::auth::Caller;
use crate::compose::{Checked, Options, RawOptions, check_message, check_options, compose};
use crate::error::{ApiError, ApiResult};
use crate::idempotency::{self, Earlier, Step};
use crate::metrics as m;
use crate::model::{
    HistoryEntry, ListMessages, MessageAccepted, MessageDetails, MessageSummary, Page, Price, SendMessage, Timestamps,
};
use crate::{AppState, body};

/// What a single send decides before writing, so a retry redoes the same.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SendPlan {
    message_id: MessageId,
    at: DateTime<Utc>,
}

/// Send one message.
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages",
    request_body = SendMessage,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h")),
    responses(
        (status = 202, description = "Accepted: durable, on its way", body = MessageAccepted),
        (status = 400, description = "Unreadable body", body = crate::error::Problem),
        (status = 401, description = "No valid key", body = crate::error::Problem),
        (status = 422, description = "A field is invalid, or the idempotency key was reused", body = crate::error::Problem),
        (status = 429, description = "Rate limited; see Retry-After", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
#[post("/v1/messages")]
#[tracing::instrument(skip_all, fields(account_id = %caller.id(), message_id))]
pub async fn send(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    body::require_json(&req)?;
    let idempotency_key = idempotency::key_of(&req)?;
    let bytes = body::read(payload, state.config.max_json_bytes).await?;
    let request: SendMessage = body::json(&bytes)?;
    let raw = RawOptions::from(&request);
    let max_segments = state.config.max_segments;
    let check = |at| -> ApiResult<(Options, Checked)> {
        let options = check_options(&raw, &state.config, at)?;
        let message = check_message(&request.to, request.body.clone(), request.client_ref.clone(), max_segments)?;
        Ok((options, message))
    };
    let hash = idempotency_key.as_ref().map(|_| idempotency::request_hash(&req, &caller, &bytes));
    let earlier: Earlier<SendPlan> = match (&idempotency_key, &hash) {
        (Some(key), Some(hash)) => idempotency::earlier(&state, &caller, key, hash).await?,
        _ => Earlier::None,
    };
    let (key, plan, (options, checked)) = match earlier {
        Earlier::Replay { status, body } => return Ok(replay(status, body)),
        Earlier::Redo { key, plan } => (Some(key), plan, check(plan.at)?),
        Earlier::None => {
            let plan = SendPlan { message_id: MessageId::new(), at: Utc::now() };
            // Validate fully before touching the idempotency record: a bad request writes nothing.
            let checked = check(plan.at)?;
            state.limiter.check_messages(caller.id(), caller.account.limits, 1)?;
            match (idempotency_key, hash) {
                (Some(key), Some(hash)) => match idempotency::begin(&state, &caller, key, hash, plan).await? {
                    Step::Replay { status, body } => return Ok(replay(status, body)),
                    // A twin request registered the key first: do its plan, checked at its time.
                    Step::Run { key, plan: twin } if twin.at != plan.at => (Some(key), twin, check(twin.at)?),
                    Step::Run { key, plan } => (Some(key), plan, checked),
                },
                _ => (None, plan, checked),
            }
        }
    };
    let client_ref = checked.client_ref.clone();
    let message = compose(&caller.account, plan.message_id, checked, &options, None, plan.at)?;
    tracing::Span::current().record("message_id", tracing::field::display(message.id));
    state.store.accept(&message.events, options.topic(), vec![message.entry]).await?;
    metrics::counter!(m::MESSAGES_ACCEPTED, "kind" => "single").increment(1);
    let accepted = MessageAccepted {
        id: message.id.to_string(),
        status: if options.send_at.is_some() { MessageStatus::Scheduled } else { MessageStatus::Accepted },
        to: message.to.as_str().to_owned(),
        segments: message.segments,
        encoding: message.encoding,
        price: message.price.map(|amount| Price { amount, currency: caller.account.currency.clone() }),
        accepted_at: plan.at,
        send_at: options.send_at,
        expires_at: options.expires_at,
        client_ref,
    };
    let json = serde_json::to_string(&accepted).map_err(anyhow::Error::from)?;
    if let Some(key) = key {
        idempotency::finish(&state, &caller, &key, 202, &json).await?;
    }
    Ok(HttpResponse::Accepted().content_type("application/json").body(json))
}

/// The stored answer of an earlier request with the same idempotency key.
pub(crate) fn replay(status: u16, body: String) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK);
    HttpResponse::build(status)
        .content_type("application/json")
        .insert_header(("Idempotent-Replayed", "true"))
        .body(body)
}

fn parse_id(id: &str) -> ApiResult<MessageId> {
    // An unparseable id names no message: the same 404 as an unknown one.
    id.parse().map_err(|_| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no message {id} in this account"))
}

/// The message's events, if it belongs to the caller.
async fn owned_history(state: &AppState, caller: &Caller, id: &str) -> ApiResult<(MessageId, Vec<Event>)> {
    let message_id = parse_id(id)?;
    let mut events = state.store.journal().message_events(message_id).await?;
    let owned =
        events.iter().any(|e| matches!(e.kind, EventKind::Accepted { .. }) && e.account_id == Some(caller.id()));
    if !owned {
        return Err(not_found(id));
    }
    events.sort_by_key(Event::sequence_key);
    Ok((message_id, events))
}

/// A message: status, details and its whole history.
#[utoipa::path(
    get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, body = MessageDetails),
        (status = 404, description = "No such message in this account", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
#[get("/v1/messages/{id}")]
#[tracing::instrument(skip_all, fields(account_id = %caller.id(), message_id = %id))]
pub async fn get_message(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let (message_id, events) = owned_history(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(details(message_id, &events)?))
}

fn details(id: MessageId, events: &[Event]) -> ApiResult<MessageDetails> {
    let status = MessageStatus::fold(events).ok_or_else(|| not_found(&id.to_string()))?;
    let mut d = None;
    let mut timestamps = Timestamps::default();
    let (mut charged, mut charge_currency) = (None::<i64>, None);
    for e in events {
        match &e.kind {
            EventKind::Accepted { .. } => {
                timestamps.accepted_at = Some(e.at);
                d = Some(e);
            }
            EventKind::Scheduled { send_at } => timestamps.send_at = Some(*send_at),
            EventKind::SubmittedToSmsc { .. } => {
                timestamps.submitted_at.get_or_insert(e.at);
            }
            EventKind::Charged { amount, currency, .. } => {
                charged = Some(charged.unwrap_or(0) + amount);
                charge_currency = Some(currency.clone());
            }
            EventKind::Refunded { amount, .. } => charged = Some(charged.unwrap_or(0) - amount),
            _ => {}
        }
    }
    if status.is_terminal() {
        // The first event at which the fold turns terminal.
        timestamps.completed_at = (1..=events.len())
            .find(|&n| MessageStatus::fold(&events[..n]).is_some_and(MessageStatus::is_terminal))
            .map(|n| events[n - 1].at);
    }
    let Some(Event {
        kind:
            EventKind::Accepted {
                to,
                from,
                body,
                encoding,
                segments,
                batch_id,
                client_ref,
                expires_at,
                price,
                currency,
                ..
            },
        ..
    }) = d
    else {
        return Err(not_found(&id.to_string()));
    };
    timestamps.expires_at = Some(*expires_at);
    let price = match (charged, charge_currency) {
        (Some(amount), Some(currency)) => Some(Price { amount, currency }),
        _ => price.zip(currency.clone()).map(|(amount, currency)| Price { amount, currency }),
    };
    let history = events
        .iter()
        .map(|e| {
            Ok(HistoryEntry {
                id: e.id.to_string(),
                at: e.at,
                event: serde_json::to_value(&e.kind).map_err(anyhow::Error::from)?,
            })
        })
        .collect::<ApiResult<_>>()?;
    Ok(MessageDetails {
        id: id.to_string(),
        status,
        to: to.clone(),
        from: from.clone(),
        body: body.clone(),
        segments: *segments,
        encoding: *encoding,
        price,
        batch_id: batch_id.map(|b| b.to_string()),
        client_ref: client_ref.clone(),
        timestamps,
        history,
    })
}

/// Cancel a message no SMSC has taken yet (scheduled ones above all).
#[utoipa::path(
    delete, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "Cancelled", body = MessageDetails),
        (status = 404, body = crate::error::Problem),
        (status = 409, description = "Already with an SMSC, or finished", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
#[delete("/v1/messages/{id}")]
#[tracing::instrument(skip_all, fields(account_id = %caller.id(), message_id = %id))]
pub async fn cancel(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let (message_id, events) = owned_history(&state, &caller, &id).await?;
    let status = MessageStatus::fold(&events).ok_or_else(|| not_found(&id))?;
    if status == MessageStatus::Cancelled {
        return Ok(HttpResponse::Ok().json(details(message_id, &events)?));
    }
    if status.is_terminal() {
        return Err(ApiError::Conflict(format!("message {id} cannot be cancelled: it is already {}", status.as_str())));
    }
    if events.iter().any(|e| matches!(e.kind, EventKind::SubmittedToSmsc { .. })) {
        return Err(ApiError::Conflict(format!("message {id} cannot be cancelled: an SMSC has already taken it")));
    }
    let cancel = Event::new(message_id, Some(caller.id()), Utc::now(), EventKind::Cancelled { by: "api".into() });
    state.store.record(std::slice::from_ref(&cancel)).await?;
    // The history as the journal now holds it, without reading it back.
    let mut events = events;
    events.push(cancel);
    events.sort_by_key(Event::sequence_key);
    Ok(HttpResponse::Ok().json(details(message_id, &events)?))
}

fn status_param(value: &str) -> ApiResult<MessageStatus> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).map_err(|_| {
        ApiError::field(
            "status",
            format!(
                "{value:?} is not a status; use one of accepted, scheduled, routed, submitted, delivered, \
                 undeliverable, expired, rejected, failed, cancelled"
            ),
        )
    })
}

fn time_param(field: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ApiError::field(field, format!("{value:?} is not an RFC 3339 timestamp: {e}")))
}

/// Builds the index query of a list request.
pub(crate) fn message_query(caller: &Caller, q: &ListMessages) -> ApiResult<MessageQuery> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "limit must be between 1 and 1000"));
    }
    let to =
        q.to.as_deref()
            .map(|t| Msisdn::parse(t).map(|m| m.as_str().to_owned()).map_err(|e| ApiError::field("to", e.to_string())))
            .transpose()?;
    let batch_id = q
        .batch_id
        .as_deref()
        .map(|b| b.parse().map_err(|_| ApiError::field("batch_id", format!("{b:?} is not a batch id"))))
        .transpose()?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| c.parse().map_err(|_| ApiError::field("cursor", "cursor is not one this API returned")))
        .transpose()?;
    let since = q.since.as_deref().map(|s| time_param("since", s)).transpose()?;
    let until = q.until.as_deref().map(|s| time_param("until", s)).transpose()?;
    if let (Some(since), Some(until)) = (since, until)
        && since >= until
    {
        return Err(ApiError::field("until", "until must be after since"));
    }
    Ok(MessageQuery {
        status: q.status.as_deref().map(status_param).transpose()?,
        to,
        batch_id,
        since,
        until,
        before,
        ..MessageQuery::new(caller.id(), limit)
    })
}

fn summary(row: MessageRow) -> MessageSummary {
    MessageSummary {
        id: row.message_id.to_string(),
        status: row.status,
        to: row.to,
        batch_id: row.batch_id.map(|b| b.to_string()),
        client_ref: row.client_ref,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// List the account's messages, newest first.
#[utoipa::path(
    get, path = "/v1/messages", tag = "messages",
    params(ListMessages),
    responses((status = 200, body = Page<MessageSummary>), (status = 422, body = crate::error::Problem)),
    security(("api_key" = []))
)]
#[get("/v1/messages")]
#[tracing::instrument(skip_all, fields(account_id = %caller.id()))]
pub async fn list(state: web::Data<AppState>, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    let q: ListMessages = body::query(&req)?;
    let query = message_query(&caller, &q)?;
    let page = state.store.messages().list(&query).await?;
    let next_cursor = page.next.map(|id| id.to_string());
    Ok(HttpResponse::Ok().json(Page { data: page.rows.into_iter().map(summary).collect(), next_cursor }))
}
