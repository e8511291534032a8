//! `/admin/v1`: accounts, balances and keys, for the operator (admin token).

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::Utc;
use serde::Deserialize;
use tern_core::{AccountId, PricePlan};
use tern_handlers::webhook::new_secret;
use tern_queue::{Account, AccountUpdate, RateLimits};

use crate::auth::{Admin, new_key};
use crate::error::{ApiError, ApiResult};
use crate::model::{
    AccountView, CreateAccount, CreateKey, KeyCreated, KeyView, Page, TopUpDone, TopUpRequest, UpdateAccount,
};
use crate::{AppState, body};

fn view(a: &Account) -> AccountView {
    AccountView {
        id: a.id.to_string(),
        name: a.name.clone(),
        parent_id: a.parent_id.map(|p| p.to_string()),
        currency: a.currency.clone(),
        balance: a.balance,
        credit_limit: a.credit_limit,
        price_plan: a.price_plan.clone(),
        requests_per_second: a.limits.requests_per_second,
        messages_per_second: a.limits.messages_per_second,
        callback_url: a.callback_url.clone(),
        inbound_url: a.inbound_url.clone(),
        webhook_secret: a.webhook_secret.clone(),
        suspended: a.suspended,
        created_at: a.created_at,
    }
}

fn account_id(id: &str) -> ApiResult<AccountId> {
    id.parse().map_err(|_| ApiError::NotFound(format!("no account {id}")))
}

async fn load(state: &AppState, id: &str) -> ApiResult<Account> {
    let parsed = account_id(id)?;
    state.store.accounts().account(parsed).await?.ok_or_else(|| ApiError::NotFound(format!("no account {id}")))
}

// The checks of an account's settings, shared by create and update so that
// both accept exactly the same values.

fn check_credit_limit(limit: i64) -> ApiResult<i64> {
    if limit < 0 {
        return Err(ApiError::field("credit_limit", "credit_limit cannot be negative"));
    }
    Ok(limit)
}

fn check_price_plan(plan: &PricePlan) -> ApiResult<()> {
    plan.validate().map_err(|e| ApiError::field("price_plan", e.to_string()))
}

fn check_limits(limits: RateLimits) -> ApiResult<RateLimits> {
    for (field, value) in
        [("requests_per_second", limits.requests_per_second), ("messages_per_second", limits.messages_per_second)]
    {
        if value == 0 {
            return Err(ApiError::field(field, format!("{field} must be at least 1")));
        }
    }
    Ok(limits)
}

fn check_url(field: &str, url: Option<&str>) -> ApiResult<Option<String>> {
    url.map(|u| crate::compose::check_url(field, u)).transpose().map_err(ApiError::from)
}

/// A PATCH field that cannot be removed: `null` is refused.
fn required<T>(field: &str, value: Option<T>) -> ApiResult<T> {
    value.ok_or_else(|| ApiError::field(field, format!("{field} cannot be null")))
}

async fn json_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> ApiResult<T> {
    body::require_json(req)?;
    body::json(&body::read(payload, state.config.max_json_bytes).await?)
}

