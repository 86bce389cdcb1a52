//! The message trace (a Warren test control): what happened to each message that carries an
//! identity (`message_id`, `correlation_id` or a W3C `traceparent` header), kept in a bounded
//! in-memory ring per vhost (`--message-trace-size`, 0 = off): its publish (connection, channel,
//! user, exchange, routing key and the queues it was routed to, or unroutable), delays,
//! overflow refusals, deliveries, acks, nacks and rejects, expiry, dead-letter hops with their
//! reason and drops. `GET /api/warren/vhosts/{vhost}/trace?message_id=..` reads it back as a
//! timeline.
//!
//! Runs in: whichever task the event happens in (publishing readers, queue deliveries under the
//! queue's lock, acking readers, the timer task, the sweeper); readers of the API.
//!
//! # Invariants
//! - Off, each event site costs one branch on an immutable field. On, a message without an
//!   identity costs a look at its property flags (two bytes), nothing else; only messages with
//!   one are decoded and recorded.
//! - The ring holds at most its capacity; the oldest events go first. It keeps no message body
//!   and no slice of a read buffer (names are copied: [`owned`]).
//! - The ring's lock is a leaf, held only to push or copy.
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::Arc;
use warren_protocol::ShortStr;

/// Events kept per vhost unless `--message-trace-size` says otherwise: enough for the messages
/// of a test run, about 2-3 MB at most.
pub const DEFAULT_SIZE: usize = 10_000;

/// Slots of the identity cache: a message's publish, delivery and ack decode its properties
/// once, not three times (a power of two).
/// Enough to cover the messages in flight between a publish and its ack at a prefetch of a few
/// thousand; at most about 450 KB per vhost, allocated once the trace sees an identity.
const CACHE_SLOTS: usize = 4096;
/// Properties longer than this are decoded at every event rather than cached.
const CACHE_MAX_PROPS: usize = 96;

/// Property flag bits (high byte of the 16-bit flags) of the three identities.
const HEADERS_FLAG: u8 = 1 << 5;
const CORRELATION_ID_FLAG: u8 = 1 << 2;
/// `message_id` is bit 7 of the low byte.
const MESSAGE_ID_FLAG_LOW: u8 = 1 << 7;

/// A message's identities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ids {
    /// `message_id` property.
    pub message_id: Option<String>,
    /// `correlation_id` property.
    pub correlation_id: Option<String>,
    /// The `traceparent` header (W3C trace context).
    pub traceparent: Option<String>,
}

/// Whether raw `properties` may carry an identity (only the flags are read).
fn may_have_ids(properties: &[u8]) -> bool {
    match properties {
        [hi, lo, ..] => hi & (HEADERS_FLAG | CORRELATION_ID_FLAG) != 0 || lo & MESSAGE_ID_FLAG_LOW != 0,
        _ => false,
    }
}

impl Ids {
    /// The identities in raw `properties`; `None` when it has none (cheap for such messages:
    /// only the flags are read).
    pub fn of(properties: &Bytes) -> Option<Arc<Ids>> {
        if !may_have_ids(properties) {
            return None;
        }
        let p = warren_protocol::BasicProperties::decode(properties.clone()).ok()?;
        let s = |v: Option<warren_protocol::ShortStr>| v.map(|v| v.to_str_lossy().into_owned());
        let traceparent = p
            .headers
            .as_ref()
            .and_then(|h| h.get("traceparent"))
            .and_then(|v| v.as_bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned());
        let ids = Ids { message_id: s(p.message_id), correlation_id: s(p.correlation_id), traceparent };
        (ids != Ids::default()).then(|| Arc::new(ids))
    }

    /// Whether these identities match a query (a `traceparent` matches by its trace id too).
    pub fn matches(&self, q: &Query) -> bool {
        let eq = |a: &Option<String>, b: &Option<String>| b.as_ref().is_none_or(|b| a.as_ref() == Some(b));
        let trace = q.traceparent.as_ref().is_none_or(|want| {
            self.traceparent.as_ref().is_some_and(|tp| tp == want || trace_id(tp) == Some(want.as_str()))
        });
        eq(&self.message_id, &q.message_id) && eq(&self.correlation_id, &q.correlation_id) && trace
    }
}

/// A name kept by an event, copied: a name decoded from a frame is a slice of the connection's
/// read buffer, which an event outliving its queue or consumer must not keep alive.
pub fn owned(name: &ShortStr) -> ShortStr {
    ShortStr::from_bytes(Bytes::copy_from_slice(name.as_bytes())).unwrap_or_default()
}

/// The trace id of a `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id(tp: &str) -> Option<&str> {
    tp.split('-').nth(1)
}

/// What to look for (every field given must match).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    /// A whole `traceparent` or only its trace id.
    pub traceparent: Option<String>,
}

