//! What `tern up` sets up on its first start and shows on every start: the
//! admin token and a demo account with a balance, a price plan and an API
//! key. The account is made through the admin API, as an operator would.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The demo account's price per segment, in cents.
pub const PRICE_PER_SEGMENT: i64 = 5;
/// The demo account's first top-up, in cents.
const TOP_UP: i64 = 100_000;
const TOKEN_FILE: &str = "admin-token";
const DEMO_FILE: &str = "demo.json";

/// The demo account and its key, kept in the data directory: the key is
/// shown only once by the API, and a restarted `tern up` shows it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Demo {
    pub account_id: String,
    pub api_key: String,
}

/// `TERN_ADMIN_TOKEN` if set; else the token this data directory was given
/// on its first start; else a new random one, kept there.
pub fn admin_token(data_dir: &Path) -> anyhow::Result<String> {
    if let Some(token) = std::env::var("TERN_ADMIN_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        return Ok(token);
    }
    let file = data_dir.join(TOKEN_FILE);
    if let Ok(token) = std::fs::read_to_string(&file)
        && !token.trim().is_empty()
    {
        return Ok(token.trim().to_owned());
    }
    let token: String = rand::random::<[u8; 24]>().iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("tern_admin_{token}");
    write_private(&file, token.as_bytes())?;
    Ok(token)
}

/// The demo account, created on the first start.
pub async fn ensure(api_url: &str, admin_token: &str, data_dir: &Path) -> anyhow::Result<Demo> {
    let file = data_dir.join(DEMO_FILE);
    if let Ok(text) = std::fs::read_to_string(&file) {
        return serde_json::from_str(&text).with_context(|| format!("{} is not readable; remove it", file.display()));
    }
    let admin = Admin { http: reqwest::Client::new(), url: api_url, token: admin_token };
    let account = admin
        .post(
            "/admin/v1/accounts",
            json!({"name": "Demo", "currency": "EUR", "price_plan": {"default": PRICE_PER_SEGMENT}}),
        )
        .await?;
    let account_id = account["id"].as_str().context("the admin API answered an account without an id")?.to_owned();
    admin
        .post(
            &format!("/admin/v1/accounts/{account_id}/top-ups"),
            json!({"amount": TOP_UP, "reference": "tern-up-demo"}),
        )
        .await?;
    let key = admin.post(&format!("/admin/v1/accounts/{account_id}/keys"), json!({"name": "demo"})).await?;
    let api_key = key["key"].as_str().context("the admin API answered a key without the key")?.to_owned();
    let demo = Demo { account_id, api_key };
    write_private(&file, &serde_json::to_vec_pretty(&demo)?)?;
    Ok(demo)
}

struct Admin<'a> {
    http: reqwest::Client,
    url: &'a str,
    token: &'a str,
}

impl Admin<'_> {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach the API at {}", self.url))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!("setting up the demo account: POST {path} answered {status}: {answer}");
        }
        Ok(answer)
    }
}

/// Writes a file only its owner can read: it holds credentials.
fn write_private(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(file).with_context(|| format!("cannot write {}", file.display()))?;
    std::io::Write::write_all(&mut out, bytes).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}
