//! A published message as the broker holds it: routing info, raw properties and body.
//!
//! # Invariants
//! - One `Arc<Message>` per publish, shared by every queue the message was routed to; the body is
//!   the `Bytes` slice of the publisher's read buffer (or one concatenation of several body frames)
//!   and is never copied again until it is written to a consumer's socket buffer. The exception
//!   is a small message (all its parts at most [`COMPACT_MAX`] bytes): its body is copied once,
//!   at build, into the building thread's arena, after the message's head (see [`compact`]).
//! - The head (exchange, routing key, properties) is always one buffer of its own, copied at
//!   build: `exchange_len` and `routing_key_len` say where its parts end.
//! - `properties` are the publisher's property bytes (flags included), written back unchanged.
use bytes::Bytes;
use warren_protocol::ShortStr;

#[derive(Debug)]
pub struct Message {
    /// Exchange name, routing key and raw content-header properties (flags + values), one after
    /// the other in one buffer (read with [`Message::exchange`], [`Message::routing_key`],
    /// [`Message::properties`]): one `Bytes` where three took 96 bytes.
    head: Bytes,
    /// Whole body.
    pub body: Bytes,
    /// Per-message TTL from the `expiration` property, ms (parsed once at publish).
    pub ttl_ms: MsgTtl,
    /// Length of the exchange name at the start of `head` (empty for the default exchange).
    exchange_len: u8,
    /// Length of the routing key after it; the properties are the rest of `head`.
    routing_key_len: u8,
    /// `priority` property (0 when absent), for priority queues.
    pub priority: u8,
    /// `delivery_mode = 2`: written to disk when it goes to a durable queue.
    pub persistent: bool,
}

/// A per-message TTL in ms, or none. 8 bytes where `Option<u64>` takes 16: every queued message
/// holds one `Message`, and 8 bytes less keeps `Arc<Message>` at 96 bytes instead of 104 (it
/// first kept it in mimalloc's 160-byte size class instead of the 192-byte one; publish-only
/// throughput is bound by touching fresh memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgTtl(u64);

impl MsgTtl {
    /// No TTL.
    pub const NONE: MsgTtl = MsgTtl(u64::MAX);
    /// A TTL of `v` ms (`u64::MAX - 1` at most: about 584 million years).
    pub fn ms(v: u64) -> MsgTtl {
        MsgTtl(v.min(u64::MAX - 1))
    }
    /// The TTL, if any.
    #[inline]
    pub fn get(self) -> Option<u64> {
        (self.0 != u64::MAX).then_some(self.0)
    }
}

/// Property flag bits as seen in the first flags byte.
const EXPIRATION_FLAG_HIGH_BYTE: u8 = 0x01;
const PRIORITY_FLAG_HIGH_BYTE: u8 = 0x08;
const DELIVERY_MODE_FLAG_HIGH_BYTE: u8 = 0x10;
const CONTENT_TYPE_FLAG_HIGH_BYTE: u8 = 0x80;
const CONTENT_ENCODING_FLAG_HIGH_BYTE: u8 = 0x40;
const HEADERS_FLAG_HIGH_BYTE: u8 = 0x20;

/// Whether raw properties say `delivery_mode = 2`, read in place: skip content-type,
/// content-encoding and the headers table by their lengths, without decoding anything.
pub fn is_persistent(p: &[u8]) -> bool {
    let Some(&flags) = p.first() else { return false };
    if flags & DELIVERY_MODE_FLAG_HIGH_BYTE == 0 {
        return false;
    }
    let mut at = 2;
    for bit in [CONTENT_TYPE_FLAG_HIGH_BYTE, CONTENT_ENCODING_FLAG_HIGH_BYTE] {
        if flags & bit != 0 {
            let Some(&n) = p.get(at) else { return false };
            at += 1 + n as usize;
        }
    }
    if flags & HEADERS_FLAG_HIGH_BYTE != 0 {
        let Some(n) = p.get(at..at + 4) else { return false };
        at += 4 + u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
    }
    p.get(at) == Some(&2)
}