/// Create an account (optionally a reseller's sub-account).
#[utoipa::path(
    post, path = "/admin/v1/accounts", tag = "admin", request_body = CreateAccount,
    responses((status = 201, body = AccountView), (status = 422, body = crate::error::Problem)),
    security(("admin_token" = []))
)]
#[post("/admin/v1/accounts")]
pub async fn create_account(
    _: Admin,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let request: CreateAccount = json_body(&state, &req, payload).await?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::field("name", "name must be 1 to 200 characters"));
    }
    let parent_id = match request.parent_id.as_deref() {
        None => None,
        Some(p) => {
            let parent: AccountId =
                p.parse().map_err(|_| ApiError::field("parent_id", format!("{p:?} is not an account id")))?;
            let found = state.store.accounts().account(parent).await?;
            let found = found.ok_or_else(|| ApiError::field("parent_id", format!("no account {p}")))?;
            if found.parent_id.is_some() {
                return Err(ApiError::field("parent_id", "a sub-account cannot have sub-accounts of its own"));
            }
            Some(parent)
        }
    };
    let currency = request.currency.unwrap_or_else(|| "EUR".into());
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::field("currency", "currency must be an ISO 4217 code such as EUR"));
    }
    let credit_limit = check_credit_limit(request.credit_limit.unwrap_or(0))?;
    if let Some(plan) = &request.price_plan {
        check_price_plan(plan)?;
    }
    let defaults = RateLimits::default();
    let limits = check_limits(RateLimits {
        requests_per_second: request.requests_per_second.unwrap_or(defaults.requests_per_second),
        messages_per_second: request.messages_per_second.unwrap_or(defaults.messages_per_second),
    })?;
    let callback_url = check_url("callback_url", request.callback_url.as_deref())?;
    let inbound_url = check_url("inbound_url", request.inbound_url.as_deref())?;
    let account = Account {
        id: AccountId::new(),
        name: name.to_owned(),
        parent_id,
        currency,
        balance: 0,
        credit_limit,
        price_plan: request.price_plan,
        limits,
        callback_url,
        inbound_url,
        // Every account gets one, so its webhooks are signed from the first.
        webhook_secret: Some(new_secret()),
        suspended: false,
        created_at: Utc::now(),
    };
    state.store.accounts().create_account(&account).await?;
    tracing::info!(account_id = %account.id, "account created");
    Ok(HttpResponse::Created().json(view(&account)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListAccounts {
    /// Only this reseller's sub-accounts.
    parent_id: Option<String>,
    /// From a previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// List accounts.
#[utoipa::path(
    get, path = "/admin/v1/accounts", tag = "admin", params(ListAccounts),
    responses((status = 200, body = Page<AccountView>)),
    security(("admin_token" = []))
)]
#[get("/admin/v1/accounts")]
pub async fn list_accounts(_: Admin, state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    let q: ListAccounts = body::query(&req)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "limit must be between 1 and 1000"));
    }
    let parse =
        |field: &str, v: &str| v.parse().map_err(|_| ApiError::field(field, format!("{v:?} is not an account id")));
    let parent = q.parent_id.as_deref().map(|p| parse("parent_id", p)).transpose()?;
    let after = q.cursor.as_deref().map(|c| parse("cursor", c)).transpose()?;
    let accounts = state.store.accounts().list_accounts(parent, after, limit).await?;
    let next_cursor = (accounts.len() == limit).then(|| accounts.last().map(|a| a.id.to_string())).flatten();
    Ok(HttpResponse::Ok().json(Page { data: accounts.iter().map(view).collect(), next_cursor }))
}

/// One account.
#[utoipa::path(
    get, path = "/admin/v1/accounts/{id}", tag = "admin",
    responses((status = 200, body = AccountView), (status = 404, body = crate::error::Problem)),
    security(("admin_token" = []))
)]
#[get("/admin/v1/accounts/{id}")]
pub async fn get_account(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(view(&load(&state, &id).await?)))
}

/// Change an account's settings: only the fields present change; `null`
/// removes a URL or the price plan; `rotate_webhook_secret: true` issues a
/// new signing secret.
#[utoipa::path(
    patch, path = "/admin/v1/accounts/{id}", tag = "admin", request_body = UpdateAccount,
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "The updated account", body = AccountView),
        (status = 404, body = crate::error::Problem),
        (status = 422, description = "A field is invalid", body = crate::error::Problem),
    ),
    security(("admin_token" = []))
)]
#[patch("/admin/v1/accounts/{id}")]
pub async fn update_account(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let current = load(&state, &id).await?;
    let request: UpdateAccount = json_body(&state, &req, payload).await?;
    let mut update = AccountUpdate::default();
    if let Some(url) = request.callback_url {
        update.callback_url = Some(check_url("callback_url", url.as_deref())?);
    }
    if let Some(url) = request.inbound_url {
        update.inbound_url = Some(check_url("inbound_url", url.as_deref())?);
    }
    if let Some(limit) = request.credit_limit {
        update.credit_limit = Some(check_credit_limit(required("credit_limit", limit)?)?);
    }
    if let Some(plan) = request.price_plan {
        if let Some(plan) = &plan {
            check_price_plan(plan)?;
        }
        update.price_plan = Some(plan);
    }
    if request.requests_per_second.is_some() || request.messages_per_second.is_some() {
        // The store replaces both limits together, so the one not given is
        // the current one. Two admins changing one limit each at the same
        // instant could undo each other; admin changes are rare and manual.
        let requests = request.requests_per_second.map(|r| required("requests_per_second", r)).transpose()?;
        let messages = request.messages_per_second.map(|m| required("messages_per_second", m)).transpose()?;
        update.limits = Some(check_limits(RateLimits {
            requests_per_second: requests.unwrap_or(current.limits.requests_per_second),
            messages_per_second: messages.unwrap_or(current.limits.messages_per_second),
        })?);
    }
    if request.rotate_webhook_secret == Some(true) {
        update.webhook_secret = Some(new_secret());
    }
    let account = state
        .store
        .accounts()
        .update_account(current.id, &update)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {id}")))?;
    // Authenticated callers carry a cached copy of their account (limits, URLs).
    state.auth.clear();
    tracing::info!(
        account_id = %account.id,
        secret_rotated = update.webhook_secret.is_some(),
        "account settings changed"
    );
    Ok(HttpResponse::Ok().json(view(&account)))
}

