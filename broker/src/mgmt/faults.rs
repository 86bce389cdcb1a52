//! The HTTP door of fault injection (Warren's test controls, only with `--test-controls`; 404
//! otherwise, whatever the request): `POST /api/warren/faults` applies one fault, `GET` lists
//! the applied ones, `DELETE` clears them (pending publish nacks included). Administrators only.
//!
//! A fault is a JSON object: `{"fault": KIND, <target>, ...}` where the target is one of
//! `"connection": NAME` (the API's name or the client's `connection_name`), `"user": NAME`,
//! `"vhost": NAME`, and KIND is
//! - `block` (`"reason"`) / `unblock`: send connection.blocked / unblocked;
//! - `close-connection` (`"code"`, `"text"`): connection.close with that reply code, its text
//!   the code's name and `text` (`INTERNAL_ERROR - text`), as the broker words its own;
//! - `close-channel` (`"channel"`, `"code"`, `"text"`): channel.close the same way;
//! - `delay-deliveries` (`"delay_ms"`, 0 to stop): everything sent to the client (deliveries,
//!   confirms, replies) waits that long first;
//! - `hold-confirms` / `release-confirms`: publishes are counted but not confirmed, then all
//!   confirmed at once;
//! - `drop-after-frames` (`"frames"`): the socket is dropped (no connection.close) once that many
//!   more frames were read from the client;
//! - `cancel-consumers` (`"vhost"`, `"queue"`): basic.cancel to every consumer of the queue;
//! - `nack-publishes` (`"vhost"`, `"count"`): nack the next N confirm-mode publishes.
//!
//! Runs in: the management server's request tasks.
//!
//! # Invariants
//! - Without `Config::test_controls` every route answers 404 and changes nothing.
//! - The faults are the core's (`faults.rs`); this door only reads the request and words the
//!   answer.
use super::{no_content, ok_json, ApiError, Mgmt, MgmtUser, Resp};
use crate::faults::Target;
use axum::extract::{Query, State};
use axum::{body::Bytes, Extension};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The longest delay the `delay-deliveries` fault applies (a minute: longer would only look like
/// a hung broker, and heartbeats would close the connection anyway).
const MAX_DELAY_MS: u64 = 60_000;

type St = State<Arc<Mgmt>>;
type U = Extension<MgmtUser>;

/// 404 unless the broker runs with `--test-controls`; 401 unless an administrator.
pub(super) fn enabled(m: &Mgmt, u: &MgmtUser) -> Result<(), ApiError> {
    if !m.broker.config.test_controls {
        return Err(ApiError::not_found());
    }
    m.require_admin(u)
}

fn text<'a>(b: &'a Map<String, Value>, k: &str) -> Result<&'a str, ApiError> {
    b.get(k).and_then(Value::as_str).ok_or_else(|| ApiError::bad_request(format!("{k}: a string is required")))
}

fn number(b: &Map<String, Value>, k: &str) -> Result<u64, ApiError> {
    b.get(k).and_then(Value::as_u64).ok_or_else(|| ApiError::bad_request(format!("{k}: a whole number is required")))
}

/// The reply code of a close fault: a valid AMQP reply code (3 digits).
fn code(b: &Map<String, Value>) -> Result<u16, ApiError> {
    match number(b, "code")? {
        c @ 200..=599 => Ok(c as u16),
        c => Err(ApiError::bad_request(format!("code: {c} is not an AMQP reply code"))),
    }
}

fn target(b: &Map<String, Value>) -> Result<Target, ApiError> {
    if let Some(c) = b.get("connection").and_then(Value::as_str) {
        return Ok(Target::Connection(c.into()));
    }
    if let Some(u) = b.get("user").and_then(Value::as_str) {
        return Ok(Target::User(u.into()));
    }
    if let Some(v) = b.get("vhost").and_then(Value::as_str) {
        return Ok(Target::VHost(v.into()));
    }
    Err(ApiError::bad_request("a target is required: \"connection\", \"user\" or \"vhost\""))
}

/// `POST /api/warren/faults`: apply one fault; `{"applied": N}` (connections, channels,
/// consumers or publishes it reached).
pub async fn apply(State(m): St, Extension(u): U, body: Bytes) -> Resp {
    enabled(&m, &u)?;
    let b = &m.broker;
    let req = super::body::parse(&body)?;
    let applied = match text(&req, "fault")? {
        "block" => {
            b.fault_block(&target(&req)?, true, req.get("reason").and_then(Value::as_str).unwrap_or("test control"))
        }
        "unblock" => b.fault_block(&target(&req)?, false, ""),
        "close-connection" => b.fault_close_connection(&target(&req)?, code(&req)?, text(&req, "text")?),
        "close-channel" => {
            let channel =
                u16::try_from(number(&req, "channel")?).map_err(|_| ApiError::bad_request("channel: 1..65535"))?;
            b.fault_close_channel(&target(&req)?, channel, code(&req)?, text(&req, "text")?)
        }
        "delay-deliveries" => b.fault_delay(&target(&req)?, number(&req, "delay_ms")?.min(MAX_DELAY_MS)),
        "hold-confirms" => b.fault_hold_confirms(&target(&req)?, true),
        "release-confirms" => b.fault_hold_confirms(&target(&req)?, false),
        "drop-after-frames" => match number(&req, "frames")? {
            0 => return Err(ApiError::bad_request("frames: at least 1")),
            n => b.fault_drop_after(&target(&req)?, n),
        },
        "cancel-consumers" => {
            b.fault_cancel_consumers(text(&req, "vhost")?, text(&req, "queue")?).ok_or_else(ApiError::not_found)?
        }
        "nack-publishes" => {
            let n = number(&req, "count")?;
            if !b.fault_nack_publishes(text(&req, "vhost")?, n) {
                return Err(ApiError::not_found());
            }
            n as usize
        }
        other => return Err(ApiError::bad_request(format!("unknown fault '{other}'"))),
    };
    ok_json(json!({"applied": applied}))
}

/// `GET /api/warren/faults`: the applied faults, oldest first.
pub async fn list(State(m): St, Extension(u): U, Query(_): Query<HashMap<String, String>>) -> Resp {
    enabled(&m, &u)?;
    let rows = m
        .broker
        .faults
        .list()
        .into_iter()
        .map(|f| {
            json!({"at": super::views::format_timestamp(f.at_ms), "fault": f.kind, "vhost": f.vhost,
                   "target": f.target, "detail": f.detail})
        })
        .collect();
    ok_json(Value::Array(rows))
}

/// `DELETE /api/warren/faults`: forget the applied faults and cancel pending publish nacks.
pub async fn clear(State(m): St, Extension(u): U) -> Resp {
    enabled(&m, &u)?;
    for v in m.broker.vhosts() {
        v.set_fault_nacks(0);
    }
    m.broker.faults.clear();
    no_content()
}
