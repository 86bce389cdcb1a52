//! The HTTP API of vhost limits, RabbitMQ's: `GET /api/vhost-limits`, `GET
//! /api/vhost-limits/{vhost}` (`[{"vhost", "value": {"max-queues": N}}]`), `PUT
//! /api/vhost-limits/{vhost}/{name}` with `{"value": N}` (negative: no limit) and `DELETE
//! /api/vhost-limits/{vhost}/{name}`. Reading and changing them needs the `administrator` tag.
//!
//! Runs in: the management server's request tasks.
//!
//! # Invariants
//! - Changes go through `VHost::set_limit` / `clear_limit` (the core applies them) and are
//!   answered after the definitions file has them.
use super::{no_content, ok_json, ApiError, Mgmt, MgmtUser, Resp};
use axum::extract::{Path, State};
use axum::{body::Bytes, Extension};
use serde_json::{json, Value};
use std::sync::Arc;

type St = State<Arc<Mgmt>>;
type U = Extension<MgmtUser>;

/// One vhost's row, or none when it has no limit.
fn row(v: &crate::vhost::VHost) -> Option<Value> {
    let l = v.limits();
    (!l.is_empty()).then(|| json!({"vhost": v.name, "value": l.to_json()}))
}

/// `GET /api/vhost-limits`.
pub async fn all(State(m): St, Extension(u): U) -> Resp {
    m.require_admin(&u)?;
    let mut vs = m.broker.vhosts();
    vs.sort_by(|a, b| a.name.cmp(&b.name));
    ok_json(Value::Array(vs.iter().filter_map(|v| row(v)).collect()))
}

/// `GET /api/vhost-limits/{vhost}`.
pub async fn of(State(m): St, Extension(u): U, Path(vhost): Path<String>) -> Resp {
    m.require_admin(&u)?;
    let v = m.broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    ok_json(Value::Array(row(&v).into_iter().collect()))
}

/// `PUT /api/vhost-limits/{vhost}/{name}` with `{"value": N}`.
pub async fn put(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>, body: Bytes) -> Resp {
    m.require_admin(&u)?;
    let v = m.broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    let b = super::body::parse(&body)?;
    let value = b
        .get("value")
        .and_then(|x| x.as_i64().or_else(|| x.as_str()?.trim().parse().ok()))
        .ok_or_else(|| ApiError::bad_request("value: an integer is required"))?;
    v.set_limit(&name, value).map_err(ApiError::bad_request)?;
    m.durable_sync().await;
    no_content()
}

/// `DELETE /api/vhost-limits/{vhost}/{name}`.
pub async fn delete(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    m.require_admin(&u)?;
    let v = m.broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    v.clear_limit(&name);
    m.durable_sync().await;
    no_content()
}
