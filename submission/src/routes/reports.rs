//! `/v1/reports/summary`: the account's traffic and revenue from the
//! reporting store the projector builds (so figures trail the journal by
//! the projector's lag).

use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tern_reporting::{GroupBy, ReportingError};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::{AppState, body};

/// The widest range one request may cover, in days.
pub const MAX_DAYS: i64 = 366;
/// The range when none is given: the last 30 days, today included.
const DEFAULT_DAYS: i64 = 30;

/// `GET /v1/reports/summary` parameters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// First day (UTC, `YYYY-MM-DD`, inclusive); default: 29 days before `to`.
    pub from: Option<String>,
    /// Last day (UTC, `YYYY-MM-DD`, inclusive); default: today.
    pub to: Option<String>,
    /// `day` (default), `country` or `status`.
    pub group_by: Option<String>,
}

/// One group's totals.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SummaryGroup {
    /// The day (`YYYY-MM-DD`), country (ISO code, `""` when unknown) or status.
    pub key: String,
    /// Messages accepted in the range, in this group.
    pub messages: i64,
    /// Their SMS segments.
    pub segments: i64,
    /// What they cost the account, net of refunds, in minor units of `currency`.
    pub revenue: i64,
}

/// The account's summary.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    /// The account.
    pub account_id: String,
    /// First day covered.
    pub from: String,
    /// Last day covered.
    pub to: String,
    /// How `data` is grouped.
    pub group_by: String,
    /// The account's currency.
    pub currency: String,
    /// One entry per group with traffic, ordered by key.
    pub data: Vec<SummaryGroup>,
    /// Sums over `data`.
    pub total: SummaryGroup,
}

fn day(field: &str, value: Option<&str>, default: NaiveDate) -> ApiResult<NaiveDate> {
    let Some(value) = value else { return Ok(default) };
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| ApiError::field(field, format!("{field} must be a date as YYYY-MM-DD, not {value:?}")))
}

/// The checked parameters: days, grouping.
pub fn parse(q: &SummaryQuery, today: NaiveDate) -> ApiResult<(NaiveDate, NaiveDate, GroupBy)> {
    let group_by = match q.group_by.as_deref() {
        None => GroupBy::Day,
        Some(name) => GroupBy::parse(name).ok_or_else(|| {
            ApiError::field("group_by", format!("group_by must be one of {}", GroupBy::NAMES.join(", ")))
        })?,
    };
    let to = day("to", q.to.as_deref(), today)?;
    let from = day("from", q.from.as_deref(), to - TimeDelta::days(DEFAULT_DAYS - 1))?;
    if from > to {
        return Err(ApiError::field("from", format!("from ({from}) is after to ({to})")));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::field("to", format!("the range covers more than {MAX_DAYS} days; ask for less")));
    }
    Ok((from, to, group_by))
}

/// Totals of the account's messages by day, country or status.
#[utoipa::path(
    get, path = "/v1/reports/summary", tag = "reports",
    params(SummaryQuery),
    responses(
        (status = 200, body = Summary),
        (status = 401, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem, description = "A bad date, from after to, a range over 366 days, an unknown group_by"),
        (status = 503, body = crate::error::Problem, description = "No reporting database is configured, or it does not answer"),
    ),
    security(("api_key" = []))
)]
#[get("/v1/reports/summary")]
#[tracing::instrument(skip_all, fields(account_id = %caller.id()))]
pub async fn summary(state: web::Data<AppState>, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    let q: SummaryQuery = body::query(&req)?;
    let (from, to, group_by) = parse(&q, Utc::now().date_naive())?;
    let reports = state.reports.as_ref().ok_or_else(|| {
        ApiError::NotConfigured(
            "reports are not available: this server has no reporting database ([reporting] database_url)".into(),
        )
    })?;
    let rows = reports.summary(caller.id(), from, to, group_by).await.map_err(|e| match e {
        e if e.is_transient() => ApiError::Unavailable(e.to_string()),
        ReportingError::Unexpected(e) => ApiError::Unexpected(e),
        e => ApiError::Unexpected(e.into()),
    })?;
    let data: Vec<SummaryGroup> = rows
        .into_iter()
        .map(|r| SummaryGroup { key: r.key, messages: r.messages, segments: r.segments, revenue: r.revenue })
        .collect();
    let total =
        data.iter().fold(SummaryGroup { key: "total".into(), messages: 0, segments: 0, revenue: 0 }, |mut total, g| {
            total.messages += g.messages;
            total.segments += g.segments;
            total.revenue += g.revenue;
            total
        });
    Ok(HttpResponse::Ok().json(Summary {
        account_id: caller.id().to_string(),
        from: from.to_string(),
        to: to.to_string(),
        group_by: group_by.as_str().to_owned(),
        currency: caller.account.currency.clone(),
        data,
        total,
    }))
}
