//! `/api` routes: RabbitMQ's management HTTP API, endpoint by endpoint.
//!
//! Runs in: the management server's tasks.
//!
//! # Invariants
//! - Every route is behind [`super::authenticate`]; vhost-scoped routes check the user may use
//!   the vhost, user, permission, topic-permission and definition routes need `administrator`.
//! - Declares, deletes and binds are built as the AMQP methods a client would send and go through
//!   the same `VHost` methods, so they get the same checks and the same error texts (as RabbitMQ's
//!   HTTP API reports its AMQP errors: 400 for precondition failures, 404 for missing objects).
use super::{created_or_updated, listing, no_content, ok_json, views, ApiError, Mgmt, MgmtUser, Resp};
use crate::error::AmqpError;
use crate::vhost::{Actor, ExchangeSpec, Publish, QueueSpec};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use warren_protocol::ShortStr;

type St = State<Arc<Mgmt>>;
type U = Extension<MgmtUser>;
type Q = Query<HashMap<String, String>>;

/// The API router (with authentication) plus the UI.
pub fn router(m: Arc<Mgmt>) -> Router {
    let api = Router::new()
        .route("/api/overview", get(overview))
        .route("/api/whoami", get(whoami))
        .route("/api/cluster-name", get(cluster_name))
        .route("/api/nodes", get(nodes))
        .route("/api/nodes/{node}", get(node))
        .route("/api/extensions", get(|| async { axum::Json(json!([])) }))
        .route("/api/feature-flags", get(feature_flags))
        .route("/api/vhosts", get(vhosts))
        .route("/api/vhosts/{vhost}", get(vhost).put(vhost_put).delete(vhost_delete))
        .route("/api/vhosts/{vhost}/permissions", get(vhost_permissions))
        .route("/api/vhosts/{vhost}/topic-permissions", get(vhost_topic_permissions))
        .route("/api/vhosts/{vhost}/connections", get(vhost_connections))
        .route("/api/vhosts/{vhost}/channels", get(vhost_channels))
        .route("/api/users", get(users))
        .route("/api/users/without-permissions", get(users_without_permissions))
        .route("/api/users/{user}", get(user).put(user_put).delete(user_delete))
        .route("/api/users/{user}/permissions", get(user_permissions))
        .route("/api/users/{user}/topic-permissions", get(user_topic_permissions))
        .route("/api/permissions", get(permissions))
        .route("/api/permissions/{vhost}/{user}", get(permission).put(permission_put).delete(permission_delete))
        .route("/api/topic-permissions", get(topic_permissions))
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(topic_permission).put(topic_permission_put).delete(topic_permission_delete),
        )
        .route("/api/vhost-limits", get(super::limits::all))
        .route("/api/vhost-limits/{vhost}", get(super::limits::of))
        .route("/api/vhost-limits/{vhost}/{name}", axum::routing::put(super::limits::put).delete(super::limits::delete))
        .route("/api/user-limits", get(super::user_limits::all))
        .route("/api/user-limits/{user}", get(super::user_limits::of))
        .route(
            "/api/user-limits/{user}/{name}",
            axum::routing::put(super::user_limits::put).delete(super::user_limits::delete),
        )
        .route("/api/warren/vhosts/{vhost}/reset", post(super::controls::reset))
        .route("/api/warren/reset", post(super::controls::reset_all))
        .route("/api/warren/vhosts/{vhost}/clock", get(super::clock::get).post(super::clock::set))
        .route("/api/warren/vhosts/{vhost}/trace", get(super::controls::trace))
        .route("/api/warren/faults", get(super::faults::list).post(super::faults::apply).delete(super::faults::clear))
        .route("/api/warren/vhosts/{vhost}/wait-idle", get(super::controls::wait_idle))
        .route("/api/warren/vhosts/{vhost}/messages", get(super::controls::search))
        .route("/api/warren/queues/{vhost}/{name}/messages", get(super::controls::peek))
        .route("/api/warren/exchanges/{vhost}/{name}/delayed", get(super::controls::peek_delayed))
        .route("/api/operator-policies", get(super::operator_policies::all))
        .route("/api/operator-policies/{vhost}", get(super::operator_policies::of))
        .route(
            "/api/operator-policies/{vhost}/{name}",
            get(super::operator_policies::one)
                .put(super::operator_policies::put)
                .delete(super::operator_policies::delete),
        )
        .route("/api/parameters/operator_policy/{vhost}", get(super::operator_policies::parameters))
        .route("/api/parameters", get(super::shovels::all))
        .route("/api/parameters/{component}", get(super::shovels::of_component))
        .route("/api/parameters/{component}/{vhost}", get(super::shovels::of_vhost))
        .route(
            "/api/parameters/{component}/{vhost}/{name}",
            get(super::shovels::one).put(super::shovels::put).delete(super::shovels::delete),
        )
        .route("/api/shovels", get(super::shovels::statuses))
        .route("/api/shovels/{vhost}", get(super::shovels::statuses_in))
        .route(
            "/api/shovels/vhost/{vhost}/{name}",
            get(super::shovels::status_one).delete(super::shovels::status_delete),
        )
        .route("/api/shovels/vhost/{vhost}/{name}/restart", delete(super::shovels::restart))
        .route("/api/stream/connections", get(super::streams::connections))
        .route("/api/stream/connections/{vhost}", get(super::streams::connections_in))
        .route(
            "/api/stream/connections/{vhost}/{name}",
            get(super::streams::connection_one).delete(super::streams::connection_close),
        )
        .route("/api/stream/connections/{vhost}/{name}/publishers", get(super::streams::connection_publishers))
        .route("/api/stream/connections/{vhost}/{name}/consumers", get(super::streams::connection_consumers))
        .route("/api/stream/publishers", get(super::streams::publishers))
        .route("/api/stream/publishers/{vhost}", get(super::streams::publishers_in))
        .route("/api/stream/publishers/{vhost}/{stream}", get(super::streams::publishers_of_stream))
        .route("/api/stream/consumers", get(super::streams::consumers))
        .route("/api/stream/consumers/{vhost}", get(super::streams::consumers_in))
        .route("/api/policies", get(policies))
        .route("/api/policies/{vhost}", get(policies_in))
        .route("/api/policies/{vhost}/{name}", get(policy).put(policy_put).delete(policy_delete))
        .route("/api/exchanges", get(exchanges))
        .route("/api/exchanges/{vhost}", get(exchanges_in))
        .route("/api/exchanges/{vhost}/{name}", get(exchange).put(exchange_put).delete(exchange_delete))
        .route("/api/exchanges/{vhost}/{name}/publish", post(exchange_publish))
        .route("/api/exchanges/{vhost}/{name}/bindings/source", get(exchange_bindings_source))
        .route("/api/exchanges/{vhost}/{name}/bindings/destination", get(exchange_bindings_destination))
        .route("/api/queues", get(queues))
        .route("/api/queues/{vhost}", get(queues_in))
        .route("/api/queues/{vhost}/{name}", get(queue).put(queue_put).delete(queue_delete))
        .route("/api/queues/{vhost}/{name}/contents", delete(queue_purge))
        .route("/api/queues/{vhost}/{name}/get", post(queue_get))
        .route("/api/queues/{vhost}/{name}/bindings", get(queue_bindings))
        .route("/api/bindings", get(bindings))
        .route("/api/bindings/{vhost}", get(bindings_in))
        .route("/api/bindings/{vhost}/e/{src}/{kind}/{dst}", get(bindings_between).post(binding_create))
        .route("/api/bindings/{vhost}/e/{src}/{kind}/{dst}/{props}", get(binding_get).delete(binding_delete))
        .route("/api/connections", get(connections))
        .route("/api/connections/{name}", get(connection).delete(connection_delete))
        .route("/api/connections/{name}/channels", get(connection_channels))
        .route("/api/channels", get(channels))
        .route("/api/channels/{name}", get(channel))
        .route("/api/consumers", get(consumers))
        .route("/api/consumers/{vhost}", get(consumers_in))
        .route("/api/definitions", get(definitions).post(definitions_post))
        .route("/api/definitions/{vhost}", get(definitions_vhost).post(definitions_vhost_post))
        .route("/api/aliveness-test/{vhost}", get(aliveness))
        .route("/api/health/checks/alarms", get(health_alarms))
        .route("/api/health/checks/local-alarms", get(health_alarms))
        .route("/api/health/checks/virtual-hosts", get(health_ok))
        .route("/api/health/checks/ready-to-serve-clients", get(health_ok))
        .route("/api/health/checks/node-is-quorum-critical", get(health_ok))
        .route("/api/health/checks/node-is-mirror-sync-critical", get(health_ok))
        .route("/api/health/checks/port-listener/{port}", get(health_port))
        .route("/api/health/checks/protocol-listener/{protocol}", get(health_protocol))
        .fallback(|| async { ApiError::not_found().into_response() })
        .route_layer(axum::middleware::from_fn(super::names::check))
        // Layers run outermost last-added first: authentication, then the content-type check.
        .layer(axum::middleware::from_fn(super::require_json))
        .layer(axum::middleware::from_fn_with_state(m.clone(), super::authenticate))
        .with_state(m.clone());
    Router::new().merge(super::ui::router()).merge(api)
}

