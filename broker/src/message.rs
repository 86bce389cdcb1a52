//! A published message as the broker holds it: routing info, raw properties and body.
//!
//! # Invariants
//! - One `Arc<Message>` per publish, shared by every queue the message was routed to; the body is
//!   the `Bytes` slice of the publisher's read buffer (or one concatenation of several body frames)
//!   and is never copied again until it is written to a consumer's socket buffer.
//! - `properties` are the publisher's property bytes (flags included), written back unchanged.
use bytes::Bytes;
use warren_protocol::ShortStr;

#[derive(Debug)]
pub struct Message {
    /// Exchange the message was published to (empty for the default exchange).
    pub exchange: ShortStr,
    /// Routing key given at publish.
    pub routing_key: ShortStr,
    /// Raw content-header property bytes (flags + values).
    pub properties: Bytes,
    /// Whole body.
    pub body: Bytes,
}

/// A message in a queue (ready or delivered-unacked).
#[derive(Debug, Clone)]
pub struct QueuedMsg {
    /// The shared message.
    pub msg: std::sync::Arc<Message>,
    /// Position in the queue, assigned at enqueue, increasing; requeued messages keep theirs so they
    /// go back to their original place.
    pub seq: u64,
    /// Set once the message has been delivered (and then requeued).
    pub redelivered: bool,
}