async fn set_suspended(state: &AppState, id: &str, suspended: bool) -> ApiResult<HttpResponse> {
    let parsed = account_id(id)?;
    let account = state
        .store
        .accounts()
        .set_suspended(parsed, suspended)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {id}")))?;
    state.auth.clear();
    tracing::info!(account_id = %id, suspended, "account suspension changed");
    Ok(HttpResponse::Ok().json(view(&account)))
}

/// Suspend an account: its keys stop working until it is reinstated.
#[utoipa::path(
    post, path = "/admin/v1/accounts/{id}/suspend", tag = "admin",
    responses((status = 200, body = AccountView), (status = 404, body = crate::error::Problem)),
    security(("admin_token" = []))
)]
#[post("/admin/v1/accounts/{id}/suspend")]
pub async fn suspend(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    set_suspended(&state, &id, true).await
}

/// Reinstate a suspended account.
#[utoipa::path(
    post, path = "/admin/v1/accounts/{id}/reinstate", tag = "admin",
    responses((status = 200, body = AccountView), (status = 404, body = crate::error::Problem)),
    security(("admin_token" = []))
)]
#[post("/admin/v1/accounts/{id}/reinstate")]
pub async fn reinstate(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    set_suspended(&state, &id, false).await
}

/// Add to an account's balance, once per reference.
#[utoipa::path(
    post, path = "/admin/v1/accounts/{id}/top-ups", tag = "admin", request_body = TopUpRequest,
    responses((status = 200, body = TopUpDone), (status = 404, body = crate::error::Problem)),
    security(("admin_token" = []))
)]
#[post("/admin/v1/accounts/{id}/top-ups")]
pub async fn top_up(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let parsed = account_id(&id)?;
    let request: TopUpRequest = json_body(&state, &req, payload).await?;
    if request.amount <= 0 {
        return Err(ApiError::field("amount", "amount must be a positive number of minor units"));
    }
    let reference = request.reference.trim();
    if reference.is_empty() || reference.len() > 200 {
        return Err(ApiError::field("reference", "reference must be 1 to 200 characters"));
    }
    let done = state
        .store
        .accounts()
        .top_up(parsed, request.amount, &format!("top-up/{parsed}/{reference}"), Utc::now())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {id}")))?;
    Ok(HttpResponse::Ok().json(TopUpDone { balance: done.balance, duplicate: done.duplicate }))
}

/// Create an API key; the answer is the only time the key is shown.
#[utoipa::path(
    post, path = "/admin/v1/accounts/{id}/keys", tag = "admin", request_body = CreateKey,
    responses((status = 201, body = KeyCreated), (status = 404, body = crate::error::Problem)),
    security(("admin_token" = []))
)]
#[post("/admin/v1/accounts/{id}/keys")]
pub async fn create_key(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let account = load(&state, &id).await?;
    let bytes = body::read(payload, state.config.max_json_bytes).await?;
    let request: CreateKey = if bytes.iter().all(u8::is_ascii_whitespace) {
        CreateKey::default()
    } else {
        body::require_json(&req)?;
        body::json(&bytes)?
    };
    if request.name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::field("name", "name must be at most 200 characters"));
    }
    let key = new_key(account.id, request.name);
    state.store.accounts().create_key(&key.record).await?;
    tracing::info!(account_id = %account.id, key_id = %key.record.id, "API key created");
    Ok(HttpResponse::Created().json(KeyCreated {
        id: key.record.id,
        key: key.secret,
        account_id: account.id.to_string(),
    }))
}

/// An account's keys (never their secrets).
#[utoipa::path(
    get, path = "/admin/v1/accounts/{id}/keys", tag = "admin",
    responses((status = 200, body = Vec<KeyView>), (status = 404, body = crate::error::Problem)),
    security(("admin_token" = []))
)]
#[get("/admin/v1/accounts/{id}/keys")]
pub async fn list_keys(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let account = load(&state, &id).await?;
    let keys = state.store.accounts().list_keys(account.id).await?;
    let views: Vec<KeyView> = keys
        .into_iter()
        .map(|k| KeyView { id: k.id, name: k.name, created_at: k.created_at, revoked_at: k.revoked_at })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Revoke a key: it stops working at once.
#[utoipa::path(
    delete, path = "/admin/v1/accounts/{id}/keys/{key_id}", tag = "admin",
    responses((status = 204), (status = 404, body = crate::error::Problem)),
    security(("admin_token" = []))
)]
#[delete("/admin/v1/accounts/{id}/keys/{key_id}")]
pub async fn revoke_key(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, key_id) = path.into_inner();
    let account = account_id(&id)?;
    if !state.store.accounts().revoke_key(account, &key_id, Utc::now()).await? {
        return Err(ApiError::NotFound(format!("account {id} has no key {key_id}")));
    }
    state.auth.clear();
    tracing::info!(account_id = %id, key_id = %key_id, "API key revoked");
    Ok(HttpResponse::NoContent().finish())
}