impl Message {
    /// A copy with header `key` set to `value` (properties re-encoded; the body is shared).
    pub fn with_header(&self, key: &'static str, value: warren_protocol::FieldValue) -> Message {
        let mut p = warren_protocol::BasicProperties::decode(self.properties()).unwrap_or_default();
        p.headers.get_or_insert_with(Default::default).insert(key, value);
        self.with_properties(&p.to_bytes())
    }

    /// A copy with other raw `properties` (TTL, priority and persistence kept; the body is shared).
    pub fn with_properties(&self, properties: &[u8]) -> Message {
        Message::from_parts(
            self.exchange_bytes(),
            self.routing_key_bytes(),
            properties,
            self.body.clone(),
            (self.ttl_ms, self.priority, self.persistent),
        )
    }

    /// Build a message, decoding the properties only if they carry an expiration or a priority.
    /// An expiration that is not a non-negative integer is refused with RabbitMQ's reason text.
    pub fn new(exchange: ShortStr, routing_key: ShortStr, properties: Bytes, body: Bytes) -> Result<Message, String> {
        let (mut ttl_ms, mut priority) = (MsgTtl::NONE, 0);
        if properties.first().is_some_and(|f| f & (EXPIRATION_FLAG_HIGH_BYTE | PRIORITY_FLAG_HIGH_BYTE) != 0) {
            if let Ok(p) = warren_protocol::BasicProperties::decode(properties.clone()) {
                if let Some(e) = p.expiration {
                    let text = e.to_str_lossy().into_owned();
                    ttl_ms = MsgTtl::ms(match text.parse::<i64>() {
                        Ok(v) if v >= 0 => v as u64,
                        Ok(v) => return Err(format!("invalid expiration '{text}': {{value_negative,{v}}}")),
                        Err(_) => {
                            return Err(format!("invalid expiration '{text}': {{error,{{not_an_integer,\"{text}\"}}}}"))
                        }
                    });
                }
                priority = p.priority.unwrap_or(0);
            }
        }
        let persistent = is_persistent(&properties);
        Ok(Message::from_parts(
            exchange.as_bytes(),
            routing_key.as_bytes(),
            &properties,
            body,
            (ttl_ms, priority, persistent),
        ))
    }

    /// A message from its parts as they are, nothing checked: `(ttl_ms, priority, persistent)`
    /// are taken as given. Exchange and routing key longer than 255 bytes are cut (they come from
    /// short strings). The head is copied (see [`compact`]); the body too when it is small.
    pub fn from_parts(
        exchange: &[u8],
        routing_key: &[u8],
        properties: &[u8],
        body: Bytes,
        (ttl_ms, priority, persistent): (MsgTtl, u8, bool),
    ) -> Message {
        let exchange = &exchange[..exchange.len().min(u8::MAX as usize)];
        let routing_key = &routing_key[..routing_key.len().min(u8::MAX as usize)];
        let (head, body) = compact([exchange, routing_key, properties], body);
        Message {
            head,
            body,
            ttl_ms,
            exchange_len: exchange.len() as u8,
            routing_key_len: routing_key.len() as u8,
            priority,
            persistent,
        }
    }

    /// Exchange the message was published to (empty for the default exchange).
    #[inline]
    pub fn exchange_bytes(&self) -> &[u8] {
        &self.head[..self.exchange_len as usize]
    }
    /// Routing key given at publish.
    #[inline]
    pub fn routing_key_bytes(&self) -> &[u8] {
        let from = self.exchange_len as usize;
        &self.head[from..from + self.routing_key_len as usize]
    }
    /// Raw content-header property bytes (flags + values), as the publisher sent them.
    #[inline]
    pub fn properties_bytes(&self) -> &[u8] {
        &self.head[self.exchange_len as usize + self.routing_key_len as usize..]
    }
    /// [`Message::exchange_bytes`] as a short string (shares the buffer).
    pub fn exchange(&self) -> ShortStr {
        ShortStr::from_bytes(self.head.slice(..self.exchange_len as usize)).unwrap_or_default()
    }
    /// [`Message::routing_key_bytes`] as a short string (shares the buffer).
    pub fn routing_key(&self) -> ShortStr {
        let from = self.exchange_len as usize;
        ShortStr::from_bytes(self.head.slice(from..from + self.routing_key_len as usize)).unwrap_or_default()
    }
    /// Bytes [`Message::encode_parts`] writes.
    pub fn encoded_parts_len(&self) -> usize {
        1 + self.exchange_len as usize
            + 1
            + self.routing_key_len as usize
            + 4
            + self.properties_bytes().len()
            + self.body.len()
    }
    /// Append exchange and routing key (each after its length byte), the properties (after their
    /// length, u32 little-endian) and the body: how the message store and streams record it.
    pub fn encode_parts(&self, buf: &mut Vec<u8>) {
        buf.push(self.exchange_len);
        buf.extend_from_slice(self.exchange_bytes());
        buf.push(self.routing_key_len);
        buf.extend_from_slice(self.routing_key_bytes());
        buf.extend_from_slice(&(self.properties_bytes().len() as u32).to_le_bytes());
        buf.extend_from_slice(self.properties_bytes());
        buf.extend_from_slice(&self.body);
    }
    /// [`Message::properties_bytes`] as `Bytes` (shares the buffer).
    pub fn properties(&self) -> Bytes {
        self.head.slice(self.exchange_len as usize + self.routing_key_len as usize..)
    }
}

