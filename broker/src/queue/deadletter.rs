//! Dead-lettering: the message a queue hands to its dead-letter exchange, with RabbitMQ's `x-death`
//! history, and the cycle rule.
//!
//! # Invariants
//! - `x-death` is a list of tables, one per (queue, reason), the newest first; the older ones in
//!   the order RabbitMQ 3.10 leaves them (reversed at every death). A repeat death through the
//!   same queue for the same reason increments that entry's `count` and moves it to the front.
//! - `x-first-death-queue` / `-reason` / `-exchange` are set once, on the first death.
//! - The dead-lettered message has no `expiration` (kept as `original-expiration` in x-death), no
//!   `CC` header (its keys are in x-death's `routing-keys`) and no `x-delivery-count`.
//! - A message is not dead-lettered into a queue it already died in unless a rejection happened in
//!   between (RabbitMQ's cycle rule); such targets are skipped.
use crate::message::Message;
use bytes::Bytes;
use warren_protocol::{BasicProperties, FieldTable, FieldValue, LongStr, ShortStr};

/// Why a message was dead-lettered (the `reason` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rejected,
    Expired,
    Maxlen,
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

fn s(v: &[u8]) -> FieldValue {
    FieldValue::LongStr(LongStr(Bytes::copy_from_slice(v)))
}

/// Build the dead-lettered message and its x-death list (for the cycle check).
pub fn dead_letter(
    msg: &Message,
    queue: &ShortStr,
    reason: Reason,
    dlx: &ShortStr,
    dlrk: Option<&ShortStr>,
    now_secs: u64,
) -> (Message, Vec<FieldValue>) {
    let mut props = BasicProperties::decode(msg.properties()).unwrap_or_default();
    let mut headers = props.headers.take().unwrap_or_default();
    let mut routing_keys = vec![s(msg.routing_key_bytes())];
    if let Some(FieldValue::Array(cc)) = headers.get("CC") {
        routing_keys.extend(cc.iter().filter_map(|v| v.as_bytes()).map(s));
    }
    let mut deaths = match headers.get("x-death") {
        Some(FieldValue::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    // rabbitmq-compat: RabbitMQ 3.10 re-groups the existing entries by (queue, reason) on every
    // death, which reverses their order, before it puts this death's entry first: after deaths in
    // queues a, b, c the list is [c, a, b], not [c, b, a]. Clients that read x-death by position
    // see the same list as on RabbitMQ.
    deaths.reverse();
    let same = |d: &FieldValue| match d {
        FieldValue::Table(t) => {
            t.get("queue").and_then(|v| v.as_bytes()) == Some(queue.as_bytes())
                && t.get("reason").and_then(|v| v.as_bytes()) == Some(reason.as_str().as_bytes())
        }
        _ => false,
    };
    if let Some(i) = deaths.iter().position(same) {
        let mut d = deaths.remove(i);
        if let FieldValue::Table(t) = &mut d {
            let n = t.get("count").and_then(|v| v.as_i64()).unwrap_or(0);
            t.insert("count", FieldValue::I64(n + 1));
        }
        deaths.insert(0, d);
    } else {
        let mut t = FieldTable::new();
        t.insert("count", FieldValue::I64(1));
        t.insert("reason", s(reason.as_str().as_bytes()));
        t.insert("queue", s(queue.as_bytes()));
        t.insert("time", FieldValue::Timestamp(now_secs));
        t.insert("exchange", s(msg.exchange_bytes()));
        t.insert("routing-keys", FieldValue::Array(routing_keys));
        if let Some(e) = &props.expiration {
            t.insert("original-expiration", s(e.as_bytes()));
        }
        deaths.insert(0, FieldValue::Table(t));
    }
    // As RabbitMQ: the CC list moves into x-death's routing-keys, and the quorum delivery counter
    // is a property of a delivery, not of the message.
    headers.0.retain(|(k, _)| k != "CC" && k != "BCC" && k != "x-delivery-count");
    if headers.get("x-first-death-reason").is_none() {
        headers.insert("x-first-death-exchange", s(msg.exchange_bytes()));
        headers.insert("x-first-death-queue", s(queue.as_bytes()));
        headers.insert("x-first-death-reason", s(reason.as_str().as_bytes()));
    }
    headers.insert("x-death", FieldValue::Array(deaths.clone()));
    props.headers = Some(headers);
    props.expiration = None;
    let routing_key = dlrk.map_or(msg.routing_key_bytes(), |k| k.as_bytes());
    let out = msg.rebuilt(
        dlx.as_bytes(),
        routing_key,
        &props.to_bytes(),
        (crate::message::MsgTtl::NONE, msg.priority(), msg.persistent()),
    );
    (out, deaths)
}

/// RabbitMQ's cycle rule: dead-lettering into `target` is a cycle when `target` appears in the
/// (updated) x-death list and no death up to and including that entry was a rejection.
pub fn is_cycle(target: &[u8], deaths: &[FieldValue]) -> bool {
    for d in deaths {
        let FieldValue::Table(t) = d else { continue };
        if t.get("reason").and_then(|v| v.as_bytes()) == Some(b"rejected") {
            return false;
        }
        if t.get("queue").and_then(|v| v.as_bytes()) == Some(target) {
            return true;
        }
    }
    false
}

/// A dead-lettered message on its way to its dead-letter exchange (`msg.exchange()`, with the
/// routing key already chosen).
pub struct DeadLetter {
    /// The message as it is republished (x-death added, expiration removed).
    pub msg: Message,
    /// Its updated x-death list, for the cycle rule ([`is_cycle`]).
    pub deaths: Vec<FieldValue>,
    /// Why it died.
    pub reason: Reason,
}

/// Whether a dead letter that died for `reason` with x-death list `deaths` skips the queue named
/// `target`: RabbitMQ's cycle rule drops automatic (rejection-free) cycles.
pub fn skips(reason: Reason, deaths: &[FieldValue], target: &[u8]) -> bool {
    reason != Reason::Rejected && is_cycle(target, deaths)
}
