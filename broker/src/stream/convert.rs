//! Messages written through one protocol, read through the other: an AMQP 1.0 encoded message
//! (the stream protocol's) as an AMQP 0-9-1 delivery, and an AMQP 0-9-1 message as AMQP 1.0, as
//! RabbitMQ converts them (`warren_protocol::amqp10::convert`).
//!
//! Runs in: whoever delivers from a stream (an AMQP consumer under the stream's queue lock, a
//! stream protocol subscription's task).
//!
//! # Invariants
//! - 1.0 -> 0-9-1 never copies a data-section body: it stays a slice of the stored message.
//! - The `x-stream-offset` header is the reader's (added for 0-9-1, removed for 1.0).
use crate::message::{Message, MsgTtl};
use bytes::Bytes;
use warren_protocol::amqp10::{self, Message10};
use warren_protocol::{BasicProperties, FieldValue};

/// The AMQP 0-9-1 message for stream entry `raw` (AMQP 1.0 encoded) at `offset`, published to the
/// stream `stream` (its routing key, as RabbitMQ delivers it).
pub fn to_amqp091(raw: &Bytes, offset: u64, stream: &warren_protocol::ShortStr) -> Message {
    let (mut p, body) = match Message10::decode(raw.clone()) {
        Ok(m) => amqp10::convert::to_amqp091(&m),
        // rabbitmq-compat: a message that is not AMQP 1.0 is delivered as its raw bytes.
        Err(_) => (BasicProperties::default(), raw.clone()),
    };
    p.headers.get_or_insert_with(Default::default).insert("x-stream-offset", FieldValue::I64(offset as i64));
    let persistent = p.delivery_mode == Some(2);
    Message::from_parts(
        b"",
        stream.as_bytes(),
        &p.to_bytes(),
        crate::lent::Lent::all(&body),
        (MsgTtl::NONE, 0, persistent),
    )
}

/// The AMQP 1.0 encoding of a message published through AMQP 0-9-1 (the body is copied once).
pub fn to_amqp10(m: &Message) -> Bytes {
    let mut p = BasicProperties::decode(m.properties()).unwrap_or_default();
    if let Some(h) = p.headers.as_mut() {
        h.0.retain(|(k, _)| k.as_bytes() != b"x-stream-offset");
    }
    amqp10::convert::from_amqp091_routed(&p, &m.body_owned(), m.exchange_bytes(), m.routing_key_bytes())
}
