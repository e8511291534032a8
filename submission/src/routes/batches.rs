//! `/v1/batches`: one template, many recipients (JSON or CSV), and the
//! batch's progress.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tern_core::{BatchId, MessageId};
use tern_queue::BatchRecord;

use crate::auth::Caller;
use crate::compose::{Checked, RawOptions, check_message, check_options, compose};
use crate::error::{ApiError, ApiResult, RowError};
use crate::idempotency::{self, Earlier, Step};
use crate::metrics as m;
use crate::model::{BatchAccepted, BatchStatus, CreateBatch, Recipient};
use crate::routes::messages::replay;
use crate::template::Template;
use crate::{AppState, body};

/// Messages written per accept: big enough to amortise a commit, small
/// enough to stay well under MongoDB's document limit for the accept intent.
const WRITE_CHUNK: usize = 1_000;
/// Row errors listed in the answer.
const MAX_LISTED_ERRORS: usize = 1_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct BatchPlan {
    batch_id: BatchId,
    at: DateTime<Utc>,
}

/// Rows of a batch request, numbered from 1; a row may already be known bad (a ragged CSV line).
type Rows = Vec<Result<Recipient, RowError>>;

fn parse_json(bytes: &[u8]) -> ApiResult<(CreateBatch, Rows)> {
    let mut request: CreateBatch = body::json(bytes)?;
    let rows = std::mem::take(&mut request.recipients).into_iter().map(Ok).collect();
    Ok((request, rows))
}