/// A body this short, with its message's head, is copied next to the head (see [`compact`]).
/// Measured: a queue of 1 M 16-byte messages took 313 bytes of RSS per message, 274 with the
/// copy (190 with the one-buffer head as well), and the throughput figures did not move (the
/// copy is one short `memcpy` per part).
const COMPACT_MAX: usize = 256;
/// The arena grows in chunks of this size (one allocation per ~1,600 small messages).
const ARENA_CHUNK: usize = 64 * 1024;
/// A head longer than this (large header tables) gets its own allocation, not arena space.
const ARENA_HEAD_MAX: usize = 4 * 1024;

thread_local! {
    /// Where this thread copies messages' heads (and small bodies): chunks of [`ARENA_CHUNK`],
    /// each freed once no message in it is left.
    static ARENA: std::cell::RefCell<bytes::BytesMut> = std::cell::RefCell::new(bytes::BytesMut::new());
}

/// Copies a message's head (exchange, routing key, properties) next to each other into this
/// thread's arena, and its body after them when all of it is at most [`COMPACT_MAX`]: a queued
/// message then does not keep the publisher's read buffer alive (its frames' headers and padding,
/// about 80 bytes for a 16-byte body, and the buffer cannot be reused for the next reads). A
/// larger body keeps its slice: for it the frame overhead is small and a copy costs.
fn compact(head: [&[u8]; 3], body: Bytes) -> (Bytes, Bytes) {
    let head_len: usize = head.iter().map(|p| p.len()).sum();
    let small = head_len + body.len() <= COMPACT_MAX;
    if head_len > ARENA_HEAD_MAX {
        return (Bytes::from(head.concat()), body);
    }
    let total = head_len + if small { body.len() } else { 0 };
    // Where the arena cannot be had (a thread being torn down), the head gets its own buffer.
    let copied = ARENA.try_with(|cell| {
        let mut a = cell.try_borrow_mut().ok()?;
        if a.capacity() - a.len() < total {
            *a = bytes::BytesMut::with_capacity(ARENA_CHUNK.max(total));
        }
        head.iter().for_each(|p| a.extend_from_slice(p));
        let h = a.split().freeze();
        if small && !body.is_empty() {
            a.extend_from_slice(&body);
            return Some((h, Some(a.split().freeze())));
        }
        Some((h, None))
    });
    match copied {
        Ok(Some((h, copy))) => (h, copy.unwrap_or(body)),
        _ => (Bytes::from(head.concat()), body),
    }
}

/// A message in a queue (ready or delivered-unacked).
#[derive(Debug)]
pub struct QueuedMsg {
    /// The shared message.
    pub msg: std::sync::Arc<Message>,
    /// Position in the queue, assigned at enqueue, increasing; requeued messages keep theirs so they
    /// go back to their original place.
    pub seq: u64,
    /// Set once the message has been delivered (and then requeued).
    pub redelivered: bool,
    /// Priority level (the message's priority, capped by the queue's max).
    pub priority: u8,
    /// Expiry time on `now_ms()`'s clock; 0 = never.
    pub expires_at: u64,
    /// Times delivered so far (quorum queues' delivery limit and x-delivery-count).
    pub deliveries: u32,
    /// `delivery_mode = 2` (kept here too: a paged-out message's `msg` is a placeholder).
    pub persistent: bool,
    /// Its record in the message store, when it has one (a persistent message in a durable queue,
    /// or a message paged out under memory pressure). Dropping it records the message as gone.
    /// Boxed: a store reference is 32 bytes, and most queued messages (transient) have none; inline
    /// it would make every entry 64 bytes instead of 40.
    pub disk: Option<Box<crate::store::DiskRef>>,
}

