//! JSON views of broker objects, in the shapes RabbitMQ 3.10's management API returns (the fields
//! tools read: names, counts, `message_stats` with `*_details.rate`, arguments, details objects).
//!
//! Runs in: the HTTP handlers (read-only; takes each queue or channel lock briefly).
//!
//! # Invariants
//! - Counts are read without stopping the broker: each object is consistent in itself, a listing
//!   is not a snapshot of the whole broker at one instant.
use super::Mgmt;
use crate::broker::Broker;
use crate::counters::Totals;
use crate::exchange::{Dest, Exchange};
use crate::queue::Queue;
use crate::stats::{ConnInfo, Rates};
use crate::store::meta::table_to_json;
use crate::vhost::VHost;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Version reported as `rabbitmq_version` / `management_version`. rabbitmq-compat: Warren reports
/// the RabbitMQ version whose behaviour it follows, because tools gate features on it; the
/// product fields name Warren.
pub const RABBITMQ_VERSION: &str = crate::config::RABBITMQ_VERSION;

/// Key of a queue in the rate samples.
pub fn queue_rate_key(vhost: &str, name: &str) -> String {
    format!("q/{vhost}/{name}")
}

/// Broker-wide totals: connection counters (publish, confirm, unroutable, ack, bytes) plus queue
/// counters (deliveries, gets, redeliveries).
pub fn global_totals(b: &Broker) -> Totals {
    let mut t = b.stats.connection_totals();
    for v in b.vhosts() {
        let q = v.queue_totals();
        t.delivered += q.delivered;
        t.delivered_no_ack += q.delivered_no_ack;
        t.got += q.got;
        t.got_no_ack += q.got_no_ack;
        t.get_empty += q.get_empty;
        t.redelivered += q.redelivered;
    }
    t
}

/// RabbitMQ's `message_stats` object.
pub fn message_stats(t: &Totals, r: &Rates) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: u64, rate: f64| {
        m.insert(k.to_string(), json!(v));
        m.insert(format!("{k}_details"), json!({ "rate": rate }));
    };
    put("publish", t.published, r.published);
    put("confirm", t.confirmed, r.confirmed);
    put("return_unroutable", t.returned, r.returned);
    put("drop_unroutable", t.dropped, r.dropped);
    put(
        "deliver_get",
        t.delivered + t.delivered_no_ack + t.got + t.got_no_ack,
        r.delivered + r.delivered_no_ack + r.got + r.got_no_ack,
    );
    put("deliver", t.delivered, r.delivered);
    put("deliver_no_ack", t.delivered_no_ack, r.delivered_no_ack);
    put("get", t.got, r.got);
    put("get_no_ack", t.got_no_ack, r.got_no_ack);
    put("get_empty", t.get_empty, r.get_empty);
    put("redeliver", t.redelivered, r.redelivered);
    put("ack", t.acked, r.acked);
    Value::Object(m)
}

/// A queue's unacknowledged deliveries: count, body bytes, persistent count, persistent bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unacked {
    pub count: u64,
    pub bytes: u64,
    pub persistent: u64,
    pub persistent_bytes: u64,
}

/// Unacknowledged deliveries per queue (by identity), counted from every channel's window.
pub fn unacked_by_queue(b: &Broker) -> HashMap<*const Queue, Unacked> {
    let mut out: HashMap<*const Queue, Unacked> = HashMap::new();
    for c in b.stats.connections() {
        let chans: Vec<_> = c.channels.lock().values().cloned().collect();
        for ch in chans {
            let st = ch.state.lock();
            st.each_unacked(|q, m| {
                let e = out.entry(Arc::as_ptr(q)).or_default();
                let n = m.body_len() as u64;
                e.count += 1;
                e.bytes += n;
                if m.persistent {
                    e.persistent += 1;
                    e.persistent_bytes += n;
                }
            });
        }
    }
    out
}

/// Unacknowledged count of one queue.
pub fn unacked_count(u: &HashMap<*const Queue, Unacked>, q: &Arc<Queue>) -> u64 {
    u.get(&Arc::as_ptr(q)).map(|x| x.count).unwrap_or(0)
}

