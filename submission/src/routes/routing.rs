//! `/admin/v1/routing`: the routing table the workers use, replaced at run
//! time. The table is stored as the `routing` setting; every worker polls it
//! (`[routing] reload_ms`) and swaps tables without a restart. Until one is
//! stored, workers use the table in their configuration.

use actix_web::{HttpRequest, HttpResponse, get, put, web};
use tern_handlers::routing::{Action, Filters, ROUTING_SETTING, Route, RoutingError, RoutingTable};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::model::RoutingView;
use crate::{AppState, body};

/// The stored routing table.
#[utoipa::path(
    get, path = "/admin/v1/routing", tag = "admin",
    responses((
        status = 200,
        description = "The stored table and its version; version 0 and `table: null` when none was stored, \
                       in which case the workers use the table in their configuration",
        body = RoutingView,
    )),
    security(("admin_token" = []))
)]
#[get("/admin/v1/routing")]
pub async fn get_routing(_: Admin, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let view = match state.store.coordination().setting(ROUTING_SETTING).await? {
        None => RoutingView { version: 0, table: None, updated_at: None },
        Some(setting) => RoutingView {
            version: setting.version,
            // Shown as stored: this API only stores tables that compiled.
            table: Some(serde_json::from_str(&setting.value).map_err(|e| {
                anyhow::anyhow!("the stored routing table (version {}) is not JSON: {e}", setting.version)
            })?),
            updated_at: Some(setting.updated_at),
        },
    };
    Ok(HttpResponse::Ok().json(view))
}

/// Replace the routing table; the workers pick it up within `[routing] reload_ms`.
#[utoipa::path(
    put, path = "/admin/v1/routing", tag = "admin",
    request_body(
        content = Object,
        description = "A routing table: `routes` (tried in order, each with `name`, `filters` and `action`) \
                       and an optional `default` action. See docs/api.md.",
        example = json!({
            "routes": [{"name": "uk", "filters": {"countries": ["GB"]}, "action": {"failover": ["c1", "c2"]}}],
            "default": {"connector": "c1"}
        }),
    ),
    responses(
        (status = 200, description = "Stored; the answer carries its new version", body = RoutingView),
        (status = 422, description = "The table is invalid; `field` says where. Nothing was stored", body = crate::error::Problem),
    ),
    security(("admin_token" = []))
)]
#[put("/admin/v1/routing")]
pub async fn put_routing(
    _: Admin,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    body::require_json(&req)?;
    // A table of a few thousand routes is larger than a send request, and
    // only the operator can send one: it gets the batch limit.
    let table: RoutingTable = body::json(&body::read(payload, state.config.max_batch_bytes).await?)?;
    if let Err(e) = table.compile() {
        return Err(ApiError::field(error_field(&table, &e), e.to_string()));
    }
    let value = serde_json::to_value(&table).map_err(anyhow::Error::from)?;
    let version = state.store.coordination().put_setting(ROUTING_SETTING, &value.to_string()).await?;
    tracing::info!(version, routes = table.routes.len(), "routing table stored");
    // `put_setting` answers only the version; the time is read back, unless
    // another PUT has already replaced this version.
    let stored = state.store.coordination().setting(ROUTING_SETTING).await?;
    let updated_at = stored.filter(|s| s.version == version).map(|s| s.updated_at);
    Ok(HttpResponse::Ok().json(RoutingView { version, table: Some(value), updated_at }))
}

/// The most specific field a compile error is about (`routes[2].filters.senders`).
///
/// [`RoutingError`] names the route in its text (`routes[2] ("uk"): ...`) but
/// not the field, so the route is compiled again one part at a time: the
/// part that fails alone is the culprit. A route whose parts all pass alone
/// clashes with another route (a duplicate name).
fn error_field(table: &RoutingTable, error: &RoutingError) -> String {
    let message = error.to_string();
    if message.starts_with("default") {
        return "default".into();
    }
    let index = message
        .strip_prefix("routes[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(n, _)| n.parse::<usize>().ok());
    let Some((i, route)) = index.and_then(|i| table.routes.get(i).map(|r| (i, r))) else {
        return "routes".into();
    };
    let fails = |route: Route| RoutingTable { routes: vec![route], default: None }.compile().is_err();
    // A name and an action that are valid on their own, to test the others.
    let probe = |filters: Filters| Route { name: "probe".into(), filters, action: Action::Connector("probe".into()) };
    if fails(Route { name: route.name.clone(), ..probe(Filters::default()) }) {
        return format!("routes[{i}].name");
    }
    if fails(Route { action: route.action.clone(), ..probe(Filters::default()) }) {
        return format!("routes[{i}].action");
    }
    let f = &route.filters;
    let none = Filters::default;
    let parts = [
        ("countries", Filters { countries: f.countries.clone(), ..none() }),
        ("prefixes", Filters { prefixes: f.prefixes.clone(), ..none() }),
        ("accounts", Filters { accounts: f.accounts.clone(), ..none() }),
        ("resellers", Filters { resellers: f.resellers.clone(), ..none() }),
        ("senders", Filters { senders: f.senders.clone(), ..none() }),
        ("encodings", Filters { encodings: f.encodings.clone(), ..none() }),
        ("window", Filters { window: f.window.clone(), ..none() }),
    ];
    for (name, filters) in parts {
        if fails(probe(filters)) {
            return format!("routes[{i}].filters.{name}");
        }
    }
    format!("routes[{i}].name")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field_of(table: serde_json::Value) -> String {
        let table: RoutingTable = serde_json::from_value(table).unwrap();
        let error = table.compile().unwrap_err();
        error_field(&table, &error)
    }

    #[test]
    fn a_compile_error_names_the_part_at_fault() {
        let ok = json!({ "name": "ok", "action": { "connector": "c1" } });
        let route = |name: &str, filters: serde_json::Value, action: serde_json::Value| json!({ "name": name, "filters": filters, "action": action });
        let c1 = json!({ "connector": "c1" });
        let cases = [
            (json!({ "routes": [ok, route("default", json!({}), c1.clone())] }), "routes[1].name"),
            (json!({ "routes": [ok, ok] }), "routes[1].name"),
            (json!({ "routes": [route("a", json!({}), json!({ "failover": [] }))] }), "routes[0].action"),
            (
                json!({ "routes": [route("a", json!({ "countries": ["gbr"] }), c1.clone())] }),
                "routes[0].filters.countries",
            ),
            (
                json!({ "routes": [route("a", json!({ "prefixes": ["+44"] }), c1.clone())] }),
                "routes[0].filters.prefixes",
            ),
            (
                json!({ "routes": [route("a", json!({ "senders": ["(unclosed"] }), c1.clone())] }),
                "routes[0].filters.senders",
            ),
            (
                json!({ "routes": [route("a", json!({ "window": { "from": "25:00", "to": "06:00" } }), c1.clone())] }),
                "routes[0].filters.window",
            ),
            (json!({ "routes": [ok], "default": { "weighted": { "c1": 0 } } }), "default"),
        ];
        for (table, field) in cases {
            assert_eq!(field_of(table.clone()), field, "{table}");
        }
    }
}
