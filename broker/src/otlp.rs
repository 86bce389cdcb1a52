//! OpenTelemetry export of the message trace (`journal.rs`): every second, the events recorded
//! since the last export are sent as spans, OTLP over HTTP with JSON (`POST URL/v1/traces`), to
//! the collector `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) names. A message with a
//! W3C `traceparent` header joins that trace, its spans children of the span the header names;
//! one with only a message or correlation id gets a trace of its own (its id derived from it),
//! so its events still line up in one trace.
//!
//! Runs in: one task, spawned by `server::start` when an endpoint is configured; the HTTP
//! request runs on the blocking pool.
//!
//! # Invariants
//! - Export never slows the broker: events are read from the rings (a copy under their lock),
//!   and a collector that is down or slow loses spans (logged once per kind of failure), never
//!   holds events or memory.
use crate::broker::Broker;
use crate::journal::{Entry, Event};
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often new events are exported.
const EXPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// OTLP span kinds.
const KIND_INTERNAL: u32 = 1;
const KIND_PRODUCER: u32 = 4;
const KIND_CONSUMER: u32 = 5;

/// Export until shutdown.
pub async fn run(broker: Arc<Broker>, endpoint: String, mut shutdown: watch::Receiver<bool>) {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    tracing::info!("exporting the message trace as OpenTelemetry spans to {url}");
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(EXPORT_TIMEOUT)).build().into();
    let mut exported: HashMap<String, u64> = HashMap::new();
    let mut last_error = String::new();
    let mut tick = tokio::time::interval(EXPORT_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let mut spans = Vec::new();
        for v in broker.vhosts() {
            let from = exported.get(&v.name).copied().unwrap_or(0);
            let new = v.journal.since(from);
            if let Some(last) = new.last() {
                exported.insert(v.name.clone(), last.seq);
            }
            spans.extend(new.iter().map(|e| span(&v.name, e)));
        }
        if spans.is_empty() {
            continue;
        }
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [
                attr("service.name", "warren"),
                attr("service.version", env!("CARGO_PKG_VERSION")),
                attr("host.name", crate::node::name()),
            ]},
            "scopeSpans": [{"scope": {"name": "warren.message-trace"}, "spans": spans}],
        }]});
        let (agent, to) = (agent.clone(), url.clone());
        let sent = tokio::task::spawn_blocking(move || agent.post(&to).send_json(&body).map(|_| ())).await;
        match sent {
            Ok(Ok(())) => last_error.clear(),
            Ok(Err(e)) => {
                let e = e.to_string();
                if e != last_error {
                    tracing::warn!("OTLP export to {url} failed (spans dropped): {e}");
                    last_error = e;
                }
            }
            Err(_) => {}
        }
    }
}

fn attr(key: &str, value: impl Into<String>) -> Value {
    json!({"key": key, "value": {"stringValue": value.into()}})
}

/// The trace and parent span a message's spans belong to: its `traceparent`'s, else a trace id
/// derived from its vhost and message (or correlation) id.
fn trace_of(vhost: &str, e: &Entry) -> (String, Option<String>) {
    if let Some(tp) = &e.ids.traceparent {
        let parts: Vec<&str> = tp.split('-').collect();
        let hex = |s: &str, n: usize| {
            s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
        };
        if parts.len() >= 3 && hex(parts[1], 32) && hex(parts[2], 16) {
            return (parts[1].to_ascii_lowercase(), Some(parts[2].to_ascii_lowercase()));
        }
    }
    let id = e.ids.message_id.as_deref().or(e.ids.correlation_id.as_deref()).unwrap_or("");
    let d = sha2::Sha256::new().chain_update(vhost).chain_update([0]).chain_update(id).finalize();
    (d[..16].iter().map(|b| format!("{b:02x}")).collect(), None)
}

/// One event as an OTLP span (JSON encoding): named after the event, with the messaging
/// semantic conventions' attributes and the event's own fields as `warren.*`.
fn span(vhost: &str, e: &Entry) -> Value {
    let (trace_id, parent) = trace_of(vhost, e);
    let fields = e.to_json();
    let name = fields["event"].as_str().unwrap_or("event").to_string();
    let kind = match &e.event {
        Event::Published { .. } | Event::Released { .. } => KIND_PRODUCER,
        Event::Delivered { .. } => KIND_CONSUMER,
        _ => KIND_INTERNAL,
    };
    let destination = match &e.event {
        Event::Published { exchange, .. } | Event::Delayed { exchange, .. } | Event::Released { exchange, .. } => {
            exchange.clone()
        }
        Event::Refused { queue, .. }
        | Event::Delivered { queue, .. }
        | Event::Settled { queue, .. }
        | Event::Left { queue, .. } => queue.to_str_lossy().into_owned(),
    };
    let mut attributes = vec![
        attr("messaging.system", "rabbitmq"),
        attr("messaging.destination.name", destination),
        attr("warren.vhost", vhost),
    ];
    if let Some(id) = &e.ids.message_id {
        attributes.push(attr("messaging.message.id", id.as_str()));
    }
    if let Some(id) = &e.ids.correlation_id {
        attributes.push(attr("messaging.message.conversation_id", id.as_str()));
    }
    if let Event::Published { routing_key, .. } = &e.event {
        attributes.push(attr("messaging.rabbitmq.destination.routing_key", routing_key.as_str()));
    }
    for (k, v) in fields.as_object().into_iter().flatten() {
        if matches!(k.as_str(), "at" | "at_ms" | "message_id" | "correlation_id" | "traceparent") || v.is_null() {
            continue;
        }
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        attributes.push(attr(&format!("warren.{k}"), v));
    }
    let nanos = (e.at_ms as u128 * 1_000_000).to_string();
    let span_id = format!("{:016x}", rand::random::<u64>() | 1);
    let mut s = json!({
        "traceId": trace_id, "spanId": span_id, "name": name, "kind": kind,
        "startTimeUnixNano": nanos, "endTimeUnixNano": nanos, "attributes": attributes,
    });
    if let (Some(p), Some(o)) = (parent, s.as_object_mut()) {
        o.insert("parentSpanId".into(), json!(p));
    }
    s
}
