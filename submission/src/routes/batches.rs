//! `/v1/batches`: one template, many recipients (JSON or CSV), and the
//! batch's progress.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tern_core::{BatchId, MessageId};
use tern_queue::BatchRecord;

use crate::auth::Caller;
use crate::compose::{FieldError, Options, RawOptions, check_message, check_options, compose};
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

/// The batch options of a CSV upload, from the query string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvOptions {
    from: String,
    body: String,
    send_at: Option<String>,
    validity: Option<u64>,
    expires_at: Option<String>,
    callback_url: Option<String>,
    priority: Option<u8>,
    #[serde(default)]
    all_or_nothing: bool,
}

/// A parsed request: options, the template and its rows (1-based numbers).
struct Parsed {
    options: RawOptions,
    template: String,
    all_or_nothing: bool,
    rows: Vec<Result<Recipient, RowError>>,
}

fn parse_json(bytes: &[u8]) -> ApiResult<Parsed> {
    let request: CreateBatch = body::json(bytes)?;
    Ok(Parsed {
        options: RawOptions {
            from: request.from,
            send_at: request.send_at,
            validity: request.validity,
            expires_at: request.expires_at,
            callback_url: request.callback_url,
            client_ref: None,
            priority: request.priority,
        },
        template: request.body,
        all_or_nothing: request.all_or_nothing,
        rows: request.recipients.into_iter().map(Ok).collect(),
    })
}

/// CSV: a header row naming the columns; `to` is the recipient, an optional
/// `client_ref` column is the message's reference, every other column is a
/// template variable. Rows are read one at a time.
fn parse_csv(req: &HttpRequest, bytes: &[u8], max_rows: usize) -> ApiResult<Parsed> {
    let options: CsvOptions = body::query(req)?;
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
    Ok(Parsed {
        options: RawOptions {
            from: options.from,
            send_at: options.send_at,
            validity: options.validity,
            expires_at: options.expires_at,
            callback_url: options.callback_url,
            client_ref: None,
            priority: options.priority,
        },
        template: options.body,
        all_or_nothing: options.all_or_nothing,
        rows,
    })
}

fn too_many(max: usize) -> ApiError {
    ApiError::field("recipients", format!("a batch holds at most {max} recipients; split it"))
}

/// One row's text and options, or why the row is invalid.
fn render(
    template: &Template,
    options: &Options,
    number: u64,
    row: &Result<Recipient, RowError>,
) -> Result<(String, Options), RowError> {
    let recipient = row.as_ref().map_err(Clone::clone)?;
    let text = template.render(&recipient.variables).map_err(|missing| RowError {
        row: number,
        field: format!("variables.{missing}"),
        reason: format!("the template uses {{{missing}}} but this row has no value for it"),
    })?;
    if let Some(r) = &recipient.client_ref
        && (r.is_empty() || r.chars().count() > 128 || r.chars().any(char::is_control))
    {
        return Err(RowError {
            row: number,
            field: "client_ref".into(),
            reason: "client_ref must be 1 to 128 printable characters".into(),
        });
    }
    Ok((text, Options { client_ref: recipient.client_ref.clone(), ..options.clone() }))
}

fn row_error(number: u64, e: FieldError) -> RowError {
    RowError { row: number, field: e.field, reason: e.reason }
}

/// Checks every row without building messages: the row errors, in order.
fn check_rows(
    rows: &[Result<Recipient, RowError>],
    template: &Template,
    options: &Options,
    max_segments: u16,
) -> Vec<RowError> {
    let mut errors = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let number = index as u64 + 1;
        let checked = render(template, options, number, row).and_then(|(text, _)| {
            let to = row.as_ref().map(|r| r.to.as_str()).unwrap_or_default();
            check_message(to, &text, max_segments).map_err(|e| row_error(number, e))
        });
        if let Err(e) = checked {
            errors.push(e);
        }
    }
    errors
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
    let parsed = if media.as_deref() == Some("text/csv") { parse_csv(&req, &bytes, max)? } else { parse_json(&bytes)? };
    if parsed.rows.len() > max {
        return Err(too_many(max));
    }
    if parsed.rows.is_empty() {
        return Err(ApiError::field("recipients", "the batch has no recipients"));
    }
    let template = Template::parse(&parsed.template).map_err(|reason| ApiError::field("body", reason))?;
    let recipients = parsed.rows.len() as u64;
    let max_segments = state.config.max_segments;
    let hash = idempotency_key.as_ref().map(|_| idempotency::request_hash(&req, &caller, &bytes));
    let earlier: Earlier<BatchPlan> = match (&idempotency_key, &hash) {
        (Some(key), Some(hash)) => idempotency::earlier(&state, &caller, key, hash).await?,
        _ => Earlier::None,
    };
    // Every row is checked before anything is written (a refused batch
    // writes nothing); the messages themselves are then built and written a
    // chunk at a time, so a 100,000-row batch never holds them all in memory.
    let (key, plan, mut errors) = match earlier {
        Earlier::Replay { status, body } => return Ok(replay(status, body)),
        // An unfinished earlier attempt: redo exactly its batch (same ids and time), charged once.
        Earlier::Redo { key, plan } => {
            let options = check_options(&parsed.options, &state.config, plan.at)?;
            (Some(key), plan, check_rows(&parsed.rows, &template, &options, max_segments))
        }
        Earlier::None => {
            let plan = BatchPlan { batch_id: BatchId::new(), at: Utc::now() };
            let options = check_options(&parsed.options, &state.config, plan.at)?;
            let mut errors = check_rows(&parsed.rows, &template, &options, max_segments);
            if (parsed.all_or_nothing && !errors.is_empty()) || errors.len() == parsed.rows.len() {
                errors.truncate(MAX_LISTED_ERRORS);
                return Err(ApiError::InvalidRows(errors));
            }
            let valid = parsed.rows.len() - errors.len();
            state.limiter.check_messages(caller.id(), caller.account.limits, valid as u64)?;
            match (idempotency_key, hash) {
                (Some(key), Some(hash)) => match idempotency::begin(&state, &caller, key, hash, plan).await? {
                    Step::Replay { status, body } => return Ok(replay(status, body)),
                    Step::Run { key, plan } => (Some(key), plan, errors),
                },
                _ => (None, plan, errors),
            }
        }
    };
    tracing::Span::current().record("batch_id", tracing::field::display(plan.batch_id));
    let options = check_options(&parsed.options, &state.config, plan.at)?;
    let mut accepted = 0u64;
    for (chunk_index, chunk) in parsed.rows.chunks(WRITE_CHUNK).enumerate() {
        let mut events = Vec::with_capacity(chunk.len());
        let mut entries = Vec::with_capacity(chunk.len());
        for (offset, row) in chunk.iter().enumerate() {
            let number = (chunk_index * WRITE_CHUNK + offset) as u64 + 1;
            let Ok((text, row_options)) = render(&template, &options, number, row) else { continue };
            let to = row.as_ref().map(|r| r.to.as_str()).unwrap_or_default();
            let id = MessageId::for_batch_row(plan.batch_id, number);
            // Checked above; a row cannot turn invalid in between.
            let Ok(message) =
                compose(&caller.account, id, to, &text, &row_options, Some(plan.batch_id), plan.at, max_segments)
            else {
                continue;
            };
            events.extend(message.events);
            entries.push(message.entry);
        }
        if entries.is_empty() {
            continue;
        }
        accepted += entries.len() as u64;
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