/// The requesting user's permissions in `v` ([`Mgmt::vhost_for`] has checked there are some).
pub(super) fn grants(m: &Mgmt, u: &MgmtUser, v: &crate::vhost::VHost) -> Arc<crate::auth::Grants> {
    m.broker.grants(&u.name, &v.name).unwrap_or_else(|| Arc::new(crate::auth::Grants::none(&u.name, &v.name)))
}

/// The requesting user as the core's actor (the HTTP API has no connection: it owns no
/// exclusive queue and is not held off others', as RabbitMQ's).
pub(super) fn actor<'a>(u: &'a MgmtUser, g: &'a crate::auth::Grants) -> Actor<'a> {
    Actor {
        user: Some(&u.name),
        grants: Some(g),
        impersonator: u.tags.iter().any(|t| t == "impersonator"),
        conn: None,
        origin: None,
    }
}

/// A core error as RabbitMQ's API answers it: a permission refusal is 401 `Access refused.`;
/// anything else as `other` words it.
fn refused_or(e: AmqpError, other: impl FnOnce(AmqpError) -> ApiError) -> ApiError {
    match e {
        AmqpError::Refused { .. } => ApiError::not_authorised("Access refused."),
        e => other(e),
    }
}

/// RabbitMQ's HTTP wording of a refusal text (its API acts over an internal connection, whose
/// texts name no permission): `ACCESS_REFUSED - access to queue 'q' in vhost '/' refused for
/// user 'u'`.
pub(super) fn refusal_text(e: &AmqpError) -> String {
    let text = e.reply_text().to_string();
    let text = text.strip_prefix("ACCESS_REFUSED - ").unwrap_or(&text);
    format!("ACCESS_REFUSED - {}", text.split_once(' ').map_or(text, |(_, rest)| rest))
}

/// An AMQP error as RabbitMQ's HTTP API reports it.
pub(super) fn amqp_error(e: AmqpError) -> ApiError {
    let code = e.code();
    // RabbitMQ's HTTP reasons carry the text without the `NOT_FOUND - ` style prefix.
    let full = e.reply_text().to_string();
    let text = full.split_once(" - ").map(|(_, t)| t.to_string()).unwrap_or(full);
    match code {
        404 => ApiError(StatusCode::NOT_FOUND, "not_found", text),
        403 | 530 => ApiError(StatusCode::UNAUTHORIZED, "not_authorised", text),
        405 => ApiError(StatusCode::BAD_REQUEST, "bad_request", text),
        _ => ApiError(StatusCode::BAD_REQUEST, "bad_request", text),
    }
}

