//! Broker events (RabbitMQ's `rabbitmq_event_exchange` plugin): queue, exchange, binding,
//! consumer, connection, channel, user, permission, policy and vhost changes, and authentication
//! outcomes, each published as an empty message with routing key `<object>.<verb>`
//! (`queue.created`, `user.authentication.failure`, ...) to the topic exchange
//! `amq.rabbitmq.event` of the default vhost, with RabbitMQ's headers (the event's fields,
//! `timestamp_in_ms`), `delivery_mode` 2 and a `timestamp` in seconds.
//!
//! Whoever changes something calls [`Events::emit`]; the broker's event task (started by
//! `Broker::start_events`) publishes them in order through the one publish path.
//!
//! Runs in: whichever task makes the change (emit); the broker's event task (publish).
//!
//! # Invariants
//! - Emitting never blocks and never takes a vhost or queue lock: the event is queued to the task,
//!   at most `EVENT_BACKLOG` of them (beyond, events are dropped and counted: memory stays bounded).
//! - Events emitted by one task are published in the order they were emitted.
//! - Before the task starts (boot, recovery) and after the broker is gone, events are dropped.
use crate::clock::unix_ms;
use bytes::Bytes;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc::Sender;
use warren_protocol::{BasicProperties, FieldTable, FieldValue, LongStr, ShortStr};

/// The exchange events are published to, in the default vhost.
pub const EVENT_EXCHANGE: &str = "amq.rabbitmq.event";
/// Events waiting for the event task at most; beyond, events are dropped (counted, logged once).
pub const EVENT_BACKLOG: usize = 100_000;

/// Who `user_who_performed_action` names for what the broker does by itself (RabbitMQ's name).
pub const INTERNAL_USER: &str = "rmq-internal";

/// The broker's event sink.
#[derive(Default)]
pub struct Events {
    /// The event task's inbox (at most `EVENT_BACKLOG` events), once it runs.
    inbox: Mutex<Option<Sender<Event>>>,
    /// Events dropped because the inbox was full.
    pub dropped: AtomicU64,
}

/// One event, ready to publish.
pub struct Event {
    /// Routing key: `queue.created`, ...
    pub key: &'static str,
    /// Content-header properties (headers, delivery mode, timestamp).
    pub properties: Bytes,
}

/// An event's headers, built by the emitter.
pub struct Fields(FieldTable);

impl Fields {
    /// A string field.
    pub fn str(&mut self, k: &'static str, v: impl AsRef<[u8]>) -> &mut Self {
        self.0.insert(k, FieldValue::LongStr(LongStr(Bytes::copy_from_slice(v.as_ref()))));
        self
    }
    /// A boolean field.
    pub fn bool(&mut self, k: &'static str, v: bool) -> &mut Self {
        self.0.insert(k, FieldValue::Bool(v));
        self
    }
    /// An integer field.
    pub fn int(&mut self, k: &'static str, v: i64) -> &mut Self {
        self.0.insert(k, FieldValue::I64(v));
        self
    }
    /// A table field (`arguments`, `client_properties`).
    // rabbitmq-compat: RabbitMQ 3.10 sends `arguments` and `client_properties` as arrays of
    // Erlang terms printed as strings; Warren sends the tables themselves.
    pub fn table(&mut self, k: &'static str, v: &FieldTable) -> &mut Self {
        self.0.insert(k, FieldValue::Table(v.clone()));
        self
    }
    /// `user_who_performed_action`: the user, or the broker itself.
    pub fn by(&mut self, user: Option<&str>) -> &mut Self {
        self.str("user_who_performed_action", user.unwrap_or(INTERNAL_USER))
    }
}

impl Events {
    /// Whether events are being published (the task runs).
    pub fn running(&self) -> bool {
        self.inbox.lock().as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Hand the sink its task's inbox.
    pub fn attach(&self, inbox: Sender<Event>) {
        *self.inbox.lock() = Some(inbox);
    }

    /// Emit `key` with the fields `fill` writes (called only while events are published).
    pub fn emit(&self, key: &'static str, fill: impl FnOnce(&mut Fields)) {
        let inbox = self.inbox.lock();
        let Some(s) = inbox.as_ref() else { return };
        let now = unix_ms();
        let mut f = Fields(FieldTable::new());
        fill(&mut f);
        f.int("timestamp_in_ms", now as i64);
        let props = BasicProperties {
            headers: Some(f.0),
            delivery_mode: Some(2),
            timestamp: Some(now / 1000),
            ..Default::default()
        };
        if s.try_send(Event { key, properties: props.to_bytes() }).is_err()
            && self.dropped.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::warn!("events: the event task is {EVENT_BACKLOG} events behind; events are dropped meanwhile");
        }
    }
}

impl Event {
    /// Its routing key as a short string.
    pub fn routing_key(&self) -> ShortStr {
        ShortStr::from_static(self.key)
    }
}