/// One thing that happened to a message.
#[derive(Debug, Clone)]
pub enum Event {
    /// Published to `exchange` with `routing_key` and routed to `queues` (none: unroutable).
    /// `connection` / `user` are empty for the broker's own publishes (dead letters).
    Published {
        exchange: String,
        routing_key: String,
        queues: Vec<ShortStr>,
        /// Exchanges passed through after the first (`true`: as an alternate exchange).
        via: Vec<(ShortStr, bool)>,
        connection: Arc<str>,
        channel: u16,
        user: String,
    },
    /// Held by a delayed-message exchange for `delay_ms`.
    Delayed { exchange: String, delay_ms: u64 },
    /// Came due at its delayed-message exchange and was routed to `queues`.
    Released { exchange: String, queues: Vec<ShortStr> },
    /// Refused by a queue (overflow `reject-publish`).
    Refused { queue: ShortStr, reason: &'static str },
    /// Delivered from `queue` (by basic.get when `consumer_tag` is empty).
    Delivered { queue: ShortStr, connection: Arc<str>, channel: u16, consumer_tag: ShortStr, redelivered: bool },
    /// Acknowledged (`ack`), or negatively (`nack` / `reject`, with `requeue`).
    Settled { queue: ShortStr, connection: Arc<str>, how: &'static str, requeue: bool },
    /// Left `queue` for `reason` (`expired`, `maxlen`, `rejected`, `delivery_limit`): dead-lettered
    /// to `dlx`, or dropped when the queue has none.
    Left { queue: ShortStr, reason: &'static str, dlx: Option<ShortStr> },
}

/// One recorded event.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Order of recording in its vhost (from 1), for exporters that resume where they stopped.
    pub seq: u64,
    /// When (unix ms, the vhost's clock).
    pub at_ms: u64,
    /// The message's identities.
    pub ids: Arc<Ids>,
    /// What happened.
    pub event: Event,
}

/// A cached decode: the properties (a copy: nothing of a read buffer is kept) and what they
/// identify (`None`: nothing).
struct Cached {
    len: u8,
    props: [u8; CACHE_MAX_PROPS],
    ids: Option<Arc<Ids>>,
}

/// The ring and the identity cache, under one lock.
#[derive(Default)]
struct Inner {
    /// The events, oldest first.
    ring: VecDeque<Entry>,
    /// Identities by the content of the properties they were decoded from (direct-mapped).
    cache: Vec<Option<Box<Cached>>>,
    /// The last `Entry::seq` given.
    seq: u64,
}

impl Entry {
    /// As the HTTP API and the OTLP export show it: `at` (the vhost's time), `event`, the
    /// message's identities and the event's fields.
    pub fn to_json(&self) -> serde_json::Value {
        let e = self;
        let names = |qs: &[ShortStr]| qs.iter().map(|q| q.to_str_lossy().into_owned()).collect::<Vec<_>>();
        let s = |n: &ShortStr| n.to_str_lossy().into_owned();
        let mut o = match &e.event {
            Event::Published { exchange, routing_key, queues, via, connection, channel, user } => json!({
                "event": if queues.is_empty() { "unroutable" } else { "published" },
                "exchange": exchange, "routing_key": routing_key, "queues": names(queues),
                "via": via.iter().map(|(x, _)| s(x)).collect::<Vec<_>>(),
                "alternate_exchanges": via.iter().filter(|(_, alt)| *alt).map(|(x, _)| s(x)).collect::<Vec<_>>(),
                "connection": connection.as_ref(), "channel": channel, "user": user,
                "by_broker": user.is_empty(),
            }),
            Event::Delayed { exchange, delay_ms } => {
                json!({"event": "delayed", "exchange": exchange, "delay_ms": delay_ms})
            }
            Event::Released { exchange, queues } => {
                json!({"event": "released", "exchange": exchange, "queues": names(queues)})
            }
            Event::Refused { queue, reason } => json!({"event": "refused", "queue": s(queue), "reason": reason}),
            Event::Delivered { queue, connection, channel, consumer_tag, redelivered } => json!({
                "event": if consumer_tag.is_empty() { "got" } else { "delivered" },
                "queue": s(queue), "connection": connection.as_ref(), "channel": channel,
                "consumer_tag": s(consumer_tag), "redelivered": redelivered,
            }),
            Event::Settled { queue, connection, how, requeue } => {
                json!({"event": how, "queue": s(queue), "connection": connection.as_ref(), "requeue": requeue})
            }
            Event::Left { queue, reason, dlx } => json!({
                "event": if dlx.is_some() { "dead-lettered" } else { "dropped" },
                "queue": s(queue), "reason": reason, "dead_letter_exchange": dlx.as_ref().map(s),
            }),
        };
        if let Some(m) = o.as_object_mut() {
            m.insert("at".into(), json!(crate::clock::format_utc(e.at_ms)));
            m.insert("at_ms".into(), json!(e.at_ms));
            m.insert("message_id".into(), json!(e.ids.message_id));
            m.insert("correlation_id".into(), json!(e.ids.correlation_id));
            m.insert("traceparent".into(), json!(e.ids.traceparent));
        }
        o
    }
}

/// One vhost's message trace.
#[derive(Default)]
pub struct Journal {
    /// Most events kept; 0: off (fixed at creation, so checking costs no atomic).
    cap: usize,
    /// Events and identity cache.
    inner: Mutex<Inner>,
}

impl Inner {
    fn push(&mut self, mut e: Entry, cap: usize) {
        if self.ring.len() >= cap {
            self.ring.pop_front();
        }
        self.seq += 1;
        e.seq = self.seq;
        self.ring.push_back(e);
    }
}

fn slot_of(props: &[u8]) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = rustc_hash::FxBuildHasher.build_hasher();
    h.write(props);
    h.finish() as usize & (CACHE_SLOTS - 1)
}

impl Journal {
    /// A trace keeping `cap` events (0: off).
    pub fn new(cap: usize) -> Journal {
        Journal { cap, inner: Mutex::new(Inner::default()) }
    }