pub(super) fn vhosts_visible(m: &Mgmt, u: &MgmtUser) -> Vec<Arc<crate::vhost::VHost>> {
    let mut v: Vec<_> = m.broker.vhosts().into_iter().filter(|v| m.may_use_vhost(u, &v.name)).collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn s(x: &str) -> ShortStr {
    ShortStr::from(x.to_string())
}

fn bool_arg(m: &Map<String, Value>, k: &str, default: bool) -> bool {
    m.get(k).and_then(|v| v.as_bool()).unwrap_or(default)
}

fn args_of(m: &Map<String, Value>) -> warren_protocol::FieldTable {
    match m.get("arguments") {
        Some(Value::Object(a)) => crate::store::meta::json_to_table(a),
        _ => warren_protocol::FieldTable::new(),
    }
}

// ---- overview, node, misc ------------------------------------------------------------------

async fn overview(State(m): St, Extension(u): U) -> Resp {
    let b = &m.broker;
    let totals = views::global_totals(b);
    let rates = b.stats.rates();
    let unacked = views::unacked_by_queue(b);
    let (mut queues, mut exchanges, mut consumers, mut ready, mut un) = (0, 0, 0, 0u64, 0u64);
    for v in vhosts_visible(&m, &u) {
        exchanges += v.exchanges_snapshot().len() + 1;
        for q in v.queues_snapshot() {
            queues += 1;
            let (r, c) = q.counts();
            ready += r as u64;
            consumers += c as u64;
            un += views::unacked_count(&unacked, &q);
        }
    }
    let conns = b.stats.connections();
    let channels: usize = conns.iter().map(|c| c.channels.lock().len()).sum();
    let listeners: Vec<Value> = m
        .listeners
        .iter()
        .map(|(p, a)| json!({"node": m.node, "protocol": p, "ip_address": a.ip().to_string(), "port": a.port()}))
        .collect();
    let mgmt_port = m.listeners.iter().find(|(p, _)| *p == "http").map(|(_, a)| a.port().to_string());
    ok_json(json!({
        "management_version": views::RABBITMQ_VERSION,
        "rates_mode": "basic",
        "sample_retention_policies": {"global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]},
        "exchange_types": views::exchange_types(),
        "product_version": env!("CARGO_PKG_VERSION"),
        "product_name": "Warren",
        "rabbitmq_version": views::RABBITMQ_VERSION,
        "cluster_name": m.node,
        "erlang_version": "none (Warren is written in Rust)",
        "erlang_full_version": "none",
        "disable_stats": false,
        "enable_queue_totals": false,
        "message_stats": views::message_stats(&totals, &rates),
        "churn_rates": {},
        "queue_totals": {
            "messages": ready + un, "messages_details": {"rate": 0.0},
            "messages_ready": ready, "messages_ready_details": {"rate": 0.0},
            "messages_unacknowledged": un, "messages_unacknowledged_details": {"rate": 0.0},
        },
        "object_totals": {
            "channels": channels, "connections": conns.len(), "consumers": consumers,
            "exchanges": exchanges, "queues": queues,
        },
        "statistics_db_event_queue": 0,
        "node": m.node,
        "listeners": listeners,
        "contexts": [{"node": m.node, "description": "RabbitMQ Management", "path": "/", "port": mgmt_port}],
    }))
}

async fn whoami(Extension(u): U) -> Resp {
    ok_json(json!({"name": u.name, "tags": u.tags}))
}

async fn cluster_name(State(m): St) -> Resp {
    ok_json(json!({"name": m.node}))
}

async fn nodes(State(m): St) -> Resp {
    ok_json(json!([views::node(&m)]))
}

async fn node(State(m): St, Path(name): Path<String>) -> Resp {
    if name != m.node {
        return Err(ApiError::not_found());
    }
    ok_json(views::node(&m))
}

async fn feature_flags(State(_m): St) -> Resp {
    // The flags of RabbitMQ 3.10 whose behaviour Warren has: all enabled, as on a fresh 3.10 node.
    let flags = [
        ("classic_mirrored_queue_version", "Support setting version for classic mirrored queues"),
        ("drop_unroutable_metric", "Count unroutable publishes to be dropped in stats"),
        ("empty_basic_get_metric", "Count AMQP `basic.get` on empty queues in stats"),
        ("implicit_default_bindings", "Default bindings are now implicit, instead of being stored in the database"),
        ("maintenance_mode_status", "Maintenance mode status"),
        ("quorum_queue", "Support queues of type `quorum`"),
        ("stream_queue", "Support queues of type `stream`"),
        ("user_limits", "Configure connection and channel limits for a user"),
        ("virtual_host_metadata", "Virtual host metadata (description, tags, etc)"),
    ];
    let v: Vec<Value> = flags
        .iter()
        .map(|(n, d)| json!({"name": n, "desc": d, "doc_url": "", "stability": "stable", "provided_by": "rabbit", "state": "enabled"}))
        .collect();
    ok_json(Value::Array(v))
}

// ---- vhosts ----------------------------------------------------------------------------------

async fn vhosts(State(m): St, Extension(u): U, Query(q): Q) -> Resp {
    let unacked = views::unacked_by_queue(&m.broker);
    let mut all: Vec<_> = m.broker.vhosts().into_iter().filter(|v| m.may_list_vhost(&u, &v.name)).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    listing(all.iter().map(|v| views::vhost(&m, v, &unacked)).collect(), &q)
}

async fn vhost(State(m): St, Extension(u): U, Path(name): Path<String>) -> Resp {
    // One vhost's details need permissions in it, as RabbitMQ (the list shows more).
    let v = m.vhost_for(&u, &name)?;
    ok_json(views::vhost(&m, &v, &views::unacked_by_queue(&m.broker)))
}

async fn vhost_put(State(m): St, Extension(u): U, Path(name): Path<String>, body: Bytes) -> Resp {
    m.require_admin(&u)?;
    let b = super::body::parse(&body)?;
    let created = m.broker.vhost(&name).is_none();
    let v = m.broker.add_vhost(&name, Some(&u.name));
    // The firehose switch (`rabbitmqctl trace_on` does the same); absent means unchanged.
    if let Some(on) = b.get("tracing").and_then(Value::as_bool) {
        v.set_tracing(on);
    }
    if created {
        // As RabbitMQ: the creating user gets full permissions in the new vhost.
        let p = crate::auth::Permission {
            user: u.name.clone(),
            vhost: name.clone(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        m.broker.set_permission(p, Some(&u.name)).map_err(ApiError::bad_request)?;
        m.broker.definitions_changed();
        m.durable_sync().await;
    }
    created_or_updated(created)
}

async fn vhost_delete(State(m): St, Extension(u): U, Path(name): Path<String>) -> Resp {
    m.require_admin(&u)?;
    if !m.broker.delete_vhost(&name, Some(&u.name)) {
        return Err(ApiError::not_found());
    }
    m.durable_sync().await;
    no_content()
}

async fn vhost_permissions(State(m): St, Extension(u): U, Path(name): Path<String>) -> Resp {
    m.require_admin(&u)?;
    m.vhost_for(&u, &name)?;
    let v: Vec<Value> = m.broker.permissions().iter().filter(|p| p.vhost == name).map(views::permission).collect();
    ok_json(Value::Array(v))
}

async fn vhost_connections(State(m): St, Extension(u): U, Path(name): Path<String>, Query(q): Q) -> Resp {
    m.vhost_for(&u, &name)?;
    let v = m.broker.stats.connections().iter().filter(|c| c.vhost == name).map(|c| views::connection(&m, c)).collect();
    listing(v, &q)
}

async fn vhost_channels(State(m): St, Extension(u): U, Path(name): Path<String>, Query(q): Q) -> Resp {
    m.vhost_for(&u, &name)?;
    let v = m
        .broker
        .stats
        .connections()
        .iter()
        .filter(|c| c.vhost == name)
        .flat_map(|c| views::channels_of(&m, c))
        .collect();
    listing(v, &q)
}

// ---- users and permissions -------------------------------------------------------------------

async fn users(State(m): St, Extension(u): U, Query(q): Q) -> Resp {
    m.require_admin(&u)?;
    listing(m.broker.users().iter().map(|x| views::user(&m, x)).collect(), &q)
}

async fn users_without_permissions(State(m): St, Extension(u): U) -> Resp {
    m.require_admin(&u)?;
    let perms = m.broker.permissions();
    let v: Vec<Value> = m
        .broker
        .users()
        .iter()
        .filter(|x| !perms.iter().any(|p| p.user == x.name))
        .map(|x| views::user(&m, x))
        .collect();
    ok_json(Value::Array(v))
}

async fn user(State(m): St, Extension(u): U, Path(name): Path<String>) -> Resp {
    m.require_admin(&u)?;
    m.broker.user(&name).map(|x| views::user(&m, &x)).map_or(Err(ApiError::not_found()), ok_json)
}

/// Tags as RabbitMQ accepts them: a list, or a comma-separated string.
fn tags_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|t| t.as_str()).map(str::to_string).collect(),
        Some(Value::String(s)) => s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

async fn user_put(State(m): St, Extension(u): U, Path(name): Path<String>, body: Bytes) -> Resp {
    m.require_admin(&u)?;
    let b = super::body::parse(&body)?;
    let tags = tags_of(b.get("tags"));
    let existing = m.broker.user(&name);
    let user = if let Some(pw) = b.get("password").and_then(|v| v.as_str()) {
        crate::auth::User::new(&name, pw, tags)
    } else if let Some(h) = b.get("password_hash").and_then(|v| v.as_str()) {
        let algo = b.get("hashing_algorithm").and_then(|v| v.as_str()).unwrap_or(crate::auth::SHA256);
        if h.is_empty() {
            // A passwordless user (certificate or other mechanisms only), as RabbitMQ allows.
            crate::auth::User { name: name.clone(), password_hash: Vec::new(), hashing_algorithm: algo.into(), tags }
        } else {
            crate::auth::User::from_definition(&name, h, algo, tags)
                .ok_or_else(|| ApiError::bad_request(format!("invalid password_hash or hashing_algorithm {algo}")))?
        }
    } else if let Some(mut x) = existing.clone() {
        // Only the tags change.
        x.tags = tags;
        x
    } else {
        // As RabbitMQ: a user without a password (it cannot log in with one).
        crate::auth::User {
            name: name.clone(),
            password_hash: Vec::new(),
            hashing_algorithm: crate::auth::SHA256.into(),
            tags,
        }
    };
    m.broker.put_user(user, Some(&u.name));
    m.broker.auth_generation.fetch_add(1, std::sync::atomic::Ordering::Release);
    m.broker.definitions_changed();
    m.durable_sync().await;
    created_or_updated(existing.is_none())
}

async fn user_delete(State(m): St, Extension(u): U, Path(name): Path<String>) -> Resp {
    m.require_admin(&u)?;
    if !m.broker.delete_user(&name, Some(&u.name)) {
        return Err(ApiError::not_found());
    }
    m.durable_sync().await;
    no_content()
}

async fn user_permissions(State(m): St, Extension(u): U, Path(name): Path<String>) -> Resp {
    m.require_admin(&u)?;
    if m.broker.user(&name).is_none() {
        return Err(ApiError::not_found());
    }
    let v: Vec<Value> = m.broker.permissions().iter().filter(|p| p.user == name).map(views::permission).collect();
    ok_json(Value::Array(v))
}

async fn permissions(State(m): St, Extension(u): U) -> Resp {
    m.require_admin(&u)?;
    ok_json(Value::Array(m.broker.permissions().iter().map(views::permission).collect()))
}

async fn permission(State(m): St, Extension(u): U, Path((vhost, user)): Path<(String, String)>) -> Resp {
    m.require_admin(&u)?;
    let p = m.broker.permissions().into_iter().find(|p| p.vhost == vhost && p.user == user);
    p.map(|p| views::permission(&p)).map_or(Err(ApiError::not_found()), ok_json)
}

async fn permission_put(
    State(m): St,
    Extension(u): U,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    m.require_admin(&u)?;
    if m.broker.vhost(&vhost).is_none() {
        return Err(ApiError::bad_request(format!("vhost_not_found: {vhost}")));
    }
    if m.broker.user(&user).is_none() {
        return Err(ApiError::bad_request(format!("user_not_found: {user}")));
    }
    let b = super::body::parse(&body)?;
    let field = |k: &str| b.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (Some(configure), Some(write), Some(read)) = (field("configure"), field("write"), field("read")) else {
        return Err(ApiError::bad_request("configure, write and read must be set"));
    };
    let existed = m.broker.grants(&user, &vhost).is_some();
    let p = crate::auth::Permission { user, vhost, configure, write, read };
    m.broker.set_permission(p, Some(&u.name)).map_err(ApiError::bad_request)?;
    m.broker.definitions_changed();
    m.durable_sync().await;
    created_or_updated(!existed)
}

async fn permission_delete(State(m): St, Extension(u): U, Path((vhost, user)): Path<(String, String)>) -> Resp {
    m.require_admin(&u)?;
    if m.broker.grants(&user, &vhost).is_none() {
        return Err(ApiError::not_found());
    }
    m.broker.clear_permission(&user, &vhost, Some(&u.name));
    m.broker.definitions_changed();
    m.durable_sync().await;
    no_content()
}

// ---- topic permissions ----------------------------------------------------------------------

/// Topic permission entries matching `keep`, as the API lists them.
fn topic_permissions_where(m: &Mgmt, keep: impl Fn(&crate::auth::TopicPermission) -> bool) -> Value {
    Value::Array(m.broker.topic_permissions().iter().filter(|p| keep(p)).map(views::topic_permission).collect())
}

async fn topic_permissions(State(m): St, Extension(u): U) -> Resp {
    m.require_admin(&u)?;
    ok_json(topic_permissions_where(&m, |_| true))
}

async fn vhost_topic_permissions(State(m): St, Extension(u): U, Path(name): Path<String>) -> Resp {
    m.require_admin(&u)?;
    m.vhost_for(&u, &name)?;
    ok_json(topic_permissions_where(&m, |p| p.vhost == name))
}

async fn user_topic_permissions(State(m): St, Extension(u): U, Path(name): Path<String>) -> Resp {
    m.require_admin(&u)?;
    if m.broker.user(&name).is_none() {
        return Err(ApiError::not_found());
    }
    ok_json(topic_permissions_where(&m, |p| p.user == name))
}

/// As RabbitMQ: a list (one entry per exchange); 404 when the user or vhost does not exist or
/// the user has none there.
async fn topic_permission(State(m): St, Extension(u): U, Path((vhost, user)): Path<(String, String)>) -> Resp {
    m.require_admin(&u)?;
    if m.broker.vhost(&vhost).is_none() || m.broker.user(&user).is_none() {
        return Err(ApiError::not_found());
    }
    let v = topic_permissions_where(&m, |p| p.vhost == vhost && p.user == user);
    if v.as_array().is_some_and(Vec::is_empty) {
        return Err(ApiError::not_found());
    }
    ok_json(v)
}

async fn topic_permission_put(
    State(m): St,
    Extension(u): U,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    m.require_admin(&u)?;
    if m.broker.vhost(&vhost).is_none() {
        return Err(ApiError::bad_request(format!("vhost_not_found: {vhost}")));
    }
    if m.broker.user(&user).is_none() {
        return Err(ApiError::bad_request(format!("user_not_found: {user}")));
    }
    let b = super::body::parse(&body)?;
    let field = |k: &str| b.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (Some(exchange), Some(write), Some(read)) = (field("exchange"), field("write"), field("read")) else {
        return Err(ApiError::bad_request("exchange, write and read must be set"));
    };
    let p = crate::auth::TopicPermission { user, vhost, exchange, write, read };
    let created = m.broker.set_topic_permission(p).map_err(ApiError::bad_request)?;
    m.broker.definitions_changed();
    m.durable_sync().await;
    created_or_updated(created)
}

/// All of the user's topic permissions in the vhost, or with `?exchange=` the one on that
/// exchange; 404 when there was none to delete.
async fn topic_permission_delete(
    State(m): St,
    Extension(u): U,
    Path((vhost, user)): Path<(String, String)>,
    Query(q): Q,
) -> Resp {
    m.require_admin(&u)?;
    if !m.broker.clear_topic_permissions(&user, &vhost, q.get("exchange").map(String::as_str)) {
        return Err(ApiError::not_found());
    }
    m.broker.definitions_changed();
    m.durable_sync().await;
    no_content()
}

// ---- policies --------------------------------------------------------------------------------

/// Setting policies needs the `policymaker` or `administrator` tag.
pub(super) fn require_policymaker(u: &MgmtUser) -> Result<(), ApiError> {
    if u.tags.iter().any(|t| t == "policymaker" || t == "administrator") {
        Ok(())
    } else {
        Err(ApiError::not_authorised("Not policymaker user"))
    }
}

async fn policies(State(m): St, Extension(u): U, Query(q): Q) -> Resp {
    let items = vhosts_visible(&m, &u).iter().flat_map(|v| v.policies()).map(|p| p.to_json()).collect();
    listing(items, &q)
}

async fn policies_in(State(m): St, Extension(u): U, Path(vhost): Path<String>, Query(q): Q) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    listing(v.policies().iter().map(|p| p.to_json()).collect(), &q)
}

async fn policy(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    v.policies().iter().find(|p| p.name == name).map(|p| p.to_json()).map_or(Err(ApiError::not_found()), ok_json)
}

async fn policy_put(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>, body: Bytes) -> Resp {
    require_policymaker(&u)?;
    let v = m.vhost_for(&u, &vhost)?;
    let b = super::body::parse(&body)?;
    let p = crate::policy::Policy::from_json(&vhost, &name, &b).map_err(ApiError::bad_request)?;
    let created = v.set_policy(p, Some(&u.name));
    m.durable_sync().await;
    created_or_updated(created)
}

async fn policy_delete(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    require_policymaker(&u)?;
    let v = m.vhost_for(&u, &vhost)?;
    if !v.clear_policy(&name, Some(&u.name)) {
        return Err(ApiError::not_found());
    }
    m.durable_sync().await;
    no_content()
}

// ---- exchanges -------------------------------------------------------------------------------

fn exchanges_of(m: &Mgmt, v: &crate::vhost::VHost) -> Vec<Value> {
    let mut out = vec![views::exchange(m, v, None)];
    out.extend(v.exchanges_snapshot().iter().map(|x| views::exchange(m, v, Some(x))));
    out
}

async fn exchanges(State(m): St, Extension(u): U, Query(q): Q) -> Resp {
    listing(vhosts_visible(&m, &u).iter().flat_map(|v| exchanges_of(&m, v)).collect(), &q)
}

async fn exchanges_in(State(m): St, Extension(u): U, Path(vhost): Path<String>, Query(q): Q) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    listing(exchanges_of(&m, &v), &q)
}

/// `amq.default` in URLs is the default exchange.
fn exchange_name(name: &str) -> &str {
    if name == "amq.default" {
        ""
    } else {
        name
    }
}

async fn exchange(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let name = exchange_name(&name);
    if name.is_empty() {
        return ok_json(views::exchange(&m, &v, None));
    }
    let x = v.exchange(&s(name)).ok_or_else(ApiError::not_found)?;
    ok_json(views::exchange(&m, &v, Some(&x)))
}

async fn exchange_put(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>, body: Bytes) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let b = super::body::parse(&body)?;
    // As RabbitMQ: a missing type means direct.
    let kind = b.get("type").and_then(|t| t.as_str()).unwrap_or("direct");
    let args = args_of(&b);
    let existed = v.exchange(&s(&name)).is_some();
    let d = ExchangeSpec {
        name: s(&name),
        kind: s(kind),
        passive: false,
        durable: bool_arg(&b, "durable", false),
        auto_delete: bool_arg(&b, "auto_delete", false),
        internal: bool_arg(&b, "internal", false),
        arguments: args,
    };
    let g = grants(&m, &u, &v);
    v.declare_exchange(&actor(&u, &g), &d).map_err(|e| refused_or(e, amqp_error))?;
    m.durable_sync().await;
    created_or_updated(!existed)
}

