//! Test controls (Warren's own, no RabbitMQ equivalent), for test suites that share one broker:
//! - `POST /api/warren/vhosts/{vhost}/reset` (administrators): the vhost back to its state after
//!   creation — connections closed with 320, every queue, exchange (but the standard ones), policy,
//!   operator policy, limit and delayed message gone, tracing off; users and permissions stay.
//! - `GET /api/warren/vhosts/{vhost}/wait-idle?quiet_ms=Q&timeout_ms=T` (users of the vhost):
//!   answers once the vhost has had nothing ready, nothing unacknowledged and nothing held by a
//!   delayed exchange for Q ms (default 100): 200 `{"idle": true, "waited_ms"}`; after T ms
//!   (default 5000) 408 `{"idle": false, "busy": {...}}` naming what is still busy.
//! - `GET /api/warren/queues/{vhost}/{name}/messages` (peek: read permission): ready messages in
//!   delivery order, not taken; `GET /api/warren/vhosts/{vhost}/messages` (search): those of
//!   every readable queue matching a message id, correlation id, header value or body text.
//!
//! Runs in: the management server's request tasks.
//!
//! # Invariants
//! - Reset goes through the core (`Broker::reset_vhost`); wait-idle, peek and search only read:
//!   a peeked message is not removed, reordered, redelivered or counted as delivered.
//! - Wait-idle polls every `POLL` and never holds a lock across an await.
use super::{no_content, views, ApiError, Mgmt, MgmtUser, Resp};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
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

/// `POST /api/warren/reset[?keep_definitions=false]`: every vhost reset, the faults forgotten,
/// and (unless `keep_definitions=false`) the boot definitions imported again; `{"problems": [..]}`
/// lists what that import could not apply.
pub async fn reset_all(State(m): St, Extension(u): U, Query(q): Query<HashMap<String, String>>) -> Resp {
    m.require_admin(&u)?;
    let keep = match q.get("keep_definitions").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(ApiError::bad_request(format!("keep_definitions: true or false, not '{other}'"))),
    };
    let problems = m.broker.reset_all(keep, Some(&u.name));
    tracing::info!(user = %u.name, "broker reset (boot definitions kept: {keep})");
    m.durable_sync().await;
    Ok(axum::Json(json!({"problems": problems})).into_response())
}

/// `GET /api/warren/vhosts/{vhost}/trace?message_id=..&correlation_id=..&traceparent=..`: the
/// message trace of the messages matching every criterion given, oldest event first.
pub async fn trace(
    State(m): St,
    Extension(u): U,
    Path(vhost): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let query = crate::journal::Query {
        message_id: q.get("message_id").cloned(),
        correlation_id: q.get("correlation_id").cloned(),
        traceparent: q.get("traceparent").cloned(),
    };
    if query.message_id.is_none() && query.correlation_id.is_none() && query.traceparent.is_none() {
        return Err(ApiError::bad_request("give message_id, correlation_id or traceparent"));
    }
    if !v.journal.on() {
        return Err(ApiError::bad_request("the message trace is off (--message-trace-size 0)"));
    }
    let events: Vec<Value> = v.journal.find(&query).iter().map(|e| e.to_json()).collect();
    Ok(axum::Json(json!({"events": events})).into_response())
}

/// Query parameter `k` as a whole number (`d` when absent); 400 naming it otherwise.
fn number(q: &HashMap<String, String>, k: &str, d: u64) -> Result<u64, ApiError> {
    q.get(k).map_or(Ok(d), |s| s.parse().map_err(|_| ApiError::bad_request(format!("{k}: a whole number"))))
}

