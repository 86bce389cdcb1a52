//! Firehose tracing (RabbitMQ's `rabbitmqctl trace_on`): while a vhost traces, every message
//! published in it and every delivery from its queues (basic.deliver and basic.get-ok) is copied
//! to its `amq.rabbitmq.trace` exchange, routing key `publish.<exchange>` or `deliver.<queue>`,
//! with the original body and RabbitMQ's trace headers (`exchange_name`, `routing_keys`,
//! `properties`, `node`, `vhost`, `connection`, `channel`, `user`, and `routed_queues` or
//! `redelivered`).
//!
//! This module builds the copies and hands them to the vhost's tracer task (`vhost/trace.rs`),
//! which publishes them through the one publish path. Deliveries happen under a queue's lock, so
//! a copy is never routed where it is made.
//!
//! Runs in: the publishing connection's reader (publish copies), whichever task delivers (deliver
//! copies); the copies are published by the vhost's tracer task.
//!
//! # Invariants
//! - Tracing off costs one relaxed atomic load per publish and per delivery, nothing else.
//! - A message published to the trace exchange itself is never traced (neither its publish nor
//!   its deliveries), so tracing cannot feed itself.
//! - Copies of one connection reach the tracer task in the order they were made (one channel).
//! - At most `TRACE_BACKLOG` copies wait for the tracer task; beyond, copies are dropped and
//!   counted (RabbitMQ's tracer slows publishers down instead; Warren keeps the hot path free).
use crate::lent::Lent;
use bytes::Bytes;
use parking_lot::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc::{error::TrySendError, Sender};
use warren_protocol::{BasicProperties, FieldTable, FieldValue, LongStr, ShortStr};

/// The exchange trace copies are published to; exists in every vhost.
pub const TRACE_EXCHANGE: &str = "amq.rabbitmq.trace";

/// Trace copies waiting for the tracer task at most; beyond, copies are dropped (counted, logged
/// once): tracing must not hold memory without bound when the tracer falls behind.
pub const TRACE_BACKLOG: usize = 100_000;

/// One vhost's tracing switch and the way to its tracer task.
#[derive(Default)]
pub struct Tracer {
    /// Tracing is on (`trace_on`, `PUT /api/vhosts/{vhost}` with `"tracing": true`).
    on: AtomicBool,
    /// The tracer task's inbox (at most `TRACE_BACKLOG` copies), while it runs.
    inbox: Mutex<Option<Sender<TraceCopy>>>,
    /// Copies dropped because the inbox was full.
    pub dropped: AtomicU64,
}

/// A trace copy, ready to publish to [`TRACE_EXCHANGE`].
pub struct TraceCopy {
    /// `publish.<exchange>` or `deliver.<queue>`.
    pub routing_key: ShortStr,
    /// Content-header properties: only the trace headers.
    pub properties: Bytes,
    /// The original body.
    pub body: Bytes,
}

/// Who a connection is, as its trace copies and its channels' and consumers' events name it:
/// its vhost's tracer, the broker's events, the connection's name and user.
pub struct Origin {
    /// The vhost's tracer.
    pub tracer: std::sync::Arc<Tracer>,
    /// The broker's event sink.
    pub events: std::sync::Arc<crate::events::Events>,
    /// The vhost's name.
    pub vhost: String,
    /// RabbitMQ's connection name (`peer -> local`); empty for doors without a connection.
    pub connection: std::sync::Arc<str>,
    /// The authenticated user.
    pub user: String,
}

impl Tracer {
    /// Whether tracing is on (the hot path's one check).
    #[inline]
    pub fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Switch tracing; `inbox` is the running tracer task's inbox when turning it on.
    pub fn set(&self, inbox: Option<Sender<TraceCopy>>) {
        let on = inbox.is_some();
        *self.inbox.lock() = inbox;
        self.on.store(on, Ordering::Relaxed);
    }

    /// The tracer task's inbox, if it still runs (to start one only once).
    pub fn running(&self) -> bool {
        self.inbox.lock().as_ref().is_some_and(|s| !s.is_closed())
    }

    fn send(&self, copy: TraceCopy) {
        let Some(s) = &*self.inbox.lock() else { return };
        if let Err(TrySendError::Full(_)) = s.try_send(copy) {
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!("firehose: the tracer is {TRACE_BACKLOG} copies behind; copies are dropped meanwhile");
            }
        }
    }
}

/// What a traced message looked like when it was published.
pub struct Traced<'a> {
    /// Exchange published to.
    pub exchange: &'a [u8],
    /// Routing key published with.
    pub routing_key: &'a [u8],
    /// Raw properties (as delivered: without BCC).
    pub properties: Lent<'a>,
    /// Raw properties as published, whose CC and BCC headers `routing_keys` lists.
    // rabbitmq-compat: a delivered message keeps no BCC header, so deliver copies list the
    // routing key and CC entries only (RabbitMQ's list the BCC ones too).
    pub sent_properties: Lent<'a>,
    /// Body.
    pub body: Lent<'a>,
}

