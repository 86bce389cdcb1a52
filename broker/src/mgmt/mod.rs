//! The management plugin's HTTP API (RabbitMQ-compatible paths, JSON shapes and status codes), the
//! embedded web UI, and the Prometheus endpoint.
//!
//! Runs in: one accept task per listener (management on 15672, Prometheus on 15692; see
//! [`serve`] for the HTTP connection limits) with a task per HTTP connection, and the rate
//! sampler task (every [`crate::stats::RATE_INTERVAL`]).
//!
//! # Invariants
//! - Every `/api` request is authenticated with HTTP basic auth against the broker's users; only
//!   users tagged `management`, `policymaker`, `monitoring` or `administrator` get in (401
//!   otherwise), and `loopback_users` apply as on AMQP. What a user sees and may change follows
//!   RabbitMQ's tags: administrators everything; monitoring users read everything; others only the
//!   vhosts they have permissions in.
//! - Changes go through the same `VHost` / `Broker` methods as AMQP clients use (same checks,
//!   same persistence); a change to durable state is answered after the definitions file has it.
//! - Errors are RabbitMQ's JSON `{"error": ..., "reason": ...}` with its status codes.
//! - A request that carries a body (other than GET / HEAD) must say `Content-Type:
//!   application/json` (415 otherwise), so that a web page cannot forge a state-changing call
//!   with a form or `text/plain` body (which browsers send cross-site without asking). No CORS
//!   header is ever sent: other origins get no access to answers.
//! - Every field of a JSON body is checked for its type in one place ([`body`]) before any handler
//!   uses it (400 otherwise).
pub mod api;
pub mod body;
pub mod clock;
pub mod controls;
pub mod faults;
pub mod history;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod operator_policies;
pub mod serve;
pub mod shovels;
pub mod streams;
pub mod ui;
pub mod user_limits;
pub mod views;

use crate::broker::Broker;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Shared state of the HTTP handlers.
pub struct Mgmt {
    /// The broker.
    pub broker: Arc<Broker>,
    /// When the broker started (uptime).
    pub started: std::time::Instant,
    /// Node name, RabbitMQ style (`rabbit@<hostname>`).
    pub node: String,
    /// Ports actually listened on, for `/api/overview` listeners and the port-listener check:
    /// (protocol, address).
    pub listeners: Vec<(&'static str, SocketAddr)>,
}

/// The authenticated user of a request.
#[derive(Clone, Debug)]
pub struct MgmtUser {
    /// User name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
}

impl MgmtUser {
    pub fn is_admin(&self) -> bool {
        self.tags.iter().any(|t| t == "administrator")
    }
    /// Administrators and monitoring users see every vhost, connection and channel.
    pub fn sees_all(&self) -> bool {
        self.tags.iter().any(|t| t == "administrator" || t == "monitoring")
    }
}

/// An API error: status plus RabbitMQ's `error` / `reason` pair.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub &'static str, pub String);

impl ApiError {
    pub fn not_found() -> ApiError {
        ApiError(StatusCode::NOT_FOUND, "Object Not Found", "Not Found".into())
    }
    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, "bad_request", reason.into())
    }
    /// Authenticated, but not allowed (RabbitMQ's British `not_authorised`, and no
    /// WWW-Authenticate header: a browser must not prompt for another login).
    pub fn not_authorised(reason: impl Into<String>) -> ApiError {
        ApiError(StatusCode::UNAUTHORIZED, "not_authorised", reason.into())
    }
    /// Bad or missing credentials (RabbitMQ's `not_authorized`, with the basic-auth challenge).
    pub fn login_failed() -> ApiError {
        ApiError(StatusCode::UNAUTHORIZED, "not_authorized", "Login failed".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, axum::Json(json!({"error": self.1, "reason": self.2}))).into_response();
        if self.1 == "not_authorized" {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        r
    }
}

/// Handler result.
pub type Resp = Result<Response, ApiError>;

/// 200 with a JSON body.
pub fn ok_json(v: Value) -> Resp {
    Ok(axum::Json(v).into_response())
}

/// 201 Created (a new object) or 204 No Content (an existing one updated), as RabbitMQ's PUT.
pub fn created_or_updated(created: bool) -> Resp {
    Ok(if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT }.into_response())
}