async fn exchange_delete(
    State(m): St,
    Extension(u): U,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Q,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    // As RabbitMQ's REST flow: a missing resource is 404 before any permission is checked.
    if v.exchange(&s(&name)).is_none() {
        return Err(ApiError::not_found());
    }
    let if_unused = q.get("if-unused").is_some_and(|x| x == "true");
    let g = grants(&m, &u, &v);
    v.delete_exchange(&actor(&u, &g), &s(&name), if_unused).map_err(|e| refused_or(e, amqp_error))?;
    m.durable_sync().await;
    no_content()
}

/// Decode `properties` of a publish request into AMQP properties (RabbitMQ's field names).
fn properties_of(p: Option<&Value>) -> Result<warren_protocol::BasicProperties, ApiError> {
    let mut out = warren_protocol::BasicProperties::default();
    let Some(Value::Object(p)) = p else { return Ok(out) };
    let text = |k: &str| p.get(k).and_then(|v| v.as_str()).map(|x| ShortStr::from(x.to_string()));
    out.content_type = text("content_type");
    out.content_encoding = text("content_encoding");
    out.correlation_id = text("correlation_id");
    out.reply_to = text("reply_to");
    out.expiration = text("expiration");
    out.message_id = text("message_id");
    out.kind = text("type");
    out.user_id = text("user_id");
    out.app_id = text("app_id");
    out.delivery_mode =
        p.get("delivery_mode").and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())).map(|v| v as u8);
    out.priority = p.get("priority").and_then(|v| v.as_u64()).map(|v| v as u8);
    out.timestamp = p.get("timestamp").and_then(|v| v.as_u64());
    if let Some(Value::Object(h)) = p.get("headers") {
        out.headers = Some(crate::store::meta::json_to_table(h));
    }
    Ok(out)
}