impl QueuedMsg {
    /// Body size, whether the body is in memory or paged out.
    #[inline]
    pub fn body_len(&self) -> usize {
        match &self.disk {
            Some(d) if d.paged => d.body_len as usize,
            _ => self.msg.body.len(),
        }
    }
    /// Whether the body is on disk only (`msg` is a placeholder until it is read back).
    #[inline]
    pub fn is_paged(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.paged)
    }
}

// The sizes the publish path's memory figures rest on (a queued message is one `Arc<Message>`
// allocation plus one entry in its queue's chunk): checked at compile time so a new field that
// pushes either into a larger allocation class is a deliberate choice.
const _: () = assert!(std::mem::size_of::<Message>() <= 80);
const _: () = assert!(std::mem::size_of::<QueuedMsg>() <= 40);

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts cut from one buffer, as the reader cuts them from the frames it read.
    fn parts(buf: &Bytes, body: std::ops::Range<usize>) -> (ShortStr, ShortStr, Bytes, Bytes) {
        let ex = ShortStr::from_bytes(buf.slice(0..3)).expect("short");
        let key = ShortStr::from_bytes(buf.slice(3..8)).expect("short");
        (ex, key, buf.slice(8..10), buf.slice(body))
    }

    fn inside(part: &[u8], buf: &Bytes) -> bool {
        let (lo, p) = (buf.as_ptr() as usize, part.as_ptr() as usize);
        (lo..lo + buf.len()).contains(&p)
    }

    #[test]
    fn small_messages_are_copied_out_of_the_read_buffer_and_large_bodies_are_not() {
        let buf = Bytes::from((0..4096u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let (ex, key, props, body) = parts(&buf, 10..26);
        let m = Message::new(ex.clone(), key.clone(), props.clone(), body.clone()).expect("message");
        assert_eq!(
            (m.exchange(), m.routing_key(), m.properties(), &m.body),
            (ex.clone(), key.clone(), props.clone(), &body)
        );
        for part in [m.exchange_bytes(), m.routing_key_bytes(), m.properties_bytes(), &m.body] {
            assert!(!inside(part, &buf), "a small message's part still points into the read buffer");
        }
        let (ex, key, props, body) = parts(&buf, 10..10 + COMPACT_MAX);
        let m = Message::new(ex.clone(), key.clone(), props.clone(), body.clone()).expect("message");
        assert_eq!((m.exchange(), m.routing_key(), m.properties(), &m.body), (ex, key, props, &body));
        assert!(!inside(m.properties_bytes(), &buf), "the head still points into the read buffer");
        assert!(inside(&m.body, &buf), "a large body was copied");
    }

    #[test]
    fn the_head_keeps_its_parts_apart() {
        let m = Message::new("".into(), "k".into(), Bytes::from_static(&[0, 0]), Bytes::new()).expect("message");
        assert_eq!(
            (m.exchange_bytes(), m.routing_key_bytes(), m.properties_bytes()),
            (&b""[..], &b"k"[..], &[0u8, 0][..])
        );
        let big = Bytes::from(vec![7u8; 2 * ARENA_HEAD_MAX]);
        let m = Message::new("x".into(), "".into(), big.clone(), Bytes::from_static(b"b")).expect("message");
        assert_eq!(
            (m.exchange_bytes(), m.routing_key_bytes(), m.properties(), &m.body[..]),
            (&b"x"[..], &b""[..], big, &b"b"[..])
        );
        let copy = m.with_properties(&[0, 0]);
        assert_eq!(
            (copy.exchange_bytes(), copy.properties_bytes(), &copy.body[..]),
            (&b"x"[..], &[0u8, 0][..], &b"b"[..])
        );
    }
}
