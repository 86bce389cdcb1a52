//! The web UI: one self-contained page (HTML, CSS and JavaScript embedded in the binary) that
//! drives the same `/api` as every other tool, with the user's basic-auth credentials. Charts are
//! SVG drawn by the page from the API's history samples (`mgmt::history`); nothing is fetched
//! from anywhere but this broker, so the page works without internet access and has no build step.
//!
//! Runs in: the management server's tasks (static responses).
//!
//! # Invariants
//! - The page holds no data of its own and needs no login to load; every call it makes goes through
//!   the authenticated API, so it can do exactly what its user may do.
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The page.
const INDEX: &str = include_str!("ui/index.html");

async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX)
}

/// `/` and `/index.html` (RabbitMQ's UI paths).
pub fn router() -> Router {
    Router::new().route("/", get(index)).route("/index.html", get(index))
}