async fn exchange_publish(
    State(m): St,
    Extension(u): U,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let b = super::body::parse(&body)?;
    // Short strings, as on the wire (cut at 255 bytes).
    let name = s(exchange_name(&name));
    let rk = s(b.get("routing_key").and_then(|v| v.as_str()).unwrap_or(""));
    // rabbitmq-compat: as RabbitMQ's publish endpoint, a refusal is 400 with the channel's
    // `403 ACCESS_REFUSED - ...` as the reason.
    let g = grants(&m, &u, &v);
    let who = actor(&u, &g);
    v.authorize_publish(&who, name.as_bytes(), rk.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("403 {}", refusal_text(&e))))?;
    let payload = b.get("payload").and_then(|v| v.as_str()).unwrap_or("");
    let body = match b.get("payload_encoding").and_then(|v| v.as_str()).unwrap_or("string") {
        "string" => Bytes::from(payload.as_bytes().to_vec()),
        "base64" => {
            use base64::Engine;
            Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(payload)
                    .map_err(|_| ApiError::bad_request("payload is not valid base64"))?,
            )
        }
        other => return Err(ApiError::bad_request(format!("unknown payload_encoding {other}"))),
    };
    if body.len() as u64 > m.broker.config.max_message_size {
        return Err(ApiError::bad_request("message size exceeds max_message_size"));
    }
    let properties = properties_of(b.get("properties"))?.to_bytes();
    let publish = Publish::of(name.as_bytes(), rk.as_bytes(), &properties, &body);
    // rabbitmq-compat: RabbitMQ's publish endpoint answers every channel error (a missing
    // exchange, a `user_id` that is not the user's) with 400 and the error as the reason.
    let (_, outcome) = v.publish(&who, publish).map_err(|e| match e.code() {
        404 => ApiError(StatusCode::BAD_REQUEST, "bad_request", amqp_error(e).2),
        code => ApiError::bad_request(format!("{code} {}", e.reply_text())),
    })?;
    if let (true, Some(store)) = (outcome.durable_lsn > 0, &m.broker.store) {
        store.wait_durable(outcome.durable_lsn).await;
    }
    ok_json(json!({"routed": outcome.routed}))
}

async fn exchange_bindings_source(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let name = exchange_name(&name).to_string();
    let all = views::bindings(&v);
    ok_json(Value::Array(all.into_iter().filter(|b| b["source"] == name.as_str()).collect()))
}

async fn exchange_bindings_destination(
    State(m): St,
    Extension(u): U,
    Path((vhost, name)): Path<(String, String)>,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let all = views::bindings(&v);
    ok_json(Value::Array(
        all.into_iter().filter(|b| b["destination"] == name.as_str() && b["destination_type"] == "exchange").collect(),
    ))
}

// ---- queues ----------------------------------------------------------------------------------

fn queues_of(
    m: &Mgmt,
    v: &crate::vhost::VHost,
    unacked: &HashMap<*const crate::queue::Queue, views::Unacked>,
) -> Vec<Value> {
    v.queues_snapshot().iter().map(|q| views::queue(m, v, q, unacked, false)).collect()
}

