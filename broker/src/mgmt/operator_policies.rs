//! The HTTP API of operator policies, RabbitMQ's: `GET /api/operator-policies[/{vhost}]` (any
//! management user, for the vhosts it may use), `GET / PUT / DELETE
//! /api/operator-policies/{vhost}/{name}` (administrators only), and their runtime-parameter view
//! `GET /api/parameters/operator_policy/{vhost}`. Validation and its texts are the core's
//! (`Policy::operator_from_json`).
//!
//! Runs in: the management server's request tasks.
//!
//! # Invariants
//! - Changes go through `VHost::set_operator_policy` / `clear_operator_policy` and are answered
//!   after the definitions file has them.
use super::{created_or_updated, no_content, ok_json, ApiError, Mgmt, MgmtUser, Resp};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{body::Bytes, Extension};
use serde_json::{json, Value};
use std::sync::Arc;

type St = State<Arc<Mgmt>>;
type U = Extension<MgmtUser>;

/// The vhost of a listing: 404 if missing, 401 (RabbitMQ's words) if the user may not use it.
fn listed_vhost(m: &Mgmt, u: &MgmtUser, vhost: &str) -> Result<Arc<crate::vhost::VHost>, ApiError> {
    let v = m.broker.vhost(vhost).ok_or_else(ApiError::not_found)?;
    if !m.may_use_vhost(u, vhost) {
        return Err(ApiError::not_authorised("User not authorised to access virtual host"));
    }
    Ok(v)
}

fn rows(v: &crate::vhost::VHost) -> Vec<Value> {
    v.operator_policies().iter().map(|p| p.to_json()).collect()
}

/// `GET /api/operator-policies`.
pub async fn all(State(m): St, Extension(u): U) -> Resp {
    ok_json(Value::Array(super::api::vhosts_visible(&m, &u).iter().flat_map(|v| rows(v)).collect()))
}

/// `GET /api/operator-policies/{vhost}`.
pub async fn of(State(m): St, Extension(u): U, Path(vhost): Path<String>) -> Resp {
    let v = listed_vhost(&m, &u, &vhost)?;
    ok_json(Value::Array(rows(&v)))
}

/// `GET /api/operator-policies/{vhost}/{name}` (administrators only, as RabbitMQ).
pub async fn one(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    m.require_admin(&u)?;
    let v = m.broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    let p = v.operator_policies().into_iter().find(|p| p.name == name).ok_or_else(ApiError::not_found)?;
    ok_json(p.to_json())
}

/// `PUT /api/operator-policies/{vhost}/{name}`.
pub async fn put(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>, body: Bytes) -> Resp {
    m.require_admin(&u)?;
    let Some(v) = m.broker.vhost(&vhost) else {
        let body = json!({"error": "not_found", "reason": "vhost_not_found"});
        return Ok((StatusCode::NOT_FOUND, axum::Json(body)).into_response());
    };
    // Read as sent (not through `body::parse`, which accepts a numeric string as a priority):
    // RabbitMQ refuses `"priority": "3"` here, with its own words.
    let b: serde_json::Map<String, Value> = match serde_json::from_slice::<Value>(&body) {
        _ if body.iter().all(u8::is_ascii_whitespace) => Default::default(),
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(ApiError::bad_request("Validation failed\n\nnot a JSON object\n")),
        Err(e) => return Err(ApiError::bad_request(e.to_string())),
    };
    let p = crate::policy::Policy::operator_from_json(&vhost, &name, &b).map_err(ApiError::bad_request)?;
    let created = v.set_operator_policy(p);
    m.durable_sync().await;
    created_or_updated(created)
}

/// `DELETE /api/operator-policies/{vhost}/{name}`.
pub async fn delete(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    m.require_admin(&u)?;
    let v = m.broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    if !v.clear_operator_policy(&name) {
        return Err(ApiError::not_found());
    }
    m.durable_sync().await;
    no_content()
}

/// `GET /api/parameters/operator_policy/{vhost}`: the same policies as runtime parameters.
pub async fn parameters(State(m): St, Extension(u): U, Path(vhost): Path<String>) -> Resp {
    let v = listed_vhost(&m, &u, &vhost)?;
    let items = v
        .operator_policies()
        .iter()
        .map(|p| {
            json!({
                "vhost": v.name, "component": "operator_policy", "name": p.name,
                "value": {"pattern": p.pattern, "definition": p.definition, "priority": p.priority, "apply-to": p.apply_to.name()},
            })
        })
        .collect();
    ok_json(Value::Array(items))
}