fn idle_since(last_used: u64) -> Value {
    // `last_used` is on the monotonic clock; turn it into wall time.
    let ago = crate::clock::now_ms().saturating_sub(last_used);
    let at = std::time::SystemTime::now() - std::time::Duration::from_millis(ago);
    let ms = at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    json!(format_timestamp(ms))
}

/// `YYYY-MM-DDTHH:MM:SS.mmm+00:00` (UTC), the format RabbitMQ 3.10 uses for `idle_since`.
pub fn format_timestamp(ms: u64) -> String {
    crate::clock::format_utc(ms)
}

/// A queue.
pub fn queue(m: &Mgmt, v: &VHost, q: &Arc<Queue>, unacked: &HashMap<*const Queue, Unacked>, detail: bool) -> Value {
    let snap = q.snapshot();
    let un = unacked.get(&Arc::as_ptr(q)).copied().unwrap_or_default();
    let unacked_n = un.count;
    let name = q.name.to_str_lossy().into_owned();
    let totals = q.totals();
    let rates = m.broker.stats.object_rates(&queue_rate_key(&v.name, &name));
    let applied = q.applied();
    let kind = match q.kind {
        crate::queue::settings::QueueType::Quorum => "quorum",
        crate::queue::settings::QueueType::Stream => "stream",
        crate::queue::settings::QueueType::Classic => "classic",
    };
    let exclusive_tag = snap.consumers.iter().find(|c| c.exclusive).map(|c| c.tag.to_str_lossy().into_owned());
    let mut o = json!({
        "name": name,
        "vhost": v.name,
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.exclusive_owner.is_some(),
        "arguments": table_to_json(&q.arguments),
        "node": m.node,
        "state": "running",
        "type": kind,
        "messages": snap.ready + unacked_n,
        "messages_details": {"rate": 0.0},
        "messages_ready": snap.ready,
        "messages_ready_details": {"rate": 0.0},
        "messages_unacknowledged": unacked_n,
        "messages_unacknowledged_details": {"rate": 0.0},
        "message_bytes": snap.ready_bytes + un.bytes,
        "message_bytes_ready": snap.ready_bytes,
        "message_bytes_unacknowledged": un.bytes,
        "message_bytes_ram": snap.ready_mem_bytes + un.bytes,
        "message_bytes_persistent": snap.ready_persistent.1 + un.persistent_bytes,
        "messages_persistent": snap.ready_persistent.0 + un.persistent,
        // Paged-out bodies are on disk; every unacked one is in memory.
        "messages_ram": snap.ready_in_memory + unacked_n,
        "messages_ready_ram": snap.ready_in_memory,
        "messages_unacknowledged_ram": unacked_n,
        // Bodies in memory plus about 200 bytes of bookkeeping per message (measured: a queued
        // 16-byte message costs about 300 bytes of RSS).
        "memory": snap.ready_mem_bytes + un.bytes + 200 * (snap.ready + unacked_n) + 1024,
        "head_message_timestamp": snap.head_timestamp,
        "single_active_consumer_tag": if applied.settings.single_active {
            snap.consumers.first().map(|c| json!(c.tag.to_str_lossy())).unwrap_or(Value::Null)
        } else {
            Value::Null
        },
        "consumers": snap.consumers.len(),
        "consumer_capacity": if snap.consumers.is_empty() { 0.0 } else { 1.0 },
        "consumer_utilisation": if snap.consumers.is_empty() { Value::Null } else { json!(1.0) },
        "exclusive_consumer_tag": exclusive_tag,
        "idle_since": idle_since(snap.last_used),
        "policy": applied.policy.as_ref().map(|p| json!(p.name)).unwrap_or(Value::Null),
        "effective_policy_definition": crate::policy::merged_definition(applied.policy.as_deref(), applied.operator_policy.as_deref()),
        "operator_policy": applied.operator_policy.as_ref().map(|p| json!(p.name)).unwrap_or(Value::Null),
        "message_stats": message_stats(&totals, &rates),
    });
    if let Some((first, next, _, segments)) = q.stream_stats() {
        // A stream's log, as RabbitMQ's stream queue infos: the committed offset (the last
        // message's; -1 while empty) and the segment files. rabbitmq-compat: `first_offset` (the
        // oldest offset retention kept) is Warren's own, for `rabbitmq-streams stream_status`.
        o["committed_offset"] = json!(next as i64 - 1);
        o["first_offset"] = json!(first);
        o["segments"] = json!(segments);
    }
    if detail {
        let consumers: Vec<Value> = snap.consumers.iter().map(|c| consumer_of(m, v, &name, c)).collect();
        o["consumer_details"] = Value::Array(consumers);
        o["deliveries"] = json!([]);
        o["incoming"] = json!([]);
    }
    o
}