async fn queues(State(m): St, Extension(u): U, Query(q): Q) -> Resp {
    let unacked = views::unacked_by_queue(&m.broker);
    listing(vhosts_visible(&m, &u).iter().flat_map(|v| queues_of(&m, v, &unacked)).collect(), &q)
}

async fn queues_in(State(m): St, Extension(u): U, Path(vhost): Path<String>, Query(q): Q) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let unacked = views::unacked_by_queue(&m.broker);
    listing(queues_of(&m, &v, &unacked), &q)
}

async fn queue(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let q = v.queue(&s(&name)).ok_or_else(ApiError::not_found)?;
    let unacked = views::unacked_by_queue(&m.broker);
    ok_json(views::queue(&m, &v, &q, &unacked, true))
}

async fn queue_put(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>, body: Bytes) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let b = super::body::parse(&body)?;
    let d = QueueSpec {
        name: s(&name),
        durable: bool_arg(&b, "durable", false),
        auto_delete: bool_arg(&b, "auto_delete", false),
        arguments: args_of(&b),
        ..QueueSpec::default()
    };
    let existed = v.queue(&d.name).is_some();
    let g = grants(&m, &u, &v);
    // As RabbitMQ: the core's name rule (an `amq.*` name) and its permissions are both 401
    // `Access refused.` here.
    v.declare_queue(&actor(&u, &g), &d).map_err(|e| match e.code() {
        403 => ApiError::not_authorised("Access refused."),
        _ => amqp_error(e),
    })?;
    m.durable_sync().await;
    created_or_updated(!existed)
}

async fn queue_delete(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>, Query(q): Q) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    // As RabbitMQ's REST flow: a missing resource is 404 before any permission is checked.
    v.queue(&s(&name)).ok_or_else(ApiError::not_found)?;
    let (if_unused, if_empty) =
        (q.get("if-unused").is_some_and(|x| x == "true"), q.get("if-empty").is_some_and(|x| x == "true"));
    let g = grants(&m, &u, &v);
    v.delete_queue_checked(&actor(&u, &g), &s(&name), if_unused, if_empty, None)
        .map_err(|e| refused_or(e, |e| ApiError::bad_request(e.reply_text().to_string())))?;
    m.durable_sync().await;
    m.store_sync().await;
    no_content()
}

async fn queue_purge(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    v.queue(&s(&name)).ok_or_else(ApiError::not_found)?;
    let g = grants(&m, &u, &v);
    v.purge_queue(&actor(&u, &g), &s(&name)).map_err(|e| refused_or(e, amqp_error))?;
    m.store_sync().await;
    no_content()
}

/// POST /get: fetch up to `count` messages. `ackmode` `ack_requeue_true` / `reject_requeue_true`
/// puts them back (redelivered, as RabbitMQ does); `ack_requeue_false` / `reject_requeue_false`
/// takes them (rejected ones are dead-lettered where the queue says so).
async fn queue_get(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>, body: Bytes) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    // As RabbitMQ: here the permission comes before the queue's existence (404).
    let g = grants(&m, &u, &v);
    let queue = v.readable_queue(&actor(&u, &g), &s(&name)).map_err(|e| match e {
        AmqpError::Refused { .. } => ApiError::not_authorised(refusal_text(&e)),
        e if e.code() == 404 => ApiError::not_found(),
        e => amqp_error(e),
    })?;
    let b = super::body::parse(&body)?;
    let count = b.get("count").and_then(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok())).unwrap_or(1);
    let ackmode = b.get("ackmode").and_then(|v| v.as_str()).unwrap_or("ack_requeue_true").to_string();
    if !matches!(
        ackmode.as_str(),
        "ack_requeue_true" | "ack_requeue_false" | "reject_requeue_true" | "reject_requeue_false"
    ) {
        return Err(ApiError::bad_request(format!("unknown ackmode {ackmode}")));
    }
    let encoding = b.get("encoding").and_then(|v| v.as_str()).unwrap_or("auto").to_string();
    let truncate = b.get("truncate").and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
    let mut got = Vec::new();
    for _ in 0..count {
        // rabbitmq-compat: as RabbitMQ, `ack_requeue_false` gets with no-ack.
        match queue.get(ackmode == "ack_requeue_false").map_err(amqp_error)? {
            Some((msg, remaining)) => got.push((msg, remaining)),
            None => break,
        }
    }
    let mut out = Vec::new();
    for (qm, remaining) in &got {
        let mut o = message_json(&qm.msg, &encoding, truncate);
        o.insert("redelivered".into(), json!(qm.redelivered));
        o.insert("message_count".into(), json!(remaining));
        out.push(Value::Object(o));
    }
    let msgs: Vec<_> = got.into_iter().map(|(m, _)| m).collect();
    match ackmode.as_str() {
        "ack_requeue_true" | "reject_requeue_true" => queue.requeue(msgs),
        "reject_requeue_false" => queue.rejected(msgs),
        _ => drop(msgs),
    }
    ok_json(Value::Array(out))
}

/// A message as RabbitMQ's `/get` shows it: payload (text with `encoding` `auto` when it is
/// UTF-8, else base64; cut to `truncate` bytes), its size, exchange, routing key, properties.
pub(super) fn message_json(msg: &crate::message::Message, encoding: &str, truncate: Option<u64>) -> Map<String, Value> {
    let body = msg.body();
    let shown = match truncate {
        Some(t) if (t as usize) < body.len() => &body[..t as usize],
        _ => body,
    };
    let (payload, enc) = match (encoding, std::str::from_utf8(shown)) {
        ("auto", Ok(text)) => (text.to_string(), "string"),
        _ => {
            use base64::Engine;
            (base64::engine::general_purpose::STANDARD.encode(shown), "base64")
        }
    };
    let props = warren_protocol::BasicProperties::decode(msg.properties()).unwrap_or_default();
    let mut o = Map::new();
    o.insert("payload_bytes".into(), json!(body.len()));
    o.insert("exchange".into(), json!(msg.exchange().to_str_lossy()));
    o.insert("routing_key".into(), json!(msg.routing_key().to_str_lossy()));
    o.insert("properties".into(), properties_json(&props));
    o.insert("payload".into(), json!(payload));
    o.insert("payload_encoding".into(), json!(enc));
    o
}

/// Properties as RabbitMQ's API shows them (only those set).
fn properties_json(p: &warren_protocol::BasicProperties) -> Value {
    let mut o = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.to_string(), v);
        }
    };
    let text = |x: &Option<ShortStr>| x.as_ref().map(|x| json!(x.to_str_lossy()));
    put("content_type", text(&p.content_type));
    put("content_encoding", text(&p.content_encoding));
    put("correlation_id", text(&p.correlation_id));
    put("reply_to", text(&p.reply_to));
    put("expiration", text(&p.expiration));
    put("message_id", text(&p.message_id));
    put("type", text(&p.kind));
    put("user_id", text(&p.user_id));
    put("app_id", text(&p.app_id));
    put("delivery_mode", p.delivery_mode.map(|d| json!(d)));
    put("priority", p.priority.map(|d| json!(d)));
    put("timestamp", p.timestamp.map(|d| json!(d)));
    put("headers", p.headers.as_ref().map(|h| Value::Object(crate::store::meta::table_to_json(h))));
    Value::Object(o)
}

