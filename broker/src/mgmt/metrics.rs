//! Prometheus endpoint (port 15692): `/metrics` with RabbitMQ's aggregated metric names, and
//! `/metrics/per-object` with per-queue and per-connection series labelled as RabbitMQ labels them,
//! so stock RabbitMQ dashboards work unchanged.
//!
//! Runs in: the Prometheus server task; values are read at scrape time.
//!
//! # Invariants
//! - Text exposition format 0.0.4 (what RabbitMQ serves): each family once, `# HELP` and `# TYPE`
//!   first, counters named `*_total` as RabbitMQ names them. Written here rather than with a
//!   metrics library because the names and suffixes must be RabbitMQ's exactly and every value is
//!   computed at scrape time from the broker's own counters (nothing to register).
use super::{views, Mgmt};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::fmt::Write;
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

/// Per-queue values: (vhost, queue, ready, unacked, consumers, counters).
type QueueRow = (String, String, u64, u64, u64, crate::counters::Totals);
/// A per-queue metric family: name, type, help, value.
type QueueFamily = (&'static str, &'static str, &'static str, fn(&QueueRow) -> f64);

/// Escape a label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
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
    let (mut ready, mut un, mut consumers) = (0u64, 0u64, 0u64);
    for (_, q) in &queues {
        let (r, c) = q.counts();
        ready += r as u64;
        consumers += c as u64;
        un += views::unacked_count(&unacked, q);
    }

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
    o.one("rabbitmq_connections", "gauge", "Connections currently open", conns.len() as f64);
    o.one("rabbitmq_channels", "gauge", "Channels currently open", channels as f64);
    o.one("rabbitmq_consumers", "gauge", "Consumers currently connected", consumers as f64);
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
    o.family("rabbitmq_global_consumers", "gauge", "Current number of consumers");
    o.value("rabbitmq_global_consumers", &proto, consumers as f64);
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
    } else {
        let per_q: Vec<_> = queues
            .iter()
            .map(|(v, q)| {
                let (r, c) = q.counts();
                let u = views::unacked_count(&unacked, q);
                (v.name.clone(), q.name.to_str_lossy().into_owned(), r as u64, u, c as u64, q.totals())
            })
            .collect();
        let lab = |v: &str, q: &str| vec![("vhost".to_string(), v.to_string()), ("queue".to_string(), q.to_string())];
        let fams: [QueueFamily; 6] = [
            ("rabbitmq_queue_messages_ready", "gauge", "Messages ready to be delivered to consumers", |x| x.2 as f64),
            (
                "rabbitmq_queue_messages_unacked",
                "gauge",
                "Messages delivered to consumers but not yet acknowledged",
                |x| x.3 as f64,
            ),
            ("rabbitmq_queue_messages", "gauge", "Sum of ready and unacknowledged messages", |x| (x.2 + x.3) as f64),
            ("rabbitmq_queue_consumers", "gauge", "Consumers on a queue", |x| x.4 as f64),
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
        o.family("rabbitmq_connection_outgoing_bytes_total", "counter", "Total number of bytes sent on a connection");
        for c in &conns {
            o.value(
                "rabbitmq_connection_outgoing_bytes_total",
                &[("vhost", &c.vhost), ("connection", &c.name)],
                c.counters.totals().send_oct as f64,
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