/// Which connection a channel belongs to (for consumer and channel details).
fn conn_of_channel(m: &Mgmt, ch: &Arc<crate::queue::consumer::ChannelShared>) -> Option<Arc<ConnInfo>> {
    m.broker.stats.connections().into_iter().find(|c| c.channels.lock().values().any(|x| Arc::ptr_eq(x, ch)))
}

fn consumer_of(m: &Mgmt, v: &VHost, queue: &str, c: &Arc<crate::queue::consumer::Consumer>) -> Value {
    let conn = conn_of_channel(m, &c.channel);
    json!({
        "consumer_tag": c.tag.to_str_lossy(),
        "queue": {"name": queue, "vhost": v.name},
        "channel_details": conn.as_ref().map(|cn| channel_details(m, cn, c.channel.id)).unwrap_or(Value::Null),
        "ack_required": !c.no_ack,
        "exclusive": c.exclusive,
        "prefetch_count": c.prefetch,
        "active": true,
        "activity_status": "up",
        "arguments": table_to_json(&c.arguments),
        "consumer_timeout": c.timeout_ms,
        "priority": c.priority,
    })
}

fn channel_details(m: &Mgmt, c: &ConnInfo, number: u16) -> Value {
    json!({
        "name": format!("{} ({number})", c.name),
        "number": number,
        "connection_name": c.name,
        "peer_host": c.peer.map(|p| p.ip().to_string()),
        "peer_port": c.peer.map(|p| p.port()),
        "user": c.user,
        "node": m.node,
    })
}

/// Every consumer in the vhosts `filter` accepts.
pub fn consumers(m: &Mgmt, filter: impl Fn(&str) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    for v in m.broker.vhosts().into_iter().filter(|v| filter(&v.name)) {
        for q in v.queues_snapshot() {
            let name = q.name.to_str_lossy().into_owned();
            for c in q.snapshot().consumers {
                out.push(consumer_of(m, &v, &name, &c));
            }
        }
    }
    out
}

/// An exchange (`x` None: the default exchange).
/// Key of an exchange in the rate samples.
pub fn exchange_key(vhost: &str, name: &str) -> String {
    format!("x/{vhost}/{name}")
}

/// An exchange's counters as a `Totals` (published = publish_in, delivered = publish_out).
pub fn exchange_totals(x: &Exchange) -> Totals {
    Totals { published: x.counters.publish_in(), delivered: x.counters.publish_out(), ..Totals::default() }
}

fn exchange_stats(m: &Mgmt, v: &VHost, x: &Exchange) -> Value {
    let t = exchange_totals(x);
    let r = m.broker.stats.object_rates(&exchange_key(&v.name, &x.name.to_str_lossy()));
    json!({
        "publish_in": t.published, "publish_in_details": {"rate": r.published},
        "publish_out": t.delivered, "publish_out_details": {"rate": r.delivered},
    })
}

