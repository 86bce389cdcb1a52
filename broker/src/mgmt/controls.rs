//! Test controls (Warren's own, no RabbitMQ equivalent), for test suites that share one broker:
//! - `POST /api/warren/vhosts/{vhost}/reset` (administrators): the vhost back to its state after
//!   creation — connections closed with 320, every queue, exchange (but the standard ones), policy,
//!   operator policy, limit and delayed message gone, tracing off; users and permissions stay.
//! - `GET /api/warren/vhosts/{vhost}/wait-idle?quiet_ms=Q&timeout_ms=T` (users of the vhost):
//!   answers once the vhost has had nothing ready, nothing unacknowledged and nothing held by a
//!   delayed exchange for Q ms (default 100): 200 `{"idle": true, "waited_ms"}`; after T ms
//!   (default 5000) 408 `{"idle": false, "busy": {...}}` naming what is still busy.
//!
//! Runs in: the management server's request tasks.
//!
//! # Invariants
//! - Reset goes through the core (`Broker::reset_vhost`); wait-idle only reads.
//! - Wait-idle polls every `POLL` and never holds a lock across an await.
use super::{no_content, views, ApiError, Mgmt, MgmtUser, Resp};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

type St = State<Arc<Mgmt>>;
type U = Extension<MgmtUser>;

/// How often wait-idle looks again.
const POLL: Duration = Duration::from_millis(5);
/// Default quiet period, ms.
const DEFAULT_QUIET_MS: u64 = 100;
/// Default and longest timeout, ms (a request must end).
const DEFAULT_TIMEOUT_MS: u64 = 5_000;
const MAX_TIMEOUT_MS: u64 = 300_000;

/// `POST /api/warren/vhosts/{vhost}/reset`.
pub async fn reset(State(m): St, Extension(u): U, Path(vhost): Path<String>) -> Resp {
    m.require_admin(&u)?;
    if !m.broker.reset_vhost(&vhost, Some(&u.name)) {
        return Err(ApiError::not_found());
    }
    tracing::info!(user = %u.name, "vhost '{vhost}' reset");
    m.durable_sync().await;
    no_content()
}

/// What keeps a vhost busy: queues with ready or unacked messages, and held delayed messages.
fn busy(m: &Mgmt, v: &crate::vhost::VHost) -> Option<Value> {
    let unacked = views::unacked_by_queue(&m.broker);
    let mut queues = Vec::new();
    for q in v.queues_snapshot() {
        let (ready, _) = q.counts();
        let un = views::unacked_count(&unacked, &q);
        if ready > 0 || un > 0 {
            queues.push(json!({"name": q.name.to_str_lossy(), "messages_ready": ready, "messages_unacknowledged": un}));
        }
    }
    let delayed = v.timers.delayed();
    (!queues.is_empty() || delayed > 0).then(|| json!({"queues": queues, "messages_delayed": delayed}))
}

/// `GET /api/warren/vhosts/{vhost}/wait-idle`.
pub async fn wait_idle(
    State(m): St,
    Extension(u): U,
    Path(vhost): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let num = |k: &str, d: u64| -> Result<u64, ApiError> {
        q.get(k).map_or(Ok(d), |s| s.parse().map_err(|_| ApiError::bad_request(format!("{k}: a number of ms"))))
    };
    let quiet = Duration::from_millis(num("quiet_ms", DEFAULT_QUIET_MS)?);
    let timeout = Duration::from_millis(num("timeout_ms", DEFAULT_TIMEOUT_MS)?.min(MAX_TIMEOUT_MS));
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        match busy(&m, &v) {
            None => {
                let since = *quiet_since.get_or_insert(now);
                if now.duration_since(since) >= quiet {
                    let waited = started.elapsed().as_millis() as u64;
                    return Ok(axum::Json(json!({"idle": true, "waited_ms": waited})).into_response());
                }
            }
            Some(what) => {
                quiet_since = None;
                if now.duration_since(started) >= timeout {
                    let body = json!({"idle": false, "waited_ms": started.elapsed().as_millis() as u64, "busy": what});
                    return Ok((StatusCode::REQUEST_TIMEOUT, axum::Json(body)).into_response());
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
