//! Object names in API paths. AMQP names are short strings (at most 255 bytes): a queue, exchange
//! or binding end named in a path longer than that is refused with 400 before any handler runs,
//! instead of being cut to 255 bytes (mid-character) and created or looked up under another name.
//!
//! Runs in: the management HTTP server's request tasks, as a route layer of `/api` (after
//! routing, so the path's parameters are known and percent-decoded).
//!
//! # Invariants
//! - Every handler of `/api/queues/...`, `/api/exchanges/...` and `/api/bindings/...` sees only
//!   names that fit a short string unchanged; a path that does not decode to UTF-8 is refused by
//!   the extractor (400) and never reaches a handler.
use super::ApiError;
use axum::extract::{RawPathParams, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use warren_protocol::types::SHORTSTR_MAX;

/// The path parameters that name AMQP objects, and what RabbitMQ calls them in its reason.
const NAME_PARAMS: [&str; 3] = ["name", "src", "dst"];

/// Refuse over-long object names (RabbitMQ: `400 {"error":"bad_request","reason":"queue should be
/// less than 255 bytes, actually was 256"}`).
pub async fn check(params: RawPathParams, req: Request, next: Next) -> Response {
    let route = req.uri().path();
    let what = if route.starts_with("/api/queues/") {
        "queue"
    } else if route.starts_with("/api/exchanges/") {
        // rabbitmq-compat: RabbitMQ 3.10 creates an exchange with a longer name over HTTP, one
        // no AMQP client can then name; Warren refuses it like a queue's.
        "exchange"
    } else if route.starts_with("/api/bindings/") {
        "name"
    } else {
        return next.run(req).await;
    };
    for (k, v) in &params {
        if NAME_PARAMS.contains(&k) && v.len() > SHORTSTR_MAX {
            let reason = format!("{what} should be less than 255 bytes, actually was {}", v.len());
            return ApiError(StatusCode::BAD_REQUEST, "bad_request", reason).into_response();
        }
    }
    next.run(req).await
}
