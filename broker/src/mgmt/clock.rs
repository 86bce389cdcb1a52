//! The HTTP door of the virtual clock (Warren's test controls, only with `--test-controls`; 404
//! otherwise): `GET /api/warren/vhosts/{vhost}/clock` reads a vhost's clock, `POST` with
//! `{"freeze": true|false}` and / or `{"advance_ms": N}` moves it (freeze first, then advance)
//! and answers as `GET`. Administrators only.
//!
//! Runs in: the management server's request tasks.
//!
//! # Invariants
//! - Without `Config::test_controls` every route answers 404 and changes nothing.
//! - The clock is the core's (`clock::VClock`, `VHost::advance_clock` / `freeze_clock`).
use super::{ok_json, ApiError, Mgmt, MgmtUser, Resp};
use axum::extract::{Path, State};
use axum::{body::Bytes, Extension};
use serde_json::{json, Value};
use std::sync::Arc;

type St = State<Arc<Mgmt>>;
type U = Extension<MgmtUser>;

fn view(v: &crate::vhost::VHost) -> Value {
    let now = v.clock.unix_ms();
    json!({
        "vhost": v.name,
        "now": now,
        "now_iso": super::views::format_timestamp(now),
        "offset_ms": v.clock.offset_ms(),
        "frozen": v.clock.frozen(),
    })
}

/// `GET /api/warren/vhosts/{vhost}/clock`.
pub async fn get(State(m): St, Extension(u): U, Path(vhost): Path<String>) -> Resp {
    super::faults::enabled(&m, &u)?;
    let v = m.broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    ok_json(view(&v))
}

/// `POST /api/warren/vhosts/{vhost}/clock` with `{"freeze": bool, "advance_ms": N}`.
pub async fn set(State(m): St, Extension(u): U, Path(vhost): Path<String>, body: Bytes) -> Resp {
    super::faults::enabled(&m, &u)?;
    let v = m.broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    let b = super::body::parse(&body)?;
    let freeze = match b.get("freeze") {
        None => None,
        Some(Value::Bool(f)) => Some(*f),
        Some(_) => return Err(ApiError::bad_request("freeze: true or false")),
    };
    let advance = match b.get("advance_ms") {
        None => None,
        Some(a) => Some(a.as_u64().ok_or_else(|| ApiError::bad_request("advance_ms: a whole number of ms"))?),
    };
    if freeze.is_none() && advance.is_none() {
        return Err(ApiError::bad_request("nothing to do: give \"advance_ms\" and / or \"freeze\""));
    }
    if let Some(f) = freeze {
        v.freeze_clock(f);
        tracing::info!(user = %u.name, "test control: the clock of vhost '{vhost}' is {}", if f { "frozen" } else { "running" });
    }
    if let Some(ms) = advance {
        v.advance_clock(ms);
        tracing::info!(user = %u.name, "test control: the clock of vhost '{vhost}' advanced by {ms} ms");
    }
    ok_json(view(&v))
}
