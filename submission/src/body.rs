//! Reading request bodies: size limits, content types and JSON errors that
//! name the offending field.

use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpMessage, HttpRequest};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// The body's media type, lower-cased, without parameters; `None` if absent.
pub fn media_type(req: &HttpRequest) -> Option<String> {
    Some(req.content_type().trim().to_ascii_lowercase()).filter(|m| !m.is_empty())
}

/// Parses the query string, refusing unknown parameters with their name.
pub fn query<T: DeserializeOwned>(req: &HttpRequest) -> ApiResult<T> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::MalformedBody(format!("the query string is invalid: {e}")))
}

/// A client still sending a body over the limit has this much more read
/// (and dropped) so it can read the 413 instead of a reset connection.
const DRAIN_BYTES: usize = 1024 * 1024;

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read(mut payload: web::Payload, limit: usize) -> ApiResult<Bytes> {
    let mut body = BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::MalformedBody(format!("the body could not be read: {e}")))?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit.saturating_add(DRAIN_BYTES) {
            break;
        }
        if seen <= limit {
            body.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(ApiError::TooLarge(format!("the body is larger than the {limit}-byte limit")));
    }
    Ok(body.freeze())
}

/// Requires a JSON content type.
pub fn require_json(req: &HttpRequest) -> ApiResult<()> {
    match media_type(req).as_deref() {
        Some("application/json") => Ok(()),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "content type {other:?} is not accepted here; send application/json"
        ))),
        None => Err(ApiError::UnsupportedMediaType("the Content-Type header is missing; send application/json".into())),
    }
}

/// Parses JSON; unknown fields, wrong types and missing fields are reported
/// with the path of the field.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedBody("the body is empty; a JSON object is expected".into()));
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::MalformedBody("the body must be a JSON object ({...})".into()));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // serde names a missing or unknown field only in its message; the path is the parent's.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| message.strip_prefix(p).map(|rest| (*p, rest)))
            .and_then(|(p, rest)| rest.split_once('`').map(|(name, _)| (p, name)));
        if let Some((prefix, name)) = named {
            let field = match (prefix.starts_with("unknown"), path.as_str()) {
                (true, _) => path,
                (false, ".") => name.to_owned(),
                (false, parent) => format!("{parent}.{name}"),
            };
            let detail = message.split(" at line ").next().unwrap_or(&message).to_owned();
            return ApiError::field(field, detail);
        }
        if inner.is_data() && path != "." {
            ApiError::field(path, inner.to_string())
        } else {
            ApiError::MalformedBody(format!("the body is not valid JSON for this request: {inner}"))
        }
    })?;
    deserializer.end().map_err(|e| ApiError::MalformedBody(format!("unexpected data after the JSON object: {e}")))?;
    Ok(value)
}
