//! `/v1/balance`.

use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::model::Balance;

/// The account's balance and credit.
#[utoipa::path(
    get, path = "/v1/balance", tag = "account",
    responses((status = 200, body = Balance), (status = 401, body = crate::error::Problem)),
    security(("api_key" = []))
)]
#[get("/v1/balance")]
pub async fn balance(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    // Read fresh: the cached account's balance may be seconds old.
    let account = state
        .store
        .accounts()
        .account(caller.id())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {}", caller.id())))?;
    Ok(HttpResponse::Ok().json(Balance {
        account_id: account.id.to_string(),
        balance: account.balance,
        credit_limit: account.credit_limit,
        available: account.balance.saturating_add(account.credit_limit),
        currency: account.currency,
    }))
}