/// 204 No Content.
pub fn no_content() -> Resp {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Decode `user:password` from a basic Authorization header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Middleware: authenticate every `/api` request (RabbitMQ's rules, see the module invariants).
pub async fn authenticate(
    State(m): State<Arc<Mgmt>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some((name, pass)) = basic_credentials(req.headers()) else {
        return ApiError::login_failed().into_response();
    };
    if !m.broker.check_password(&name, &pass) || !m.broker.login_allowed_from(&name, Some(peer.ip())) {
        tracing::warn!(%peer, "HTTP access denied: user '{name}' - invalid credentials");
        return ApiError::login_failed().into_response();
    }
    let tags = m.broker.user(&name).map(|u| u.tags).unwrap_or_default();
    let user = MgmtUser { name, tags };
    if !user.tags.iter().any(|t| matches!(t.as_str(), "management" | "policymaker" | "monitoring" | "administrator")) {
        return ApiError::not_authorised("Not management user").into_response();
    }
    req.extensions_mut().insert(user);
    next.run(req).await
}

/// Whether a request carries a body: a non-zero Content-Length, or a chunked one.
fn carries_body(headers: &HeaderMap) -> bool {
    let length =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(n) => n > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// Whether the request says its body is JSON (`application/json`, parameters such as a charset
/// allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Middleware (after [`authenticate`]): 415 for a request with a body that is not declared as JSON
/// (see the module invariants). rabbitmq-compat: RabbitMQ (cowboy_rest) answers such requests 415
/// with an empty body; Warren adds its usual JSON error body.
pub async fn require_json(req: Request, next: Next) -> Response {
    let reads_only = req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD;
    if !reads_only && carries_body(req.headers()) && !is_json(req.headers()) {
        return ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "request bodies must be JSON, sent with Content-Type: application/json".into(),
        )
        .into_response();
    }
    next.run(req).await
}

impl Mgmt {
    /// Whether `u` may see (and act in) the contents of vhost `v`: as RabbitMQ, only with
    /// permissions in it, whatever the tags (monitoring users and administrators see every vhost
    /// in the vhost list, but not the queues of one they have no permissions in).
    pub fn may_use_vhost(&self, u: &MgmtUser, v: &str) -> bool {
        self.broker.grants(&u.name, v).is_some()
    }
    /// Whether `u` sees vhost `v` in the vhost list.
    pub fn may_list_vhost(&self, u: &MgmtUser, v: &str) -> bool {
        u.sees_all() || self.may_use_vhost(u, v)
    }
    /// 401 unless `u` is an administrator.
    pub fn require_admin(&self, u: &MgmtUser) -> Result<(), ApiError> {
        if u.is_admin() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not administrator user"))
        }
    }
    /// The vhost, if it exists and `u` may use it (404 otherwise, as RabbitMQ hides it).
    pub fn vhost_for(&self, u: &MgmtUser, v: &str) -> Result<Arc<crate::vhost::VHost>, ApiError> {
        match self.broker.vhost(v) {
            Some(vh) if self.may_use_vhost(u, v) => Ok(vh),
            Some(_) => Err(ApiError::not_authorised(format!("User not authorised to access virtual host '{v}'"))),
            None => Err(ApiError::not_found()),
        }
    }
    /// Wait until the message store has written everything appended so far (the acks of a purge
    /// or a delete), as the AMQP door does before purge-ok / delete-ok.
    pub async fn store_sync(&self) {
        if let Some(store) = &self.broker.store {
            store.wait_durable(store.barrier()).await;
        }
    }
    /// Wait until the definitions file has every change made so far (with a data directory).
    pub async fn durable_sync(&self) {
        if let Some(meta) = &self.broker.meta {
            if let Some(n) = meta.pending() {
                meta.wait(n).await;
            }
        }
    }
}

/// Apply RabbitMQ's list query parameters: `name` (+ `use_regex`) filter, `sort` /
/// `sort_reverse`, `columns`, and pagination (`page`, `page_size`) which wraps the list in
/// RabbitMQ's paging object.
pub fn listing(mut items: Vec<Value>, q: &HashMap<String, String>) -> Resp {
    let total = items.len();
    if let Some(name) = q.get("name").filter(|n| !n.is_empty()) {
        let regex = q.get("use_regex").is_some_and(|v| v == "true");
        let re = if regex { regex::Regex::new(name).ok() } else { None };
        items.retain(|i| {
            let n = i.get("name").and_then(|v| v.as_str()).unwrap_or("");
            match &re {
                Some(r) => r.is_match(n),
                None => n.contains(name.as_str()),
            }
        });
    }
    let sort_key = q.get("sort").cloned().unwrap_or_else(|| "name".into());
    items.sort_by(|a, b| {
        let (x, y) = (pick(a, &sort_key), pick(b, &sort_key));
        match (x.and_then(|v| v.as_f64()), y.and_then(|v| v.as_f64())) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
            _ => {
                let s = |v: Option<&Value>| v.map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
                s(x).cmp(&s(y))
            }
        }
    });
    if q.get("sort_reverse").is_some_and(|v| v == "true") {
        items.reverse();
    }
    if let Some(cols) = q.get("columns") {
        let cols: Vec<&str> = cols.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
        items = items.into_iter().map(|i| keep_columns(&i, &cols)).collect();
    }
    let Some(page) = q.get("page") else { return ok_json(Value::Array(items)) };
    let page: usize = page.parse().ok().filter(|&p| p >= 1).ok_or_else(|| ApiError::bad_request("invalid page"))?;
    let size: usize = match q.get("page_size") {
        Some(s) => s
            .parse()
            .ok()
            .filter(|&s| (1..=500).contains(&s))
            .ok_or_else(|| ApiError::bad_request("invalid page_size"))?,
        None => 100,
    };
    let filtered = items.len();
    let page_count = filtered.div_ceil(size).max(1);
    if page > page_count {
        let reason = format!("Page out of range, page: {page} page size: {size}, len: {filtered}");
        return Err(ApiError(StatusCode::BAD_REQUEST, "page_out_of_range", reason));
    }
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * size).take(size).collect();
    ok_json(json!({
        "filtered_count": filtered,
        "item_count": slice.len(),
        "items": slice,
        "page": page,
        "page_count": page_count,
        "page_size": size,
        "total_count": total,
    }))
}

