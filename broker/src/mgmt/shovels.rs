//! The HTTP API of runtime parameters and shovels, RabbitMQ's (`rabbitmq_shovel_management`):
//! `GET /api/parameters[/{component}[/{vhost}[/{name}]]]`, `PUT / DELETE
//! /api/parameters/shovel/{vhost}/{name}` (body `{"value": {...}}`), `GET /api/shovels[/{vhost}]`
//! (status), `DELETE /api/shovels/vhost/{vhost}/{name}` and `DELETE
//! /api/shovels/vhost/{vhost}/{name}/restart`.
//!
//! Runs in: the management server's request tasks.
//!
//! # Invariants
//! - Changes go through `Broker::set_shovel` / `clear_shovel` (validation is the core's) and are
//!   answered after the definitions file has them.
//! - Setting or deleting a parameter needs the `policymaker` (or `administrator`) tag and
//!   permissions in the vhost, as RabbitMQ; listings show only vhosts the user may use.
use super::{created_or_updated, no_content, ok_json, ApiError, Mgmt, MgmtUser, Resp};
use crate::shovel::{Entry, State as ShovelState};
use axum::extract::{Path, State};
use axum::{body::Bytes, Extension};
use serde_json::{json, Map, Value};
use std::sync::Arc;

type St = State<Arc<Mgmt>>;
type U = Extension<MgmtUser>;

/// The components Warren has runtime parameters of.
const COMPONENTS: &[&str] = &["shovel", "operator_policy", "vhost-limits"];

use super::api::require_policymaker;

/// Every runtime parameter in the vhosts `u` may use, optionally of one component and vhost.
fn params(m: &Mgmt, u: &MgmtUser, component: Option<&str>, vhost: Option<&str>) -> Vec<Value> {
    crate::definitions::parameters(&m.broker)
        .into_iter()
        .filter(|p| component.is_none_or(|c| p["component"] == c))
        .filter(|p| vhost.is_none_or(|v| p["vhost"] == v))
        .filter(|p| p["vhost"].as_str().is_some_and(|v| m.may_use_vhost(u, v)))
        .collect()
}

/// `GET /api/parameters`.
pub async fn all(State(m): St, Extension(u): U) -> Resp {
    ok_json(Value::Array(params(&m, &u, None, None)))
}

/// `GET /api/parameters/{component}`.
pub async fn of_component(State(m): St, Extension(u): U, Path(component): Path<String>) -> Resp {
    if !COMPONENTS.contains(&component.as_str()) {
        return Err(ApiError::not_found());
    }
    ok_json(Value::Array(params(&m, &u, Some(&component), None)))
}

/// `GET /api/parameters/{component}/{vhost}`.
pub async fn of_vhost(State(m): St, Extension(u): U, Path((component, vhost)): Path<(String, String)>) -> Resp {
    m.vhost_for(&u, &vhost)?;
    if !COMPONENTS.contains(&component.as_str()) {
        return Err(ApiError::not_found());
    }
    ok_json(Value::Array(params(&m, &u, Some(&component), Some(&vhost))))
}

/// `GET /api/parameters/{component}/{vhost}/{name}`.
pub async fn one(
    State(m): St,
    Extension(u): U,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> Resp {
    m.vhost_for(&u, &vhost)?;
    params(&m, &u, Some(&component), Some(&vhost))
        .into_iter()
        .find(|p| p["name"] == name.as_str())
        .map_or(Err(ApiError::not_found()), ok_json)
}

/// Only shovels are set through `/api/parameters` (operator policies and vhost limits have
/// their own endpoints, which RabbitMQ's tools use).
fn shovel_component(component: &str) -> Result<(), ApiError> {
    match component {
        "shovel" => Ok(()),
        c if COMPONENTS.contains(&c) => {
            Err(ApiError::bad_request(format!("set component '{c}' through its own endpoint (/api/{c}s)")))
        }
        _ => Err(ApiError::not_found()),
    }
}

/// `PUT /api/parameters/shovel/{vhost}/{name}` with `{"value": {...}}`.
pub async fn put(
    State(m): St,
    Extension(u): U,
    Path((component, vhost, name)): Path<(String, String, String)>,
    body: Bytes,
) -> Resp {
    shovel_component(&component)?;
    require_policymaker(&u)?;
    m.vhost_for(&u, &vhost)?;
    let b: Map<String, Value> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(ApiError::bad_request("Validation failed\n\nnot a JSON object\n")),
        Err(e) => return Err(ApiError::bad_request(format!("failed to decode JSON: {e}"))),
    };
    let value = b
        .get("value")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("Validation failed\n\nKey \"value\" not found\n"))?;
    let created = match m.broker.set_shovel(&vhost, &name, value) {
        Ok(c) => c,
        Err(None) => return Err(ApiError::not_found()),
        Err(Some(reason)) => return Err(ApiError::bad_request(reason)),
    };
    m.durable_sync().await;
    created_or_updated(created)
}