/// What keeps a vhost busy: queues with ready or unacked messages (only the queues named in
/// `only`, when given), held delayed messages, messages its shovels are moving, and publishes
/// not yet confirmed.
fn busy(m: &Mgmt, v: &crate::vhost::VHost, only: Option<&[String]>) -> Option<Value> {
    let unacked = views::unacked_by_queue(&m.broker);
    let mut queues = Vec::new();
    let watched = v
        .queues_snapshot()
        .into_iter()
        .filter(|q| only.is_none_or(|names| names.iter().any(|n| n.as_bytes() == q.name.as_bytes())));
    for q in watched {
        let (ready, _) = q.counts();
        let un = views::unacked_count(&unacked, &q);
        if ready > 0 || un > 0 {
            queues.push(json!({"name": q.name.to_str_lossy(), "messages_ready": ready, "messages_unacknowledged": un}));
        }
    }
    let delayed = v.timers.delayed();
    // Messages a shovel of this vhost took from its source and the destination has not yet
    // confirmed.
    let shovelling = m.broker.shovels.in_flight(&v.name);
    // Publishes of this vhost's connections not yet confirmed to their publishers.
    let unconfirmed: u64 = m
        .broker
        .stats
        .connections()
        .iter()
        .filter(|c| c.vhost == v.name)
        .flat_map(|c| c.channels.lock().values().map(|ch| ch.unconfirmed.load(Ordering::Relaxed)).collect::<Vec<_>>())
        .sum();
    (!queues.is_empty() || delayed > 0 || shovelling > 0 || unconfirmed > 0).then(|| {
        json!({"queues": queues, "messages_delayed": delayed, "messages_shovelling": shovelling,
               "messages_unconfirmed": unconfirmed})
    })
}

