//! Prometheus endpoint (port 15692): `/metrics` with RabbitMQ's aggregated metric names, and
//! `/metrics/per-object` with per-queue and per-connection series labelled as RabbitMQ labels them,
//! so stock RabbitMQ dashboards work unchanged.
//!
//! Streams, with the names of RabbitMQ's stream plugin collector (`rabbitmq_stream_*`: publishers
//! and consumers of the stream protocol, aggregated in `/metrics`, one series per publisher or
//! consumer labelled vhost / queue / connection / id in `/metrics/per-object`), its global
//! counters (`rabbitmq_global_publishers` / `rabbitmq_global_consumers` with `protocol="stream"`)
//! and its core collector (`rabbitmq_stream_segments`, `rabbitmq_stream_consumer_max_offset_lag`,
//! and a stream's messages and bytes as `rabbitmq_queue_messages*` of its queue).
//!
//! Runs in: the Prometheus server task; values are read at scrape time.
//!
//! # Invariants
//! - Text exposition format 0.0.4 (what RabbitMQ serves): each family once, `# HELP` and `# TYPE`
//!   first, counters named `*_total` as RabbitMQ names them. Written here rather than with a
//!   metrics library because the names and suffixes must be RabbitMQ's exactly and every value is
//!   computed at scrape time from the broker's own counters (nothing to register).
//! - Stream protocol connections and consumers count in `rabbitmq_connections` and
//!   `rabbitmq_consumers`, as RabbitMQ's stream plugin registers them with the core metrics.
use super::{views, Mgmt};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Prometheus router.
pub fn router(m: Arc<Mgmt>) -> Router {
    let a = m.clone();
    Router::new()
        .route("/metrics", get(move || metrics_response(a.clone(), false)))
        .route("/metrics/per-object", get(move || metrics_response(m.clone(), true)))
}

async fn metrics_response(m: Arc<Mgmt>, per_object: bool) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&m, per_object))
}

/// Per-queue values: (vhost, queue, ready, unacked, consumers, counters, bytes of ready and
/// unacked messages).
type QueueRow = (String, String, u64, u64, u64, crate::counters::Totals, u64);
/// A per-queue metric family: name, type, help, value.
type QueueFamily = (&'static str, &'static str, &'static str, fn(&QueueRow) -> f64);

/// Escape a label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A stream protocol publisher or consumer, labelled as RabbitMQ's stream collector labels them
/// (vhost, queue, connection, id), with its counters: published, confirmed, errored for a
/// publisher; consumed and the offset lag for a consumer.
struct StreamMember {
    vhost: String,
    stream: String,
    connection: String,
    id: String,
    counts: [u64; 3],
}

impl StreamMember {
    fn labels(&self) -> [(&str, &str); 4] {
        [("vhost", &self.vhost), ("queue", &self.stream), ("connection", &self.connection), ("id", &self.id)]
    }
}

/// A stream protocol publisher family of RabbitMQ's stream collector: name, help, which counter.
const STREAM_PUBLISHER_COUNTERS: [(&str, &str, usize); 3] = [
    ("rabbitmq_stream_publishers_messages_published_total", "Total number of messages published to streams", 0),
    ("rabbitmq_stream_publishers_messages_confirmed_total", "Total number of messages confirmed", 1),
    ("rabbitmq_stream_publishers_messages_errored_total", "Total number of messages errored", 2),
];
/// The stream protocol consumer counter of RabbitMQ's stream collector: name, help.
const STREAM_CONSUMED: (&str, &str) =
    ("rabbitmq_stream_consumers_messages_consumed_total", "Total number of messages from streams");
/// A stream's segment files (RabbitMQ's core collector types it a counter, without `_total`).
const STREAM_SEGMENTS: (&str, &str) = ("rabbitmq_stream_segments", "Total number of stream segment files");
/// Bytes of a queue's ready and unacknowledged messages (a stream: of the messages it keeps).
const QUEUE_BYTES: (&str, &str) =
    ("rabbitmq_queue_messages_bytes", "Size in bytes of ready and unacknowledged messages");

/// Publishers and consumers of every stream protocol connection.
fn stream_members(
    b: &crate::broker::Broker,
    next: &HashMap<(String, String), u64>,
) -> (Vec<StreamMember>, Vec<StreamMember>) {
    let (mut pubs, mut subs) = (Vec::new(), Vec::new());
    for c in b.stream_conns.list() {
        for p in c.publishers.lock().values() {
            pubs.push(StreamMember {
                vhost: c.vhost.clone(),
                stream: p.stream.clone(),
                connection: c.name.clone(),
                id: p.publisher_id.to_string(),
                counts: [
                    p.published.load(Ordering::Relaxed),
                    p.confirmed.load(Ordering::Relaxed),
                    p.errored.load(Ordering::Relaxed),
                ],
            });
        }
        for s in c.consumers.lock().values() {
            let offset = s.offset.load(Ordering::Relaxed);
            let end = next.get(&(c.vhost.clone(), s.stream.clone())).copied().unwrap_or(offset);
            subs.push(StreamMember {
                vhost: c.vhost.clone(),
                stream: s.stream.clone(),
                connection: c.name.clone(),
                id: s.subscription_id.to_string(),
                counts: [s.consumed.load(Ordering::Relaxed), end.saturating_sub(offset), 0],
            });
        }
    }
    (pubs, subs)
}

/// One metric family being written.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        let _ = writeln!(self.0, "# HELP {name} {help}");
    }
    fn value(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let l: Vec<String> = labels.iter().map(|(k, x)| format!("{k}=\"{}\"", esc(x))).collect();
            let _ = writeln!(self.0, "{name}{{{}}} {v}", l.join(","));
        }
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.family(name, kind, help);
        self.value(name, &[], v);
    }
}