pub fn exchange(m: &Mgmt, v: &VHost, x: Option<&Arc<Exchange>>) -> Value {
    match x {
        None => json!({
            "name": "",
            "vhost": v.name,
            "type": "direct",
            "durable": true,
            "auto_delete": false,
            "internal": false,
            "arguments": {},
            "user_who_performed_action": "rmq-internal",
            "policy": Value::Null,
        }),
        Some(x) => json!({
            "message_stats": exchange_stats(m, v, x),
            "name": x.name.to_str_lossy(),
            "vhost": v.name,
            "type": x.kind.name(),
            "durable": x.durable,
            "auto_delete": x.auto_delete,
            "internal": x.internal,
            "arguments": table_to_json(&x.arguments),
            "user_who_performed_action": if x.name.as_bytes().starts_with(b"amq.") { "rmq-internal" } else { "" },
            "policy": x.policy().as_ref().map(|p| json!(p.name)).unwrap_or(Value::Null),
        })
        .as_object()
        .cloned()
        .map(|mut o| {
            // The delayed-message plugin's field, on its exchanges only.
            if x.kind == crate::exchange::ExchangeKind::DelayedMessage {
                o.insert("messages_delayed".into(), json!(v.timers.count_for(x.name.as_bytes())));
            }
            Value::Object(o)
        })
        .unwrap_or(Value::Null),
    }
}

/// RabbitMQ's `properties_key` of a binding: the routing key when there are no arguments (`~`
/// for an empty key), else `key~<hash of the arguments>`; the key quoted as RabbitMQ quotes it
/// (`quote_plus`: space as `+`, everything but letters, digits and `-_.` as `%XX`).
pub fn properties_key(routing_key: &str, args: &Map<String, Value>) -> String {
    let rk = quote_plus(routing_key);
    if args.is_empty() {
        return if rk.is_empty() { "~".into() } else { rk };
    }
    format!("{rk}~{}", args_hash(args))
}

/// The arguments part of a properties key: 32 bits as 6 URL-safe base64 characters, the shape of
/// RabbitMQ's. rabbitmq-compat: RabbitMQ hashes the Erlang term (`erlang:phash2`), so the
/// characters differ; keys are only ever compared with ones this broker listed.
fn args_hash(args: &Map<String, Value>) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(serde_json::to_vec(args).unwrap_or_default());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..4])
}

/// Whether `given` (a path segment, percent-decoded once by the router) names the binding with
/// routing key `rk` and `args`. As RabbitMQ: split at `~`, unquote the key part (so the listed
/// form works whether a client quotes it again or not), and compare the arguments hash.
pub fn properties_key_matches(given: &str, rk: &str, args: &Map<String, Value>) -> bool {
    let (key, hash) = match given.split_once('~') {
        Some((k, h)) => (k, Some(h)),
        None => (given, None),
    };
    let hash_ok = match hash {
        None => args.is_empty(),
        Some("") => args.is_empty(),
        Some(h) => !args.is_empty() && h == args_hash(args),
    };
    hash_ok && unquote_plus(key).as_deref() == Some(rk)
}

