//! The HTTP API of stream protocol connections, publishers and consumers, RabbitMQ's
//! (`rabbitmq_stream_management`): `GET /api/stream/connections[/{vhost}[/{name}]]`, `DELETE
//! /api/stream/connections/{vhost}/{name}`, `GET /api/stream/connections/{vhost}/{name}/publishers`
//! and `.../consumers`, `GET /api/stream/publishers[/{vhost}[/{stream}]]`, `GET
//! /api/stream/consumers[/{vhost}]`.
//!
//! Runs in: the management server's request tasks.
//!
//! # Invariants
//! - A user sees the connections (and their publishers and consumers) it may see in the AMQP
//!   listings: its own, or all with the monitoring or administrator tag.
use super::{no_content, ok_json, ApiError, Mgmt, MgmtUser, Resp};
use crate::streamproto::registry::StreamConn;
use axum::extract::{Path, State};
use axum::Extension;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

type St = State<Arc<Mgmt>>;
type U = Extension<MgmtUser>;

fn visible(m: &Mgmt, u: &MgmtUser) -> Vec<Arc<StreamConn>> {
    m.broker.stream_conns.list().into_iter().filter(|c| u.sees_all() || c.user == u.name).collect()
}

fn props(p: &[(String, String)]) -> Value {
    Value::Object(p.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>())
}

fn connection(c: &StreamConn) -> Value {
    let user_name = c.client_properties.iter().find(|(k, _)| k == "connection_name").map(|(_, v)| v.clone());
    json!({
        "name": c.name,
        "node": crate::node::name(),
        "protocol": "stream",
        "user": c.user,
        "vhost": c.vhost,
        "auth_mechanism": "PLAIN",
        "host": c.local.ip().to_string(),
        "port": c.local.port(),
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "frame_max": c.frame_max,
        "timeout": c.heartbeat,
        "user_provided_name": user_name,
        "client_properties": props(&c.client_properties),
        "connected_at": c.connected_at,
        "state": "running",
        "ssl": false,
        "recv_oct": c.recv_oct.load(Ordering::Relaxed),
        "send_oct": c.send_oct.load(Ordering::Relaxed),
    })
}

fn details(c: &StreamConn) -> Value {
    json!({
        "name": c.name,
        "node": crate::node::name(),
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "user": c.user,
    })
}

fn publishers_of(c: &StreamConn) -> Vec<Value> {
    let mut v: Vec<_> = c.publishers.lock().values().cloned().collect();
    v.sort_by_key(|p| p.publisher_id);
    v.iter()
        .map(|p| {
            json!({
                "publisher_id": p.publisher_id,
                "reference": p.reference,
                "published": p.published.load(Ordering::Relaxed),
                "confirmed": p.confirmed.load(Ordering::Relaxed),
                "errored": p.errored.load(Ordering::Relaxed),
                "queue": {"name": p.stream, "vhost": c.vhost},
                "connection_details": details(c),
            })
        })
        .collect()
}

fn consumers_of(m: &Mgmt, c: &StreamConn) -> Vec<Value> {
    let mut v: Vec<_> = c.consumers.lock().values().cloned().collect();
    v.sort_by_key(|s| s.subscription_id);
    let vhost = m.broker.vhost(&c.vhost);
    v.iter()
        .map(|s| {
            let offset = s.offset.load(Ordering::Relaxed);
            let end = vhost
                .as_ref()
                .and_then(|v| v.queue(&warren_protocol::ShortStr::from(s.stream.clone())))
                .and_then(|q| q.stream_stats())
                .map(|(_, next, _, _)| next)
                .unwrap_or(offset);
            json!({
                "subscription_id": s.subscription_id,
                "consumed": s.consumed.load(Ordering::Relaxed),
                "credits": s.credits.load(Ordering::Relaxed),
                "offset": offset,
                "offset_lag": end.saturating_sub(offset),
                "active": s.active.load(Ordering::Relaxed),
                "properties": props(&s.properties),
                "queue": {"name": s.stream, "vhost": c.vhost},
                "connection_details": details(c),
            })
        })
        .collect()
}

fn find(m: &Mgmt, u: &MgmtUser, vhost: &str, name: &str) -> Result<Arc<StreamConn>, ApiError> {
    visible(m, u).into_iter().find(|c| c.vhost == vhost && c.name == name).ok_or_else(ApiError::not_found)
}

/// `GET /api/stream/connections`.
pub async fn connections(State(m): St, Extension(u): U) -> Resp {
    ok_json(Value::Array(visible(&m, &u).iter().map(|c| connection(c)).collect()))
}

/// `GET /api/stream/connections/{vhost}`.
pub async fn connections_in(State(m): St, Extension(u): U, Path(vhost): Path<String>) -> Resp {
    m.vhost_for(&u, &vhost)?;
    ok_json(Value::Array(visible(&m, &u).iter().filter(|c| c.vhost == vhost).map(|c| connection(c)).collect()))
}

/// `GET /api/stream/connections/{vhost}/{name}`.
pub async fn connection_one(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    let c = find(&m, &u, &vhost, &name)?;
    ok_json(connection(&c))
}

/// `DELETE /api/stream/connections/{vhost}/{name}`: close it.
pub async fn connection_close(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    let c = find(&m, &u, &vhost, &name)?;
    c.close("Closed via management plugin");
    no_content()
}

/// `GET /api/stream/connections/{vhost}/{name}/publishers`.
pub async fn connection_publishers(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    let c = find(&m, &u, &vhost, &name)?;
    ok_json(Value::Array(publishers_of(&c)))
}

/// `GET /api/stream/connections/{vhost}/{name}/consumers`.
pub async fn connection_consumers(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    let c = find(&m, &u, &vhost, &name)?;
    ok_json(Value::Array(consumers_of(&m, &c)))
}

/// `GET /api/stream/publishers`.
pub async fn publishers(State(m): St, Extension(u): U) -> Resp {
    ok_json(Value::Array(visible(&m, &u).iter().flat_map(|c| publishers_of(c)).collect()))
}

/// `GET /api/stream/publishers/{vhost}`.
pub async fn publishers_in(State(m): St, Extension(u): U, Path(vhost): Path<String>) -> Resp {
    m.vhost_for(&u, &vhost)?;
    ok_json(Value::Array(visible(&m, &u).iter().filter(|c| c.vhost == vhost).flat_map(|c| publishers_of(c)).collect()))
}

/// `GET /api/stream/publishers/{vhost}/{stream}`.
pub async fn publishers_of_stream(
    State(m): St,
    Extension(u): U,
    Path((vhost, stream)): Path<(String, String)>,
) -> Resp {
    m.vhost_for(&u, &vhost)?;
    let rows = visible(&m, &u)
        .iter()
        .filter(|c| c.vhost == vhost)
        .flat_map(|c| publishers_of(c))
        .filter(|p| p["queue"]["name"] == stream.as_str())
        .collect();
    ok_json(Value::Array(rows))
}

/// `GET /api/stream/consumers`.
pub async fn consumers(State(m): St, Extension(u): U) -> Resp {
    ok_json(Value::Array(visible(&m, &u).iter().flat_map(|c| consumers_of(&m, c)).collect()))
}

/// `GET /api/stream/consumers/{vhost}`.
pub async fn consumers_in(State(m): St, Extension(u): U, Path(vhost): Path<String>) -> Resp {
    m.vhost_for(&u, &vhost)?;
    ok_json(Value::Array(
        visible(&m, &u).iter().filter(|c| c.vhost == vhost).flat_map(|c| consumers_of(&m, c)).collect(),
    ))
}
