//! The HTTP API of per-user limits, RabbitMQ's: `GET /api/user-limits`, `GET
//! /api/user-limits/{user}` (`[{"user", "value": {"max-connections": N}}]`, only users with a
//! limit), `PUT /api/user-limits/{user}/{name}` with `{"value": N}` (negative: no limit) and
//! `DELETE /api/user-limits/{user}/{name}`. Any management user may read them; changing them
//! needs `administrator`. Refusals carry RabbitMQ 3.10's reasons.
//!
//! Runs in: the management server's request tasks.
//!
//! # Invariants
//! - Changes go through `Broker::set_user_limit` / `clear_user_limit` (the core applies them)
//!   and are answered after the definitions file has them.
use super::{no_content, ok_json, ApiError, Mgmt, MgmtUser, Resp};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{body::Bytes, Extension};
use serde_json::{json, Value};
use std::sync::Arc;

type St = State<Arc<Mgmt>>;
type U = Extension<MgmtUser>;

fn row(user: &str, l: crate::user_limits::UserLimits) -> Value {
    json!({"user": user, "value": l.to_json()})
}

/// `GET /api/user-limits`.
pub async fn all(State(m): St) -> Resp {
    ok_json(Value::Array(m.broker.all_user_limits().into_iter().map(|(u, l)| row(&u, l)).collect()))
}

/// `GET /api/user-limits/{user}`.
pub async fn of(State(m): St, Path(user): Path<String>) -> Resp {
    m.broker.user(&user).ok_or_else(ApiError::not_found)?;
    let l = m.broker.user_limits(&user);
    ok_json(Value::Array((!l.is_empty()).then(|| row(&user, l)).into_iter().collect()))
}

/// `PUT /api/user-limits/{user}/{name}` with `{"value": N}`.
pub async fn put(State(m): St, Extension(u): U, Path((user, name)): Path<(String, String)>, body: Bytes) -> Resp {
    m.require_admin(&u)?;
    if m.broker.user(&user).is_none() {
        // RabbitMQ's reason here is a list (an Erlang tuple), not a string.
        let body = json!({"error": "bad_request", "reason": ["no_such_user", user]});
        return Ok((StatusCode::BAD_REQUEST, axum::Json(body)).into_response());
    }
    let b = super::body::parse(&body)?;
    // rabbitmq-compat: the reasons are RabbitMQ 3.10's, Erlang terms included.
    let Some(v) = b.get("value") else { return Err(ApiError::bad_request("[{key_missing,value}]")) };
    if !crate::user_limits::NAMES.contains(&name.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Unrecognised terms [{{<<\"{name}\">>,{}}}] in user-limits",
            erl(v)
        )));
    }
    let Some(value) = v.as_i64() else {
        return Err(ApiError::bad_request(format!("{name} should be a number, actually was {}", erl(v))));
    };
    m.broker.set_user_limit(&user, &name, value).map_err(ApiError::bad_request)?;
    m.durable_sync().await;
    no_content()
}

/// `DELETE /api/user-limits/{user}/{name}` (204 also when it was not set).
pub async fn delete(State(m): St, Extension(u): U, Path((user, name)): Path<(String, String)>) -> Resp {
    m.require_admin(&u)?;
    m.broker.clear_user_limit(&user, &name);
    m.durable_sync().await;
    no_content()
}

/// A JSON value as RabbitMQ's reasons print it: strings as Erlang binaries.
fn erl(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        other => other.to_string(),
    }
}