/// `GET /api/warren/vhosts/{vhost}/wait-idle[?quiet_ms=Q&timeout_ms=T&queues=a,b]`.
pub async fn wait_idle(
    State(m): St,
    Extension(u): U,
    Path(vhost): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let quiet = Duration::from_millis(number(&q, "quiet_ms", DEFAULT_QUIET_MS)?);
    let timeout = Duration::from_millis(number(&q, "timeout_ms", DEFAULT_TIMEOUT_MS)?.min(MAX_TIMEOUT_MS));
    // `queues=a,b`: watch only these queues (the vhost's other counts still apply).
    let only: Option<Vec<String>> =
        q.get("queues").map(|s| s.split(',').filter(|n| !n.is_empty()).map(String::from).collect());
    for name in only.iter().flatten() {
        if v.queue(&name.clone().into()).is_none() {
            return Err(ApiError(StatusCode::NOT_FOUND, "not_found", format!("no queue '{name}' in vhost '{vhost}'")));
        }
    }
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        match busy(&m, &v, only.as_deref()) {
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

/// Most messages of one queue a search looks at (a search must end quickly).
const SEARCH_SCAN_PER_QUEUE: usize = 100_000;
/// Most messages a peek returns at once.
const PEEK_MAX: usize = 1_000;

/// A peeked message as JSON: `/get`'s fields, its position, and the body parsed when it is JSON.
fn peeked_json(p: &crate::queue::Peeked, position: usize, encoding: &str) -> Value {
    let mut o = super::api::message_json(&p.msg, encoding, None);
    o.insert("position".into(), json!(position));
    o.insert("redelivered".into(), json!(p.redelivered));
    o.insert("delivery_count".into(), json!(p.deliveries));
    if let Ok(v) = serde_json::from_slice::<Value>(p.msg.body()) {
        if v.is_object() || v.is_array() {
            o.insert("payload_json".into(), v);
        }
    }
    Value::Object(o)
}

/// A queue the user may read (RabbitMQ's read permission, as for `/get`).
fn readable(m: &Mgmt, u: &MgmtUser, v: &crate::vhost::VHost, name: &str) -> Result<Arc<crate::queue::Queue>, ApiError> {
    let g = super::api::grants(m, u, v);
    v.readable_queue(&super::api::actor(u, &g), &name.to_string().into()).map_err(|e| match e {
        crate::error::AmqpError::Refused { .. } => ApiError::not_authorised(super::api::refusal_text(&e)),
        e if e.code() == 404 => ApiError::not_found(),
        e => super::api::amqp_error(e),
    })
}

/// A peek's page: `offset` (0), `count` (50, at most [`PEEK_MAX`]) and `encoding` (`auto`).
fn page(q: &HashMap<String, String>) -> Result<(usize, usize, &str), ApiError> {
    let offset = number(q, "offset", 0)? as usize;
    let count = (number(q, "count", 50)? as usize).min(PEEK_MAX);
    Ok((offset, count, q.get("encoding").map(String::as_str).unwrap_or("auto")))
}

/// `GET /api/warren/queues/{vhost}/{name}/messages?offset=O&count=N&encoding=auto|base64`: the
/// ready messages `O..O+N` in delivery order, left where they are.
pub async fn peek(
    State(m): St,
    Extension(u): U,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let queue = readable(&m, &u, &v, &name)?;
    let (offset, count, encoding) = page(&q)?;
    let (msgs, total) = queue.peek(offset, count);
    let items: Vec<Value> = msgs.iter().enumerate().map(|(i, p)| peeked_json(p, offset + i, encoding)).collect();
    Ok(axum::Json(json!({"queue": name, "vhost": vhost, "total": total, "offset": offset, "messages": items}))
        .into_response())
}

/// `GET /api/warren/exchanges/{vhost}/{name}/delayed?offset=O&count=N&encoding=..`: the messages a
/// delayed-message exchange holds, earliest due first, with `due` (the vhost's time) and
/// `due_in_ms`; nothing is taken or released. Needs read permission on the exchange.
pub async fn peek_delayed(
    State(m): St,
    Extension(u): U,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    if v.exchange(name.as_bytes()).is_none() {
        return Err(ApiError::not_found());
    }
    // Reading what an exchange holds needs read permission on it, as reading a queue does.
    let g = super::api::grants(&m, &u, &v);
    g.check(crate::auth::Access::Read, crate::auth::Resource::Exchange, name.as_bytes())
        .map_err(ApiError::not_authorised)?;
    let (offset, count, encoding) = page(&q)?;
    let (held, total) = v.timers.peek_delayed(name.as_bytes(), offset, count);
    let (now, unix) = (v.clock.now_ms(), v.clock.unix_ms());
    let items: Vec<Value> = held
        .iter()
        .enumerate()
        .map(|(i, (due, msg))| {
            let mut o = super::api::message_json(msg, encoding, None);
            let due_unix = (unix + due.saturating_sub(now)).saturating_sub(now.saturating_sub(*due));
            o.insert("position".into(), json!(offset + i));
            o.insert("due".into(), json!(views::format_timestamp(due_unix)));
            o.insert("due_in_ms".into(), json!(*due as i64 - now as i64));
            Value::Object(o)
        })
        .collect();
    Ok(axum::Json(json!({"exchange": name, "vhost": vhost, "total": total, "offset": offset, "messages": items}))
        .into_response())
}

/// `GET /api/warren/vhosts/{vhost}/messages?message_id=&correlation_id=&header=K:V&body=TEXT&limit=N`:
/// the ready messages of the vhost's queues (those the user may read; dead-letter queues are
/// queues like any other) that match every criterion given, with their queue and position.
pub async fn search(
    State(m): St,
    Extension(u): U,
    Path(vhost): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100usize).min(PEEK_MAX);
    let (mid, cid, body) = (q.get("message_id"), q.get("correlation_id"), q.get("body"));
    let header = match q.get("header") {
        Some(h) => Some(h.split_once(':').ok_or_else(|| ApiError::bad_request("header: NAME:VALUE"))?),
        None => None,
    };
    if mid.is_none() && cid.is_none() && body.is_none() && header.is_none() {
        return Err(ApiError::bad_request("give message_id, correlation_id, header or body"));
    }
    let mut found = Vec::new();
    let mut queues = v.queues_snapshot();
    queues.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    'queues: for queue in queues {
        let Ok(queue) = readable(&m, &u, &v, &queue.name.to_str_lossy()) else { continue };
        let (msgs, _) = queue.peek(0, SEARCH_SCAN_PER_QUEUE);
        for (i, p) in msgs.iter().enumerate() {
            let props = warren_protocol::BasicProperties::decode(p.msg.properties()).unwrap_or_default();
            let text = |x: &Option<warren_protocol::ShortStr>, want: &String| {
                x.as_ref().is_some_and(|x| x.as_bytes() == want.as_bytes())
            };
            let ok = mid.is_none_or(|w| text(&props.message_id, w))
                && cid.is_none_or(|w| text(&props.correlation_id, w))
                && body.is_none_or(|w| p.msg.body().windows(w.len().max(1)).any(|x| x == w.as_bytes()))
                && header.is_none_or(|(k, want)| {
                    props.headers.as_ref().and_then(|h| h.get(k)).is_some_and(|x| match x.as_bytes() {
                        Some(b) => b == want.as_bytes(),
                        None => x.as_i64().is_some_and(|n| n.to_string() == want),
                    })
                });
            if ok {
                let mut j = peeked_json(p, i, "auto");
                if let Value::Object(o) = &mut j {
                    o.insert("queue".into(), json!(queue.name.to_str_lossy()));
                }
                found.push(j);
                if found.len() >= limit {
                    break 'queues;
                }
            }
        }
    }
    Ok(axum::Json(json!({"vhost": vhost, "messages": found})).into_response())
}