/// Bytes of a queue's ready and unacknowledged messages (for a stream, of the messages it keeps).
fn queue_bytes(unacked: &HashMap<*const crate::queue::Queue, views::Unacked>, q: &Arc<crate::queue::Queue>) -> u64 {
    let ready = match q.stream_stats() {
        Some((_, _, bytes, _)) => bytes,
        None => q.snapshot().ready_bytes,
    };
    ready + unacked.get(&Arc::as_ptr(q)).map(|u| u.bytes).unwrap_or(0)
}

/// The whole exposition.
pub fn render(m: &Mgmt, per_object: bool) -> String {
    let b = &m.broker;
    let mut o = Out(String::with_capacity(8192));
    let conns = b.stats.connections();
    let vhosts = b.vhosts();
    let unacked = views::unacked_by_queue(b);
    let totals = views::global_totals(b);
    let channels: usize = conns.iter().map(|c| c.channels.lock().len()).sum();
    let mut queues = Vec::new();
    for v in &vhosts {
        for q in v.queues_snapshot() {
            queues.push((v.clone(), q));
        }
    }
    let (mut ready, mut un, mut consumers, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    // Streams by (vhost, name): (first offset, next offset, bytes, segments).
    let mut streams: HashMap<(String, String), (u64, u64, u64, usize)> = HashMap::new();
    for (v, q) in &queues {
        let (r, c) = q.counts();
        ready += r as u64;
        consumers += c as u64;
        un += views::unacked_count(&unacked, q);
        bytes += queue_bytes(&unacked, q);
        if let Some(st) = q.stream_stats() {
            streams.insert((v.name.clone(), q.name.to_str_lossy().into_owned()), st);
        }
    }
    let next: HashMap<(String, String), u64> = streams.iter().map(|(k, st)| (k.clone(), st.1)).collect();
    let (stream_pubs, stream_subs) = stream_members(b, &next);
    let stream_conns = b.stream_conns.count(None);

    // Identity and process.
    o.family("rabbitmq_identity_info", "untyped", "RabbitMQ node & cluster identity info");
    o.value("rabbitmq_identity_info", &[("rabbitmq_node", &m.node), ("rabbitmq_cluster", &m.node)], 1.0);
    o.family("rabbitmq_build_info", "untyped", "RabbitMQ & Erlang/OTP version info");
    o.value(
        "rabbitmq_build_info",
        &[
            ("rabbitmq_version", views::RABBITMQ_VERSION),
            ("product_name", "Warren"),
            ("product_version", env!("CARGO_PKG_VERSION")),
        ],
        1.0,
    );
    o.one("rabbitmq_process_resident_memory_bytes", "gauge", "Memory used in bytes", views::rss_bytes() as f64);
    o.one(
        "rabbitmq_resident_memory_limit_bytes",
        "gauge",
        "Memory high watermark in bytes",
        b.config.memory_high_watermark.bytes() as f64,
    );
    let (fd_used, fd_total) = views::fds();
    o.one("rabbitmq_process_open_fds", "gauge", "Open file descriptors", fd_used as f64);
    o.one("rabbitmq_process_max_fds", "gauge", "Open file descriptors limit", fd_total as f64);
    o.one("rabbitmq_disk_space_available_bytes", "gauge", "Disk space available in bytes", views::disk_free(b) as f64);
    o.one(
        "rabbitmq_alarms_memory_used_watermark",
        "gauge",
        "is set to 1 when the memory alarm is in effect",
        if b.mem_alarm.load(std::sync::atomic::Ordering::Relaxed) { 1.0 } else { 0.0 },
    );
    o.one(
        "rabbitmq_alarms_free_disk_space_watermark",
        "gauge",
        "is set to 1 when the disk alarm is in effect",
        if b.disk_alarm.load(std::sync::atomic::Ordering::Relaxed) { 1.0 } else { 0.0 },
    );
    o.one("rabbitmq_erlang_uptime_seconds", "gauge", "Node uptime", m.started.elapsed().as_secs_f64());

    // Object counts.
    o.one("rabbitmq_connections", "gauge", "Connections currently open", (conns.len() + stream_conns) as f64);
    o.one("rabbitmq_channels", "gauge", "Channels currently open", channels as f64);
    o.one(
        "rabbitmq_consumers",
        "gauge",
        "Consumers currently connected",
        (consumers + stream_subs.len() as u64) as f64,
    );
    o.one("rabbitmq_queues", "gauge", "Queues available", queues.len() as f64);

    // Global counters (RabbitMQ 3.8+ names).
    let proto = [("protocol", "amqp091")];
    let counter = |o: &mut Out, name: &str, help: &str, v: u64| {
        o.family(name, "counter", help);
        o.value(name, &proto, v as f64);
    };
    counter(
        &mut o,
        "rabbitmq_global_messages_received_total",
        "Total number of messages received from publishers",
        totals.published,
    );
    counter(
        &mut o,
        "rabbitmq_global_messages_received_confirm_total",
        "Total number of messages received from publishers expecting confirmations",
        totals.confirmed,
    );
    counter(
        &mut o,
        "rabbitmq_global_messages_routed_total",
        "Total number of messages routed to queues or streams",
        totals.published.saturating_sub(totals.returned + totals.dropped),
    );
    counter(
        &mut o,
        "rabbitmq_global_messages_unroutable_dropped_total",
        "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
        totals.dropped,
    );
    counter(
        &mut o,
        "rabbitmq_global_messages_unroutable_returned_total",
        "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
        totals.returned,
    );
    counter(
        &mut o,
        "rabbitmq_global_messages_confirmed_total",
        "Total number of messages confirmed to publishers",
        totals.confirmed,
    );
    let delivered_all = totals.delivered + totals.delivered_no_ack + totals.got + totals.got_no_ack;
    let deliveries: [(&str, &str, u64); 8] = [
        ("rabbitmq_global_messages_delivered_total", "Total number of messages delivered to consumers", delivered_all),
        (
            "rabbitmq_global_messages_delivered_consume_manual_ack_total",
            "Total number of messages delivered to consumers using manual acknowledgement mode",
            totals.delivered,
        ),
        (
            "rabbitmq_global_messages_delivered_consume_auto_ack_total",
            "Total number of messages delivered to consumers using automatic acknowledgement mode",
            totals.delivered_no_ack,
        ),
        (
            "rabbitmq_global_messages_delivered_get_manual_ack_total",
            "Total number of messages delivered to consumers via basic.get using manual acknowledgement mode",
            totals.got,
        ),
        (
            "rabbitmq_global_messages_delivered_get_auto_ack_total",
            "Total number of messages delivered to consumers via basic.get using automatic acknowledgement mode",
            totals.got_no_ack,
        ),
        (
            "rabbitmq_global_messages_get_empty_total",
            "Total number of times basic.get operations fetched no message",
            totals.get_empty,
        ),
        (
            "rabbitmq_global_messages_redelivered_total",
            "Total number of messages redelivered to consumers",
            totals.redelivered,
        ),
        (
            "rabbitmq_global_messages_acknowledged_total",
            "Total number of messages acknowledged by consumers",
            totals.acked,
        ),
    ];
    for (name, help, v) in deliveries {
        counter(&mut o, name, help, v);
    }
    // Warren's own (RabbitMQ's delayed-message plugin exports none): what the management API
    // shows as `messages_delayed` on each delayed-message exchange, summed.
    let delayed: usize = vhosts.iter().map(|v| v.timers.delayed()).sum();
    o.one(
        "warren_messages_delayed",
        "gauge",
        "Messages held by x-delayed-message exchanges until their x-delay is due",
        delayed as f64,
    );
    let stream_proto = [("protocol", "stream")];
    o.family("rabbitmq_global_consumers", "gauge", "Current number of consumers");
    o.value("rabbitmq_global_consumers", &proto, consumers as f64);
    o.value("rabbitmq_global_consumers", &stream_proto, stream_subs.len() as f64);
    // rabbitmq-compat: only the stream protocol's publishers; AMQP 0-9-1 channels that publish are
    // not counted as publishers (RabbitMQ counts them under protocol="amqp091").
    o.family("rabbitmq_global_publishers", "gauge", "Current number of publishers");
    o.value("rabbitmq_global_publishers", &stream_proto, stream_pubs.len() as f64);
    if !per_object {
        // Per connection in /metrics/per-object (a family may appear only once per scrape).
        o.one(
            "rabbitmq_connection_incoming_bytes_total",
            "counter",
            "Total number of bytes received on a connection",
            totals.recv_oct as f64,
        );
        o.one(
            "rabbitmq_connection_outgoing_bytes_total",
            "counter",
            "Total number of bytes sent on a connection",
            totals.send_oct as f64,
        );
    }

    if !per_object {
        // Aggregated queue metrics (what RabbitMQ's /metrics serves by default).
        o.one("rabbitmq_queue_messages_ready", "gauge", "Messages ready to be delivered to consumers", ready as f64);
        o.one(
            "rabbitmq_queue_messages_unacked",
            "gauge",
            "Messages delivered to consumers but not yet acknowledged",
            un as f64,
        );
        o.one("rabbitmq_queue_messages", "gauge", "Sum of ready and unacknowledged messages", (ready + un) as f64);
        o.one("rabbitmq_queue_consumers", "gauge", "Consumers on a queue", consumers as f64);
        o.one(QUEUE_BYTES.0, "gauge", QUEUE_BYTES.1, bytes as f64);
        o.one(STREAM_SEGMENTS.0, "counter", STREAM_SEGMENTS.1, streams.values().map(|s| s.3 as f64).sum());
        // RabbitMQ's stream collector, aggregated: counts, and the counters summed over the
        // publishers and consumers there are now.
        o.one("rabbitmq_stream_publishers", "gauge", "Number of publishers", stream_pubs.len() as f64);
        for (name, help, i) in STREAM_PUBLISHER_COUNTERS {
            o.one(name, "counter", help, stream_pubs.iter().map(|p| p.counts[i] as f64).sum());
        }
        o.one("rabbitmq_stream_consumers", "gauge", "Number of consumers", stream_subs.len() as f64);
        o.one(STREAM_CONSUMED.0, "counter", STREAM_CONSUMED.1, stream_subs.iter().map(|s| s.counts[0] as f64).sum());
    } else {
        let per_q: Vec<_> = queues
            .iter()
            .map(|(v, q)| {
                let (r, c) = q.counts();
                let u = views::unacked_count(&unacked, q);
                let name = q.name.to_str_lossy().into_owned();
                (v.name.clone(), name, r as u64, u, c as u64, q.totals(), queue_bytes(&unacked, q))
            })
            .collect();
        let lab = |v: &str, q: &str| vec![("vhost".to_string(), v.to_string()), ("queue".to_string(), q.to_string())];
        let fams: [QueueFamily; 7] = [
            ("rabbitmq_queue_messages_ready", "gauge", "Messages ready to be delivered to consumers", |x| x.2 as f64),
            (
                "rabbitmq_queue_messages_unacked",
                "gauge",
                "Messages delivered to consumers but not yet acknowledged",
                |x| x.3 as f64,
            ),
            ("rabbitmq_queue_messages", "gauge", "Sum of ready and unacknowledged messages", |x| (x.2 + x.3) as f64),
            ("rabbitmq_queue_consumers", "gauge", "Consumers on a queue", |x| x.4 as f64),
            (QUEUE_BYTES.0, "gauge", QUEUE_BYTES.1, |x| x.6 as f64),
            (
                "rabbitmq_queue_messages_published_total",
                "counter",
                "Total number of messages published to queues",
                |x| x.5.published as f64,
            ),
            (
                "rabbitmq_queue_messages_acked_total",
                "counter",
                "Total number of messages acknowledged by consumers on a queue",
                |x| x.5.acked as f64,
            ),
        ];
        for (name, kind, help, f) in fams {
            o.family(name, kind, help);
            for x in &per_q {
                let l = lab(&x.0, &x.1);
                let refs: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                o.value(name, &refs, f(x));
            }
        }
        // Streams, sorted for a stable exposition.
        let mut per_stream: Vec<_> = streams.iter().collect();
        per_stream.sort_by(|a, b| a.0.cmp(b.0));
        o.family(STREAM_SEGMENTS.0, "counter", STREAM_SEGMENTS.1);
        for ((v, name), st) in &per_stream {
            o.value(STREAM_SEGMENTS.0, &[("vhost", v), ("queue", name)], st.3 as f64);
        }
        // The largest offset lag of a stream's consumers (streams with stream protocol consumers).
        let mut lag: Vec<((&str, &str), u64)> = Vec::new();
        for s in &stream_subs {
            match lag.iter_mut().find(|(k, _)| *k == (s.vhost.as_str(), s.stream.as_str())) {
                Some((_, l)) => *l = (*l).max(s.counts[1]),
                None => lag.push(((&s.vhost, &s.stream), s.counts[1])),
            }
        }
        lag.sort();
        o.family("rabbitmq_stream_consumer_max_offset_lag", "gauge", "Highest consumer offset lag");
        for ((v, name), l) in &lag {
            o.value("rabbitmq_stream_consumer_max_offset_lag", &[("vhost", v), ("queue", name)], *l as f64);
        }
        // RabbitMQ's stream collector per object: its counters only, one series per publisher
        // or consumer.
        for (name, help, i) in STREAM_PUBLISHER_COUNTERS {
            o.family(name, "counter", help);
            for p in &stream_pubs {
                o.value(name, &p.labels(), p.counts[i] as f64);
            }
        }
        o.family(STREAM_CONSUMED.0, "counter", STREAM_CONSUMED.1);
        for s in &stream_subs {
            o.value(STREAM_CONSUMED.0, &s.labels(), s.counts[0] as f64);
        }
        // Per connection: AMQP 0-9-1 ones, then the stream protocol's.
        let sconns = b.stream_conns.list();
        o.family(
            "rabbitmq_connection_incoming_bytes_total",
            "counter",
            "Total number of bytes received on a connection",
        );
        for c in &conns {
            o.value(
                "rabbitmq_connection_incoming_bytes_total",
                &[("vhost", &c.vhost), ("connection", &c.name)],
                c.counters.totals().recv_oct as f64,
            );
        }
        for c in &sconns {
            o.value(
                "rabbitmq_connection_incoming_bytes_total",
                &[("vhost", &c.vhost), ("connection", &c.name)],
                c.recv_oct.load(Ordering::Relaxed) as f64,
            );
        }
        o.family("rabbitmq_connection_outgoing_bytes_total", "counter", "Total number of bytes sent on a connection");
        for c in &conns {
            o.value(
                "rabbitmq_connection_outgoing_bytes_total",
                &[("vhost", &c.vhost), ("connection", &c.name)],
                c.counters.totals().send_oct as f64,
            );
        }
        for c in &sconns {
            o.value(
                "rabbitmq_connection_outgoing_bytes_total",
                &[("vhost", &c.vhost), ("connection", &c.name)],
                c.send_oct.load(Ordering::Relaxed) as f64,
            );
        }
        o.family("rabbitmq_connection_channels", "gauge", "Channels on a connection");
        for c in &conns {
            o.value(
                "rabbitmq_connection_channels",
                &[("vhost", &c.vhost), ("connection", &c.name)],
                c.channels.lock().len() as f64,
            );
        }
    }
    o.0
}