/// A field by dotted path (`message_stats.publish`).
fn pick<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// Only the given (dotted) columns of an object.
fn keep_columns(v: &Value, cols: &[&str]) -> Value {
    let mut out = Map::new();
    for c in cols {
        if let Some(x) = pick(v, c) {
            let mut parts = c.split('.').peekable();
            let mut cur = &mut out;
            while let Some(p) = parts.next() {
                if parts.peek().is_none() {
                    cur.insert(p.to_string(), x.clone());
                } else {
                    let e = cur.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
                    let Value::Object(m) = e else { break };
                    cur = m;
                }
            }
        }
    }
    Value::Object(out)
}

/// Node name as RabbitMQ prints it.
pub fn node_name() -> String {
    crate::node::name().to_string()
}

/// Start the management and Prometheus listeners (those configured) and the rate sampler.
/// Returns the bound addresses: (management, prometheus).
pub async fn start(
    broker: Arc<Broker>,
    amqp: &[SocketAddr],
    amqps: &[SocketAddr],
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Vec<SocketAddr>, Vec<SocketAddr>)> {
    let cfg = broker.config.clone();
    let mut mgmt_listeners = Vec::new();
    for a in &cfg.management_listen {
        mgmt_listeners.push(crate::listen::bind(*a, crate::listen::Listener::Management)?);
    }
    let mut prom_listeners = Vec::new();
    for a in &cfg.prometheus_listen {
        prom_listeners.push(crate::listen::bind(*a, crate::listen::Listener::Prometheus)?);
    }
    let mgmt_addrs: Vec<SocketAddr> = mgmt_listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let prom_addrs: Vec<SocketAddr> = prom_listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let mut listeners: Vec<(&'static str, SocketAddr)> = Vec::new();
    listeners.extend(amqp.iter().map(|a| ("amqp", *a)));
    listeners.extend(amqps.iter().map(|a| ("amqp/ssl", *a)));
    listeners.extend(mgmt_addrs.iter().map(|a| ("http", *a)));
    listeners.extend(prom_addrs.iter().map(|a| ("http/prometheus", *a)));
    let state =
        Arc::new(Mgmt { broker: broker.clone(), started: std::time::Instant::now(), node: node_name(), listeners });
    if !mgmt_listeners.is_empty() || !prom_listeners.is_empty() {
        tasks.spawn(sampler(broker.clone(), shutdown.clone()));
    }
    // One gate for every HTTP listener: the cap and the descriptor reserve are process-wide.
    let gate = Arc::new(serve::HttpGate::new(cfg.http_header_timeout, cfg.http_idle_timeout));
    if !mgmt_listeners.is_empty() || !prom_listeners.is_empty() {
        tracing::info!(
            "HTTP listeners: at most {} connections, {} file descriptors kept for AMQP (limit {})",
            gate.cap,
            gate.reserve,
            gate.fd_limit.map_or_else(|| "none".to_string(), |l| l.to_string())
        );
    }
    // History samples (`?lengths_age=...`) are added around the API's own answers.
    let app = api::router(state.clone()).layer(axum::middleware::from_fn_with_state(state.clone(), history::samples));
    for l in mgmt_listeners {
        tasks.spawn(serve::accept_loop(l, app.clone(), gate.clone(), "management", shutdown.clone()));
    }
    let prom = metrics::router(state);
    for l in prom_listeners {
        tasks.spawn(serve::accept_loop(l, prom.clone(), gate.clone(), "prometheus", shutdown.clone()));
    }
    Ok((mgmt_addrs, prom_addrs))
}

/// Every [`crate::stats::RATE_INTERVAL`], sample broker, queue and connection counters for rates.
async fn sampler(broker: Arc<Broker>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(crate::stats::RATE_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        sample_now(&broker);
    }
}

/// Take one sample of every counter (the sampler; tests call it to get rates without waiting).
pub fn sample_now(broker: &Broker) {
    let now = crate::clock::unix_ms();
    let totals = views::global_totals(broker);
    broker.stats.sample(now, totals);
    history::record(broker, now, &totals);
    let mut live = std::collections::HashSet::new();
    for v in broker.vhosts() {
        for q in v.queues_snapshot() {
            let key = views::queue_rate_key(&v.name, &q.name.to_str_lossy());
            broker.stats.sample_object(key.clone(), now, q.totals());
            live.insert(key);
        }
        for x in v.exchanges_snapshot() {
            let key = views::exchange_key(&v.name, &x.name.to_str_lossy());
            broker.stats.sample_object(key.clone(), now, views::exchange_totals(&x));
            live.insert(key);
        }
    }
    for c in broker.stats.connections() {
        let key = format!("c/{}", c.id.0);
        broker.stats.sample_object(key.clone(), now, c.counters.totals());
        live.insert(key);
    }
    broker.stats.retain_objects(&live);
}