    /// Whether events are recorded.
    #[inline]
    pub fn on(&self) -> bool {
        self.cap > 0
    }

    /// Whether [`Journal::record`] may record an event for a message with raw `properties` (only
    /// the flags are read): else a caller need not keep the message for it.
    #[inline]
    pub fn wants(&self, properties: &[u8]) -> bool {
        self.on() && may_have_ids(properties)
    }

    /// Record `event` for the message with raw `properties`, if it has an identity, at the time
    /// `clock` (the vhost's) says.
    #[inline]
    pub fn record(&self, properties: &[u8], clock: &crate::clock::VClock, event: impl FnOnce() -> Event) {
        if !self.on() {
            return;
        }
        if !may_have_ids(properties) {
            return;
        }
        let cacheable = properties.len() <= CACHE_MAX_PROPS;
        let slot = if cacheable { slot_of(properties) } else { 0 };
        if cacheable {
            // Cached: one lock for the lookup and the record.
            let mut inner = self.inner.lock();
            let hit = inner
                .cache
                .get(slot)
                .and_then(|c| c.as_ref())
                .filter(|c| c.props[..c.len as usize] == properties[..])
                .map(|c| c.ids.clone());
            if let Some(ids) = hit {
                let Some(ids) = ids else { return };
                let e = Entry { seq: 0, at_ms: clock.unix_ms(), ids, event: event() };
                inner.push(e, self.cap);
                return;
            }
        }
        // Not cached: decoded outside the lock (once per message while it stays cached).
        let ids = Ids::of(&Bytes::copy_from_slice(properties));
        let cached = cacheable.then(|| {
            let mut c = Box::new(Cached { len: properties.len() as u8, props: [0; CACHE_MAX_PROPS], ids: ids.clone() });
            c.props[..properties.len()].copy_from_slice(properties);
            c
        });
        let e = ids.map(|ids| Entry { seq: 0, at_ms: clock.unix_ms(), ids, event: event() });
        let mut inner = self.inner.lock();
        if let Some(c) = cached {
            if inner.cache.is_empty() {
                inner.cache.resize_with(CACHE_SLOTS, || None);
            }
            inner.cache[slot] = Some(c);
        }
        if let Some(e) = e {
            inner.push(e, self.cap);
        }
    }

    /// The events of messages matching `q`, oldest first.
    pub fn find(&self, q: &Query) -> Vec<Entry> {
        self.inner.lock().ring.iter().filter(|e| e.ids.matches(q)).cloned().collect()
    }

    /// The events recorded after `seq`, oldest first (at most the ring's).
    pub fn since(&self, seq: u64) -> Vec<Entry> {
        let inner = self.inner.lock();
        let skip = inner.ring.partition_point(|e| e.seq <= seq);
        inner.ring.iter().skip(skip).cloned().collect()
    }

    /// Events kept.
    pub fn len(&self) -> usize {
        self.inner.lock().ring.len()
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget every event (the vhost's reset).
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.ring.clear();
        inner.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::{BasicProperties, FieldTable, FieldValue, LongStr};

    #[test]
    fn only_messages_with_an_identity_are_recorded() {
        let j = Journal::new(2);
        let c = crate::clock::VClock::default();
        let ev = || Event::Refused { queue: ShortStr::from("q"), reason: "maxlen" };
        j.record(&BasicProperties::default().to_bytes(), &c, ev);
        assert!(j.is_empty());
        let mut h = FieldTable::new();
        h.insert("traceparent", FieldValue::LongStr(LongStr::from("00-abc-def-01")));
        let p = BasicProperties { headers: Some(h), ..Default::default() }.to_bytes();
        for n in 0..3 {
            j.record(&p, &c, || Event::Refused { queue: ShortStr::from(format!("q{n}")), reason: "maxlen" });
        }
        assert_eq!(j.len(), 2, "bounded");
        let q = Query { traceparent: Some("abc".into()), ..Default::default() };
        let queues: Vec<_> = j
            .find(&q)
            .into_iter()
            .map(|e| match e.event {
                Event::Refused { queue, .. } => queue.to_str_lossy().into_owned(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(queues, ["q1", "q2"]);
        let m = BasicProperties { message_id: Some("m-1".into()), ..Default::default() }.to_bytes();
        j.record(&m, &c, ev);
        let q = Query { message_id: Some("m-1".into()), ..Default::default() };
        assert_eq!(j.find(&q).len(), 1);
        assert!(Journal::new(0).find(&q).is_empty());
    }
}