impl Traced<'_> {
    /// Never trace what goes to (or came from) the trace exchange.
    #[inline]
    pub fn traceable(exchange: &[u8]) -> bool {
        exchange != TRACE_EXCHANGE.as_bytes()
    }
}

impl Origin {
    /// Copy a publish: `publish.<exchange>` with the queues it reached.
    pub fn published(&self, m: &Traced, channel: u16, user: Option<&str>, routed: &[ShortStr]) {
        let mut h = self.headers(m, channel, user);
        let queues =
            routed.iter().map(|q| FieldValue::LongStr(LongStr(Bytes::copy_from_slice(q.as_bytes())))).collect();
        h.insert("routed_queues", FieldValue::Array(queues));
        self.tracer.send(copy(format!("publish.{}", String::from_utf8_lossy(m.exchange)), h, m.body));
    }

    /// Copy a delivery from `queue`: `deliver.<queue>`.
    pub fn delivered(&self, m: &Traced, queue: &ShortStr, redelivered: bool, channel: u16) {
        let mut h = self.headers(m, channel, None);
        h.insert("redelivered", FieldValue::I32(redelivered as i32));
        self.tracer.send(copy(format!("deliver.{}", queue.to_str_lossy()), h, m.body));
    }

    /// The headers both copies carry, in RabbitMQ's order.
    fn headers(&self, m: &Traced, channel: u16, user: Option<&str>) -> FieldTable {
        let props = BasicProperties::decode(m.properties.share()).ok();
        let sent = if std::ptr::eq(m.sent_properties.bytes(), m.properties.bytes()) {
            None
        } else {
            BasicProperties::decode(m.sent_properties.share()).ok()
        };
        let mut keys = vec![long(m.routing_key)];
        if let Some(h) = sent.as_ref().or(props.as_ref()).and_then(|p| p.headers.as_ref()) {
            for k in ["CC", "BCC"] {
                if let Some(FieldValue::Array(a)) = h.get(k) {
                    keys.extend(a.iter().filter(|v| matches!(v, FieldValue::LongStr(_))).cloned());
                }
            }
        }
        let mut h = FieldTable::new();
        h.insert("exchange_name", long(m.exchange));
        h.insert("routing_keys", FieldValue::Array(keys));
        h.insert("properties", FieldValue::Table(props.as_ref().map(properties_table).unwrap_or_default()));
        h.insert("node", long(crate::node::name().as_bytes()));
        h.insert("vhost", long(self.vhost.as_bytes()));
        h.insert("connection", long(self.connection.as_bytes()));
        h.insert("channel", FieldValue::I32(channel as i32));
        h.insert("user", long(user.unwrap_or(&self.user).as_bytes()));
        h
    }
}

fn copy(routing_key: String, headers: FieldTable, body: Lent<'_>) -> TraceCopy {
    let props = BasicProperties { headers: Some(headers), ..Default::default() };
    TraceCopy { routing_key: ShortStr::from(routing_key), properties: props.to_bytes(), body: body.share() }
}

fn long(b: &[u8]) -> FieldValue {
    FieldValue::LongStr(LongStr(Bytes::copy_from_slice(b)))
}

fn short(s: &ShortStr) -> FieldValue {
    long(s.as_bytes())
}

/// A message's properties as the table RabbitMQ's trace headers carry (its field names).
pub fn properties_table(p: &BasicProperties) -> FieldTable {
    let mut t = FieldTable::new();
    let strs = [
        ("content_type", &p.content_type),
        ("content_encoding", &p.content_encoding),
        ("correlation_id", &p.correlation_id),
        ("reply_to", &p.reply_to),
        ("expiration", &p.expiration),
        ("message_id", &p.message_id),
        ("type", &p.kind),
        ("user_id", &p.user_id),
        ("app_id", &p.app_id),
        ("cluster_id", &p.cluster_id),
    ];
    for (k, v) in strs {
        if let Some(v) = v {
            t.insert(k, short(v));
        }
    }
    if let Some(h) = &p.headers {
        t.insert("headers", FieldValue::Table(h.clone()));
    }
    if let Some(d) = p.delivery_mode {
        t.insert("delivery_mode", FieldValue::I32(d as i32));
    }
    if let Some(d) = p.priority {
        t.insert("priority", FieldValue::I32(d as i32));
    }
    if let Some(ts) = p.timestamp {
        t.insert("timestamp", FieldValue::Timestamp(ts));
    }
    t
}