/// CSV: the batch options in the query string; a header row naming the
/// columns: `to` is the recipient, an optional `client_ref` column is the
/// message's reference, every other column is a template variable.
fn parse_csv(req: &HttpRequest, bytes: &[u8], max_rows: usize) -> ApiResult<(CreateBatch, Rows)> {
    let request: CreateBatch = body::query(req)?;
    let mut reader = csv::ReaderBuilder::new().flexible(false).trim(csv::Trim::All).from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| ApiError::MalformedBody(format!("the CSV header row cannot be read: {e}")))?
        .clone();
    let to_column = headers
        .iter()
        .position(|h| h == "to")
        .ok_or_else(|| ApiError::MalformedBody("the CSV header row has no `to` column".into()))?;
    if let Some(empty) = headers.iter().position(str::is_empty) {
        return Err(ApiError::MalformedBody(format!("CSV column {} has an empty name", empty + 1)));
    }
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let row = index as u64 + 1;
        if rows.len() >= max_rows {
            return Err(too_many(max_rows));
        }
        let record = match record {
            Ok(record) => record,
            Err(e) if matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) => {
                rows.push(Err(RowError { row, field: "row".into(), reason: e.to_string() }));
                continue;
            }
            Err(e) => return Err(ApiError::MalformedBody(format!("the CSV cannot be read at row {row}: {e}"))),
        };
        let mut recipient =
            Recipient { to: record[to_column].to_owned(), variables: BTreeMap::new(), client_ref: None };
        for (name, value) in headers.iter().zip(record.iter()) {
            match name {
                "to" => {}
                "client_ref" => recipient.client_ref = Some(value.to_owned()).filter(|v| !v.is_empty()),
                _ => {
                    recipient.variables.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        rows.push(Ok(recipient));
    }
    Ok((request, rows))
}

fn too_many(max: usize) -> ApiError {
    ApiError::field("recipients", format!("a batch holds at most {max} recipients; split it"))
}

/// Renders and checks one row.
fn check_row(
    template: &Template,
    number: u64,
    row: Result<Recipient, RowError>,
    max_segments: u16,
) -> Result<Checked, RowError> {
    let recipient = row?;
    let text = template.render(&recipient.variables).map_err(|missing| RowError {
        row: number,
        field: format!("variables.{missing}"),
        reason: format!("the template uses {{{missing}}} but this row has no value for it"),
    })?;
    check_message(&recipient.to, text, recipient.client_ref, max_segments).map_err(|e| RowError {
        row: number,
        field: e.field,
        reason: e.reason,
    })
}

/// Renders and checks every row once: the valid ones with their row
/// numbers (which their message ids derive from), and the errors in order.
fn check_rows(rows: Rows, template: &Template, max_segments: u16) -> (Vec<(u64, Checked)>, Vec<RowError>) {
    let mut valid = Vec::with_capacity(rows.len());
    let mut errors = Vec::new();
    for (index, row) in rows.into_iter().enumerate() {
        let number = index as u64 + 1;
        match check_row(template, number, row, max_segments) {
            Ok(checked) => valid.push((number, checked)),
            Err(e) => errors.push(e),
        }
    }
    (valid, errors)
}

/// Send one template to many recipients.
#[utoipa::path(
    post, path = "/v1/batches", tag = "batches",
    request_body(content = CreateBatch, description = "JSON, or `text/csv` with the options as query parameters (`from`, `body`, ...) and a header row naming `to` and the variables", content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h")),
    responses(
        (status = 202, description = "Accepted; invalid rows listed", body = BatchAccepted),
        (status = 413, body = crate::error::Problem),
        (status = 415, body = crate::error::Problem),
        (status = 422, description = "Invalid options, or invalid rows with all_or_nothing", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
#[post("/v1/batches")]
#[tracing::instrument(skip_all, fields(account_id = %caller.id(), batch_id))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let media = body::media_type(&req);
    if !matches!(media.as_deref(), Some("application/json" | "text/csv")) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "content type {} is not accepted here; send application/json or text/csv",
            media.map_or_else(|| "(none)".to_owned(), |m| format!("{m:?}"))
        )));
    }
    let idempotency_key = idempotency::key_of(&req)?;
    // The whole body is needed before anything is written: its hash keys
    // idempotency, and all_or_nothing must see every row first.
    let bytes = body::read(payload, state.config.max_batch_bytes).await?;
    let max = state.config.max_batch_recipients;
    let (request, rows) =
        if media.as_deref() == Some("text/csv") { parse_csv(&req, &bytes, max)? } else { parse_json(&bytes)? };
    if rows.len() > max {
        return Err(too_many(max));
    }
    if rows.is_empty() {
        return Err(ApiError::field("recipients", "the batch has no recipients"));
    }
    let raw = RawOptions::from(&request);
    let template = Template::parse(&request.body).map_err(|reason| ApiError::field("body", reason))?;
    let recipients = rows.len() as u64;
    let hash = idempotency_key.as_ref().map(|_| idempotency::request_hash(&req, &caller, &bytes));
    let earlier: Earlier<BatchPlan> = match (&idempotency_key, &hash) {
        (Some(key), Some(hash)) => idempotency::earlier(&state, &caller, key, hash).await?,
        _ => Earlier::None,
    };
    let unfinished = match earlier {
        Earlier::Replay { status, body } => return Ok(replay(status, body)),
        Earlier::Redo { key, plan } => Some((key, plan)),
        Earlier::None => None,
    };
    // Every row is checked before anything is written: a refused batch writes nothing.
    let (valid, mut errors) = check_rows(rows, &template, state.config.max_segments);
    let (key, plan, options) = match unfinished {
        // An unfinished earlier attempt: redo exactly its batch (same ids and time), charged once.
        Some((key, plan)) => (Some(key), plan, check_options(&raw, &state.config, plan.at)?),
        None => {
            let plan = BatchPlan { batch_id: BatchId::new(), at: Utc::now() };
            let options = check_options(&raw, &state.config, plan.at)?;
            if (request.all_or_nothing && !errors.is_empty()) || valid.is_empty() {
                errors.truncate(MAX_LISTED_ERRORS);
                return Err(ApiError::InvalidRows(errors));
            }
            state.limiter.check_messages(caller.id(), caller.account.limits, valid.len() as u64)?;
            match (idempotency_key, hash) {
                (Some(key), Some(hash)) => match idempotency::begin(&state, &caller, key, hash, plan).await? {
                    Step::Replay { status, body } => return Ok(replay(status, body)),
                    Step::Run { key, plan: twin } if twin.at != plan.at => {
                        (Some(key), twin, check_options(&raw, &state.config, twin.at)?)
                    }
                    Step::Run { key, plan } => (Some(key), plan, options),
                },
                _ => (None, plan, options),
            }
        }
    };
    tracing::Span::current().record("batch_id", tracing::field::display(plan.batch_id));
    let accepted = valid.len() as u64;
    // Built and written a chunk at a time: the composed messages (events and
    // payloads) of a 100,000-row batch are never all in memory at once.
    let mut valid = valid.into_iter().peekable();
    while valid.peek().is_some() {
        let mut events = Vec::with_capacity(WRITE_CHUNK);
        let mut entries = Vec::with_capacity(WRITE_CHUNK);
        for (number, checked) in valid.by_ref().take(WRITE_CHUNK) {
            let id = MessageId::for_batch_row(plan.batch_id, number);
            let message = compose(&caller.account, id, checked, &options, Some(plan.batch_id), plan.at)?;
            events.extend(message.events);
            entries.push(message.entry);
        }
        state.store.accept(&events, options.topic(), entries).await?;
    }
    let invalid = errors.len() as u64;
    let record = BatchRecord {
        batch_id: plan.batch_id,
        account_id: caller.id(),
        recipients,
        accepted,
        invalid,
        created_at: plan.at,
    };
    state.store.messages().put_batch(&record).await?;
    metrics::counter!(m::MESSAGES_ACCEPTED, "kind" => "batch").increment(accepted);
    let errors_truncated = errors.len() > MAX_LISTED_ERRORS;
    errors.truncate(MAX_LISTED_ERRORS);
    let answer =
        BatchAccepted { batch_id: plan.batch_id.to_string(), recipients, accepted, invalid, errors, errors_truncated };
    let json = serde_json::to_string(&answer).map_err(anyhow::Error::from)?;
    if let Some(key) = key {
        idempotency::finish(&state, &caller, &key, 202, &json).await?;
    }
    Ok(HttpResponse::Accepted().content_type("application/json").body(json))
}

/// A batch and its messages by status.
#[utoipa::path(
    get, path = "/v1/batches/{id}", tag = "batches",
    params(("id" = String, Path, description = "Batch id")),
    responses((status = 200, body = BatchStatus), (status = 404, body = crate::error::Problem)),
    security(("api_key" = []))
)]
#[get("/v1/batches/{id}")]
#[tracing::instrument(skip_all, fields(account_id = %caller.id(), batch_id = %id))]
pub async fn get_batch(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let not_found = || ApiError::NotFound(format!("no batch {id} in this account"));
    let batch_id: BatchId = id.parse().map_err(|_| not_found())?;
    let record =
        state.store.messages().batch(batch_id).await?.filter(|b| b.account_id == caller.id()).ok_or_else(not_found)?;
    let counts = state.store.messages().batch_counts(batch_id).await?;
    Ok(HttpResponse::Ok().json(BatchStatus {
        batch_id: batch_id.to_string(),
        recipients: record.recipients,
        accepted: record.accepted,
        invalid: record.invalid,
        statuses: counts.into_iter().map(|(s, n)| (s.as_str().to_owned(), n)).collect(),
        created_at: record.created_at,
    }))
}