async fn queue_bindings(State(m): St, Extension(u): U, Path((vhost, name)): Path<(String, String)>) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    if v.queue(&s(&name)).is_none() {
        return Err(ApiError::not_found());
    }
    let all = views::bindings(&v);
    ok_json(Value::Array(
        all.into_iter().filter(|b| b["destination"] == name.as_str() && b["destination_type"] == "queue").collect(),
    ))
}

// ---- bindings --------------------------------------------------------------------------------

async fn bindings(State(m): St, Extension(u): U, Query(q): Q) -> Resp {
    listing(vhosts_visible(&m, &u).iter().flat_map(|v| views::bindings(v)).collect(), &q)
}

async fn bindings_in(State(m): St, Extension(u): U, Path(vhost): Path<String>, Query(q): Q) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    listing(views::bindings(&v), &q)
}

fn dest_type(kind: &str) -> Result<&'static str, ApiError> {
    match kind {
        "q" => Ok("queue"),
        "e" => Ok("exchange"),
        _ => Err(ApiError::not_found()),
    }
}

fn between(v: &crate::vhost::VHost, src: &str, kind: &str, dst: &str) -> Result<Vec<Value>, ApiError> {
    let dt = dest_type(kind)?;
    let src = exchange_name(src).to_string();
    if !src.is_empty() && v.exchange(&s(&src)).is_none() {
        return Err(ApiError::not_found());
    }
    let exists = if dt == "queue" { v.queue(&s(dst)).is_some() } else { v.exchange(&s(dst)).is_some() };
    if !exists {
        return Err(ApiError::not_found());
    }
    let mut found: Vec<Value> = views::bindings(v)
        .into_iter()
        .filter(|b| b["source"] == src.as_str() && b["destination"] == dst && b["destination_type"] == dt)
        .collect();
    // As RabbitMQ lists them: by routing key, then arguments.
    found.sort_by(|a, b| {
        let k = |x: &Value| (x["routing_key"].as_str().unwrap_or("").to_string(), x["properties_key"].to_string());
        k(a).cmp(&k(b))
    });
    Ok(found)
}

/// The binding named by a properties key in a path (see [`views::properties_key_matches`]).
fn binding_named(v: &crate::vhost::VHost, src: &str, kind: &str, dst: &str, props: &str) -> Result<Value, ApiError> {
    between(v, src, kind, dst)?
        .into_iter()
        .find(|b| {
            let args = b["arguments"].as_object().cloned().unwrap_or_default();
            views::properties_key_matches(props, b["routing_key"].as_str().unwrap_or(""), &args)
        })
        .ok_or_else(ApiError::not_found)
}

async fn bindings_between(
    State(m): St,
    Extension(u): U,
    Path((vhost, src, kind, dst)): Path<(String, String, String, String)>,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    ok_json(Value::Array(between(&v, &src, &kind, &dst)?))
}

async fn binding_create(
    State(m): St,
    Extension(u): U,
    Path((vhost, src, kind, dst)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let dt = dest_type(&kind)?;
    let b = super::body::parse(&body)?;
    let rk = b.get("routing_key").and_then(|v| v.as_str()).unwrap_or("").to_string();
    let args = args_of(&b);
    if src.is_empty() || src == "amq.default" {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "ACCESS_REFUSED - operation not permitted on the default exchange".into(),
        ));
    }
    let g = grants(&m, &u, &v);
    let who = actor(&u, &g);
    // As RabbitMQ: permissions first, then existence (a missing queue is a bare 404).
    let r = if dt == "queue" {
        v.bind_queue(&who, &s(&dst), &s(&src), s(&rk), args.clone())
    } else {
        v.bind_exchange(&who, &s(&dst), &s(&src), s(&rk), args.clone())
    };
    r.map_err(|e| {
        refused_or(e, |e| match (dt == "queue" && v.queue(&s(&dst)).is_none(), e) {
            (true, _) => ApiError::not_found(),
            (false, e) => amqp_error(e),
        })
    })?;
    m.durable_sync().await;
    let pk = views::properties_key(&rk, &crate::store::meta::table_to_json(&args));
    let mut resp = StatusCode::CREATED.into_response();
    // Relative to the request URL, as RabbitMQ's: `<destination>/<properties key>`.
    let loc = format!("{}/{}", views::percent_encode(&dst), views::percent_encode(&pk));
    if let Ok(loc) = axum::http::HeaderValue::from_str(&loc) {
        resp.headers_mut().insert(axum::http::header::LOCATION, loc);
    }
    Ok(resp)
}

async fn binding_get(
    State(m): St,
    Extension(u): U,
    Path((vhost, src, kind, dst, props)): Path<(String, String, String, String, String)>,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    ok_json(binding_named(&v, &src, &kind, &dst, &props)?)
}

async fn binding_delete(
    State(m): St,
    Extension(u): U,
    Path((vhost, src, kind, dst, props)): Path<(String, String, String, String, String)>,
) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    let b = binding_named(&v, &src, &kind, &dst, &props)?;
    let rk = b["routing_key"].as_str().unwrap_or("").to_string();
    let args = match &b["arguments"] {
        Value::Object(a) => crate::store::meta::json_to_table(a),
        _ => warren_protocol::FieldTable::new(),
    };
    let src = exchange_name(&src).to_string();
    let g = grants(&m, &u, &v);
    let who = actor(&u, &g);
    let r = if kind == "q" {
        v.queue(&s(&dst)).ok_or_else(ApiError::not_found)?;
        v.unbind_queue(&who, &s(&dst), &s(&src), &s(&rk), &args)
    } else {
        v.unbind_exchange(&who, &s(&dst), &s(&src), &s(&rk), &args)
    };
    r.map_err(|e| refused_or(e, amqp_error))?;
    m.durable_sync().await;
    no_content()
}

// ---- connections, channels, consumers -------------------------------------------------------

fn visible_connections(m: &Mgmt, u: &MgmtUser) -> Vec<Arc<crate::stats::ConnInfo>> {
    m.broker.stats.connections().into_iter().filter(|c| u.sees_all() || c.user == u.name).collect()
}

async fn connections(State(m): St, Extension(u): U, Query(q): Q) -> Resp {
    listing(visible_connections(&m, &u).iter().map(|c| views::connection(&m, c)).collect(), &q)
}

fn find_connection(m: &Mgmt, u: &MgmtUser, name: &str) -> Result<Arc<crate::stats::ConnInfo>, ApiError> {
    visible_connections(m, u).into_iter().find(|c| c.name == name).ok_or_else(ApiError::not_found)
}

async fn connection(State(m): St, Extension(u): U, Path(name): Path<String>) -> Resp {
    let c = find_connection(&m, &u, &name)?;
    ok_json(views::connection(&m, &c))
}

async fn connection_delete(State(m): St, Extension(u): U, Path(name): Path<String>, headers: HeaderMap) -> Resp {
    let c = find_connection(&m, &u, &name)?;
    let reason = headers.get("x-reason").and_then(|v| v.to_str().ok()).unwrap_or("Closed via management plugin");
    c.force_close(reason);
    no_content()
}

async fn connection_channels(State(m): St, Extension(u): U, Path(name): Path<String>) -> Resp {
    let c = find_connection(&m, &u, &name)?;
    ok_json(Value::Array(views::channels_of(&m, &c)))
}

async fn channels(State(m): St, Extension(u): U, Query(q): Q) -> Resp {
    listing(visible_connections(&m, &u).iter().flat_map(|c| views::channels_of(&m, c)).collect(), &q)
}