/// RabbitMQ's `unquote_plus`: `+` is a space, `%XX` a byte; `None` if that is not UTF-8.
fn unquote_plus(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).ok()?, 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// RabbitMQ's `quote_plus`.
pub fn quote_plus(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encode everything but unreserved characters (URL path segments).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn binding_json(vhost: &str, source: &str, dest: &str, dest_type: &str, rk: &str, args: Map<String, Value>) -> Value {
    let pk = properties_key(rk, &args);
    json!({
        "source": source,
        "vhost": vhost,
        "destination": dest,
        "destination_type": dest_type,
        "routing_key": rk,
        "arguments": args,
        "properties_key": pk,
    })
}

/// Every binding of a vhost: the implicit default-exchange binding of each queue first, as
/// RabbitMQ lists them, then the explicit ones.
pub fn bindings(v: &VHost) -> Vec<Value> {
    let mut out = Vec::new();
    let mut queues = v.queues_snapshot();
    queues.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    for q in &queues {
        let n = q.name.to_str_lossy();
        out.push(binding_json(&v.name, "", &n, "queue", &n, Map::new()));
    }
    let mut xs = v.exchanges_snapshot();
    xs.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    for x in xs {
        let src = x.name.to_str_lossy().into_owned();
        for b in x.bindings().all.iter() {
            let (dest, dt) = match &b.dest {
                Dest::Queue(q) => (q.name.to_str_lossy().into_owned(), "queue"),
                Dest::Exchange(e) => (e.name.to_str_lossy().into_owned(), "exchange"),
            };
            out.push(binding_json(
                &v.name,
                &src,
                &dest,
                dt,
                &b.routing_key.to_str_lossy(),
                table_to_json(&b.arguments),
            ));
        }
    }
    out
}

/// A connection.
pub fn connection(m: &Mgmt, c: &ConnInfo) -> Value {
    let t = c.counters.totals();
    let r = m.broker.stats.object_rates(&format!("c/{}", c.id.0));
    let channels = c.channels.lock().len();
    json!({
        "name": c.name,
        "node": m.node,
        "vhost": c.vhost,
        "user": c.user,
        "user_who_performed_action": c.user,
        "state": if c.blocked.load(std::sync::atomic::Ordering::Relaxed) { "blocked" } else { "running" },
        "channels": channels,
        "channel_max": c.channel_max,
        "frame_max": c.frame_max,
        "timeout": c.heartbeat,
        "protocol": if c.direct { "Direct 0-9-1" } else { "AMQP 0-9-1" },
        "auth_mechanism": "PLAIN",
        "type": if c.direct { "direct" } else { "network" },
        "ssl": c.tls,
        "ssl_protocol": Value::Null,
        "peer_host": c.peer.map(|p| p.ip().to_string()),
        "peer_port": c.peer.map(|p| p.port()),
        "host": c.local.map(|p| p.ip().to_string()),
        "port": c.local.map(|p| p.port()),
        "connected_at": c.connected_at,
        "client_properties": table_to_json(&c.client_properties),
        "user_provided_name": c.client_properties.get("connection_name").and_then(|v| v.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned()),
        "recv_oct": t.recv_oct,
        "recv_oct_details": {"rate": r.recv_oct},
        "send_oct": t.send_oct,
        "send_oct_details": {"rate": r.send_oct},
        "recv_cnt": c.counters.recv_cnt.load(std::sync::atomic::Ordering::Relaxed),
        "send_cnt": c.counters.send_cnt.load(std::sync::atomic::Ordering::Relaxed),
        "garbage_collection": {},
        "reductions": 0,
    })
}

/// The channels of a connection.
pub fn channels_of(m: &Mgmt, c: &ConnInfo) -> Vec<Value> {
    let mut chans: Vec<_> = c.channels.lock().iter().map(|(n, ch)| (*n, ch.clone())).collect();
    chans.sort_by_key(|(n, _)| *n);
    chans
        .into_iter()
        .map(|(n, ch)| {
            let mode = ch.mode.load(std::sync::atomic::Ordering::Relaxed);
            let st = ch.state.lock();
            let mut t = ch.counters.totals();
            t.delivered = st.counted.delivered;
            t.delivered_no_ack = st.counted.delivered_no_ack;
            t.got = st.counted.got;
            t.got_no_ack = st.counted.got_no_ack;
            t.redelivered = st.counted.redelivered;
            let stats = message_stats(&t, &Rates::default());
            json!({
                "name": format!("{} ({n})", c.name),
                "number": n,
                "node": m.node,
                "vhost": c.vhost,
                "user": c.user,
                "user_who_performed_action": c.user,
                "connection_details": {
                    "name": c.name,
                    "peer_host": c.peer.map(|p| p.ip().to_string()),
                    "peer_port": c.peer.map(|p| p.port()),
                },
                "state": "running",
                "confirm": mode == crate::counters::MODE_CONFIRM,
                "transactional": mode == crate::counters::MODE_TX,
                "prefetch_count": st.consumer_prefetch,
                "global_prefetch_count": st.channel_prefetch,
                "consumer_count": st.consumers.len(),
                "messages_unacknowledged": st.unacked_count,
                "messages_unconfirmed": ch.unconfirmed.load(std::sync::atomic::Ordering::Relaxed),
                "messages_uncommitted": 0,
                "acks_uncommitted": 0,
                "message_stats": stats,
            })
        })
        .collect()
}

/// A vhost with its message counts.
pub fn vhost(m: &Mgmt, v: &VHost, unacked: &HashMap<*const Queue, Unacked>) -> Value {
    let (mut ready, mut un) = (0u64, 0u64);
    for q in v.queues_snapshot() {
        ready += q.message_count() as u64;
        un += unacked_count(unacked, &q);
    }
    let t = v.queue_totals();
    let description = if v.name == m.broker.config.default_vhost { "Default virtual host" } else { "" };
    json!({
        "name": v.name,
        "description": description,
        "tags": [],
        "metadata": {"description": description, "tags": []},
        "default_queue_type": "classic",
        "tracing": v.tracing(),
        "messages": ready + un,
        "messages_details": {"rate": 0.0},
        "messages_ready": ready,
        "messages_ready_details": {"rate": 0.0},
        "messages_unacknowledged": un,
        "messages_unacknowledged_details": {"rate": 0.0},
        "message_stats": message_stats(&t, &Rates::default()),
        "cluster_state": { m.node.clone(): "running" },
    })
}

/// A user as `/api/users` lists it.
pub fn user(m: &Mgmt, u: &crate::auth::User) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.hash_base64(),
        "hashing_algorithm": u.hashing_algorithm,
        "tags": u.tags,
        "limits": m.broker.user_limits(&u.name).to_json(),
    })
}

