//! The OpenAPI 3.1 document, generated from the handlers and their types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{account, admin, batches, health, inbound, messages, reports, routing};

/// Everything the API serves.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Tern API", description = "Send SMS, follow their status, manage accounts. Errors are RFC 7807 problem documents."),
    paths(
        messages::send, messages::get_message, messages::list, messages::cancel,
        batches::create, batches::get_batch,
        account::balance,
        inbound::list,
        reports::summary,
        admin::create_account, admin::list_accounts, admin::get_account, admin::update_account,
        admin::suspend, admin::reinstate, admin::top_up, admin::create_key, admin::list_keys, admin::revoke_key,
        routing::get_routing, routing::put_routing,
        health::healthz, health::readyz,
    ),
    modifiers(&Security),
    tags(
        (name = "messages", description = "Single sends and their status"),
        (name = "batches", description = "Bulk sends"),
        (name = "account", description = "The caller's account"),
        (name = "inbound", description = "Messages handsets sent to the account"),
        (name = "reports", description = "Traffic and revenue from the reporting store"),
        (name = "admin", description = "Operator API (admin token)"),
        (name = "operations", description = "Health"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        components.add_security_scheme("api_key", bearer());
        components.add_security_scheme("admin_token", bearer());
    }
}