async fn channel(State(m): St, Extension(u): U, Path(name): Path<String>) -> Resp {
    visible_connections(&m, &u)
        .iter()
        .flat_map(|c| views::channels_of(&m, c))
        .find(|ch| ch["name"] == name.as_str())
        .map_or(Err(ApiError::not_found()), ok_json)
}

async fn consumers(State(m): St, Extension(u): U) -> Resp {
    ok_json(Value::Array(views::consumers(&m, |v| m.may_use_vhost(&u, v))))
}

async fn consumers_in(State(m): St, Extension(u): U, Path(vhost): Path<String>) -> Resp {
    m.vhost_for(&u, &vhost)?;
    ok_json(Value::Array(views::consumers(&m, |v| v == vhost)))
}

// ---- definitions -----------------------------------------------------------------------------

async fn definitions(State(m): St, Extension(u): U) -> Resp {
    m.require_admin(&u)?;
    let d = crate::definitions::export_all(&m.broker);
    let mut v = serde_json::to_value(&d).map_err(|e| ApiError::bad_request(e.to_string()))?;
    v["rabbit_version"] = json!(views::RABBITMQ_VERSION);
    v["rabbitmq_version"] = json!(views::RABBITMQ_VERSION);
    v["product_name"] = json!("Warren");
    v["product_version"] = json!(env!("CARGO_PKG_VERSION"));
    ok_json(v)
}

/// The definitions document of a request: a JSON body, or (the UI's upload form) a
/// `file=<json>` url-encoded field.
fn definitions_body(body: &Bytes) -> Result<crate::store::meta::Definitions, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("failed to decode definitions: {e}")))
}

async fn definitions_post(State(m): St, Extension(u): U, body: Bytes) -> Resp {
    m.require_admin(&u)?;
    let d = definitions_body(&body)?;
    let problems = crate::definitions::import(&m.broker, &d);
    m.broker.definitions_changed();
    m.durable_sync().await;
    if !problems.is_empty() {
        return Err(ApiError::bad_request(problems.join("; ")));
    }
    no_content()
}

async fn definitions_vhost(State(m): St, Extension(u): U, Path(vhost): Path<String>) -> Resp {
    m.vhost_for(&u, &vhost)?;
    m.require_admin(&u)?;
    let d = crate::definitions::export_all(&m.broker);
    let strip = |items: Vec<Value>| -> Vec<Value> {
        items
            .into_iter()
            .filter(|i| i["vhost"] == vhost.as_str())
            .map(|mut i| {
                if let Value::Object(o) = &mut i {
                    o.remove("vhost");
                }
                i
            })
            .collect()
    };
    fn to<T: serde::Serialize>(x: &T) -> Vec<Value> {
        serde_json::to_value(x).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
    }
    ok_json(json!({
        "rabbit_version": views::RABBITMQ_VERSION,
        "rabbitmq_version": views::RABBITMQ_VERSION,
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        // Parameters keep their vhost field, as RabbitMQ's per-vhost export does.
        "parameters": d.parameters.iter().filter(|p| p["vhost"] == vhost.as_str()).cloned().collect::<Vec<_>>(),
        "policies": strip(d.policies.clone()),
        "queues": strip(to(&d.queues)),
        "exchanges": strip(to(&d.exchanges)),
        "bindings": strip(to(&d.bindings)),
    }))
}

async fn definitions_vhost_post(State(m): St, Extension(u): U, Path(vhost): Path<String>, body: Bytes) -> Resp {
    m.require_admin(&u)?;
    m.vhost_for(&u, &vhost)?;
    let mut raw: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Vhost-scoped documents carry no vhost fields: every object goes to this vhost.
    for key in ["queues", "exchanges", "bindings", "policies", "parameters"] {
        if let Some(Value::Array(items)) = raw.get_mut(key) {
            for i in items {
                if let Value::Object(o) = i {
                    o.insert("vhost".into(), json!(vhost));
                }
            }
        }
    }
    for key in ["users", "vhosts", "permissions", "topic_permissions"] {
        if let Value::Object(o) = &mut raw {
            o.remove(key);
        }
    }
    let d: crate::store::meta::Definitions =
        serde_json::from_value(raw).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let problems = crate::definitions::import(&m.broker, &d);
    m.durable_sync().await;
    if !problems.is_empty() {
        return Err(ApiError::bad_request(problems.join("; ")));
    }
    no_content()
}

// ---- health ----------------------------------------------------------------------------------

async fn aliveness(State(m): St, Extension(u): U, Path(vhost): Path<String>) -> Resp {
    let v = m.vhost_for(&u, &vhost)?;
    // As RabbitMQ: declare `aliveness-test`, publish to it, get the message back.
    let name = s("aliveness-test");
    let d = QueueSpec { name: name.clone(), ..QueueSpec::default() };
    // The health check's own queue: declared as the broker (as before any permission existed).
    let decl = v.declare_queue(&Actor::BROKER, &d).map_err(amqp_error)?;
    let msg = crate::message::Message::new(ShortStr::empty(), name, Bytes::new(), Bytes::from_static(b"test_message"))
        .map_err(ApiError::bad_request)?;
    decl.queue.publish(msg);
    match decl.queue.get(true).ok().flatten() {
        Some(_) => ok_json(json!({"status": "ok"})),
        None => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "failed", "aliveness test failed".into())),
    }
}

async fn health_alarms(State(m): St) -> Resp {
    use std::sync::atomic::Ordering::Relaxed;
    let b = &m.broker;
    let alarms: Vec<Value> = [("memory", b.mem_alarm.load(Relaxed)), ("disk", b.disk_alarm.load(Relaxed))]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(resource, _)| json!({"node": m.node, "resource": resource}))
        .collect();
    if !alarms.is_empty() {
        let body = json!({
            "status": "failed",
            "reason": "resource alarm(s) in effect",
            "alarms": alarms,
        });
        return Ok((StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response());
    }
    ok_json(json!({"status": "ok"}))
}

async fn health_ok() -> Resp {
    ok_json(json!({"status": "ok"}))
}

async fn health_port(State(m): St, Path(port): Path<String>) -> Resp {
    let Ok(port) = port.parse::<u16>() else {
        return Err(ApiError::bad_request(format!("invalid port {port}")));
    };
    let ports: Vec<u16> = m.listeners.iter().map(|(_, a)| a.port()).collect();
    if ports.contains(&port) {
        return ok_json(json!({"status": "ok", "port": port}));
    }
    let body = json!({"status": "failed", "reason": "No active listener", "missing": port, "ports": ports});
    Ok((StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response())
}

async fn health_protocol(State(m): St, Path(protocol): Path<String>) -> Resp {
    let wanted = match protocol.as_str() {
        "amqp" | "amqp091" | "amqp0-9-1" => "amqp",
        "amqps" | "amqp/ssl" => "amqp/ssl",
        "http" | "management" => "http",
        "prometheus" | "http/prometheus" => "http/prometheus",
        other => other,
    };
    if m.listeners.iter().any(|(p, _)| *p == wanted) {
        return ok_json(json!({"status": "ok", "protocol": protocol}));
    }
    let protocols: Vec<&str> = m.listeners.iter().map(|(p, _)| *p).collect();
    let body = json!({"status": "failed", "reason": "No active listener", "missing": protocol, "protocols": protocols});
    Ok((StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response())
}
