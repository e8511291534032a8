//! What the run sets up through the admin API, as an operator would: the
//! sending accounts with their balances and keys; and the scratch
//! reporting database.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tern_core::AccountId;

use super::load::Sender;

/// Each account's top-up: enough that no message is refused for credit.
pub const TOP_UP: i64 = 1_000_000_000;
/// Price per segment, minor units.
const PRICE: i64 = 2;

/// An account of the run and what was put on it.
#[derive(Debug, Clone)]
pub struct Funded {
    /// The account and its key.
    pub sender: Sender,
    /// Topped up in all.
    pub top_ups: i64,
}

/// A free loopback address for the API.
pub fn free_address() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Creates a database `tern_stress_<tag>` on the server of `admin_url` and
/// returns its URL; it is kept after the run for inspection.
pub async fn scratch_postgres(admin_url: &str, tag: &str) -> anyhow::Result<String> {
    let name = format!("tern_stress_{tag}");
    let admin = sqlx::PgPool::connect(admin_url).await.with_context(|| format!("cannot connect to {admin_url}"))?;
    let url = crate::projector_bench::create_database(&admin, admin_url, &name).await;
    admin.close().await;
    url
}

async fn call(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let response = request.send().await.with_context(|| format!("{what}: the API did not answer"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{what} answered {status}: {body}");
    }
    Ok(body)
}

/// Creates `count` accounts with no rate limit worth the name, a price
/// plan, a top-up and a key; inbound messages go to `inbound_url`.
pub async fn accounts(api: &str, admin_token: &str, count: usize, inbound_url: &str) -> anyhow::Result<Vec<Funded>> {
    let http = reqwest::Client::new();
    let mut funded = Vec::new();
    for i in 0..count.max(1) {
        let account = call(
            http.post(format!("{api}/admin/v1/accounts")).bearer_auth(admin_token).json(&json!({
                "name": format!("Stress {i}"), "currency": "EUR", "price_plan": {"default": PRICE},
                "requests_per_second": 1_000_000, "messages_per_second": 10_000_000, "inbound_url": inbound_url,
            })),
            "creating an account",
        )
        .await?;
        let id = account["id"].as_str().context("an account without an id")?.to_owned();
        call(
            http.post(format!("{api}/admin/v1/accounts/{id}/top-ups"))
                .bearer_auth(admin_token)
                .json(&json!({"amount": TOP_UP, "reference": format!("stress-{id}")})),
            "topping up",
        )
        .await?;
        let key = call(
            http.post(format!("{api}/admin/v1/accounts/{id}/keys"))
                .bearer_auth(admin_token)
                .json(&json!({"name": "stress"})),
            "creating a key",
        )
        .await?;
        let api_key = key["key"].as_str().context("a key answer without the key")?.to_owned();
        funded.push(Funded { sender: Sender { account_id: id, api_key }, top_ups: TOP_UP });
    }
    Ok(funded)
}

/// Each account's balance as the API reports it, with its top-ups.
pub async fn balances(api: &str, accounts: &[Funded]) -> anyhow::Result<Vec<(AccountId, i64, i64)>> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for account in accounts {
        let answer =
            call(http.get(format!("{api}/v1/balance")).bearer_auth(&account.sender.api_key), "reading a balance")
                .await?;
        let balance = answer["balance"].as_i64().context("a balance answer without a balance")?;
        let id: AccountId =
            account.sender.account_id.parse().map_err(|_| anyhow::anyhow!("an unreadable account id"))?;
        out.push((id, balance, account.top_ups));
    }
    Ok(out)
}