/// A permission entry.
pub fn permission(p: &crate::auth::Permission) -> Value {
    json!({"user": p.user, "vhost": p.vhost, "configure": p.configure, "write": p.write, "read": p.read})
}

/// A topic permission entry, as RabbitMQ's API shows it.
pub fn topic_permission(p: &crate::auth::TopicPermission) -> Value {
    json!({"user": p.user, "vhost": p.vhost, "exchange": p.exchange, "write": p.write, "read": p.read})
}

/// The node, as `/api/nodes` shows it.
pub fn node(m: &Mgmt) -> Value {
    let b = &m.broker;
    let mem_used = rss_bytes();
    let limit = b.config.memory_high_watermark.bytes();
    let (fd_used, fd_total) = fds();
    let disk_free = disk_free(b);
    json!({
        "name": m.node,
        "type": "disc",
        "running": true,
        "being_drained": false,
        "os_pid": std::process::id().to_string(),
        "uptime": m.started.elapsed().as_millis() as u64,
        "mem_used": mem_used,
        "mem_limit": limit,
        "mem_alarm": b.mem_alarm.load(std::sync::atomic::Ordering::Relaxed),
        "disk_free": disk_free,
        "disk_free_limit": b.config.disk_free_limit.bytes(),
        "disk_free_alarm": b.disk_alarm.load(std::sync::atomic::Ordering::Relaxed),
        "fd_used": fd_used,
        "fd_total": fd_total,
        "sockets_used": b.stats.conns.read().len(),
        "sockets_total": fd_total,
        "proc_used": 0,
        "proc_total": 1_048_576,
        "run_queue": 0,
        "processors": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "rates_mode": "basic",
        "exchange_types": exchange_types(),
        "applications": [],
        "partitions": [],
        "enabled_plugins": ["rabbitmq_management", "rabbitmq_prometheus"],
    })
}

/// Exchange types, as in `/api/overview`.
pub fn exchange_types() -> Value {
    let types: Vec<Value> = crate::exchange::ExchangeKind::ALL
        .iter()
        .map(|k| json!({"name": k.name(), "description": k.description(), "enabled": true}))
        .collect();
    Value::Array(types)
}

/// Resident memory of this process, bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// (open file descriptors, limit).
pub fn fds() -> (u64, u64) {
    let used = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    let total = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        })
        .unwrap_or(1024);
    (used, total)
}

/// Free bytes on the data directory's filesystem (0 when unknown).
pub fn disk_free(b: &Broker) -> u64 {
    let dir = b.config.data_dir.clone().unwrap_or_else(|| std::path::PathBuf::from("."));
    crate::monitor::disk_free(&dir).unwrap_or(0)
}