/// `DELETE /api/parameters/shovel/{vhost}/{name}`.
pub async fn delete(
    State(m): St,
    Extension(u): U,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> Resp {
    shovel_component(&component)?;
    clear(&m, &u, &vhost, &name).await
}

/// Delete a shovel (both DELETE endpoints).
async fn clear(m: &Mgmt, u: &MgmtUser, vhost: &str, name: &str) -> Resp {
    require_policymaker(u)?;
    m.vhost_for(u, vhost)?;
    if !m.broker.clear_shovel(vhost, name) {
        return Err(ApiError::not_found());
    }
    m.durable_sync().await;
    no_content()
}

/// RabbitMQ's shovel status timestamp: `2026-12-03 8:48:55` (UTC here).
fn status_time(ms: u64) -> String {
    let t = super::views::format_timestamp(ms);
    let hour: u32 = t[11..13].parse().unwrap_or(0);
    format!("{} {hour}:{}", &t[..10], &t[14..19])
}

/// One row of `/api/shovels`, RabbitMQ's fields (URIs without credentials), with Warren's
/// counters (`forwarded`, `remaining`, `remaining_unacked`, as RabbitMQ 3.13+ shows them).
pub fn status(m: &Mgmt, e: &Entry) -> Value {
    let s = e.status.lock().clone();
    let mut o = Map::new();
    o.insert("node".into(), json!(m.node));
    o.insert("timestamp".into(), json!(status_time(s.since_ms)));
    o.insert("name".into(), json!(e.name));
    o.insert("vhost".into(), json!(e.vhost));
    o.insert("type".into(), json!("dynamic"));
    o.insert("state".into(), json!(s.state.name()));
    if let Some(r) = &s.reason {
        o.insert("reason".into(), json!(r));
    }
    if s.state == ShovelState::Running {
        let d = &e.def;
        o.insert("src_uri".into(), json!(crate::shovel::uri::redact(&d.src_uris[0])));
        o.insert("src_protocol".into(), json!("amqp091"));
        o.insert("dest_protocol".into(), json!("amqp091"));
        o.insert("dest_uri".into(), json!(crate::shovel::uri::redact(&d.dest_uris[0])));
        let named = [
            ("src_queue", &d.src_queue),
            ("src_exchange", &d.src_exchange),
            ("dest_queue", &d.dest_queue),
            ("dest_exchange", &d.dest_exchange),
            ("dest_exchange_key", &d.dest_exchange_key),
        ];
        for (k, v) in named {
            if let Some(v) = v {
                o.insert(k.into(), json!(v));
            }
        }
        if d.src_exchange.is_some() {
            o.insert("src_exchange_key".into(), json!(d.src_exchange_key));
        }
        o.insert("blocked_status".into(), json!(if s.blocked { "blocked" } else { "running" }));
        o.insert("forwarded".into(), json!(s.forwarded));
        o.insert("remaining_unacked".into(), json!(s.in_flight));
        o.insert("remaining".into(), s.remaining.map_or(json!("unlimited"), |r| json!(r)));
    }
    Value::Object(o)
}

/// `GET /api/shovels`.
pub async fn statuses(State(m): St, Extension(u): U) -> Resp {
    let rows = m.broker.shovels.all().iter().filter(|e| m.may_use_vhost(&u, &e.vhost)).map(|e| status(&m, e)).collect();
    ok_json(Value::Array(rows))
}

/// `GET /api/shovels/{vhost}`.
pub async fn statuses_in(State(m): St, Extension(u): U, Path(vhost): Path<String>) -> Resp {
    m.vhost_for(&u, &vhost)?;
    ok_json(Value::Array(m.broker.shovels.of(&vhost).iter().map(|e| status(&m, e)).collect()))
}

/// `GET /api/shovels/vhost/{vhost}/{name}`.
pub async fn status_one(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    m.vhost_for(&u, &vhost)?;
    m.broker.shovels.get(&vhost, &name).map_or(Err(ApiError::not_found()), |e| ok_json(status(&m, &e)))
}

/// `DELETE /api/shovels/vhost/{vhost}/{name}`: delete the shovel.
pub async fn status_delete(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    clear(&m, &u, &vhost, &name).await
}

/// `DELETE /api/shovels/vhost/{vhost}/{name}/restart`.
pub async fn restart(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    require_policymaker(&u)?;
    m.vhost_for(&u, &vhost)?;
    if !m.broker.shovels.restart(&vhost, &name) {
        return Err(ApiError::not_found());
    }
    no_content()
}
