//! A published message as the broker holds it: routing info, raw properties and body.
//!
//! # Invariants
//! - One [`Message`] (a thin shared pointer) per publish, shared by every queue the message was
//!   routed to; cloning it is one reference count increment.
//! - A message is one allocation: the reference count, its [`Meta`], then its bytes: exchange,
//!   routing key and properties one after the other (copied at build), and the body after them
//!   when all of it is at most [`INLINE_MAX`] bytes. A larger body is not copied: it stays the
//!   `Bytes` slice of the publisher's read buffer (or one concatenation of several body frames)
//!   until it is written to a consumer's socket buffer.
//! - `properties` are the publisher's property bytes (flags included), written back unchanged.
use crate::lent::Lent;
use bytes::Bytes;
use triomphe::ThinArc;
use warren_protocol::ShortStr;

/// A message: one shared allocation holding its [`Meta`] and its bytes (see the module docs).
/// 8 bytes, cloned by a reference count increment.
#[derive(Clone)]
pub struct Message(ThinArc<Meta, u8>);

/// What a message holds besides its bytes (exchange | routing key | properties | small body).
struct Meta {
    /// Per-message TTL from the `expiration` property, ms (parsed once at publish).
    ttl_ms: MsgTtl,
    /// A body longer than [`INLINE_MAX`] allows inline: shared, not copied. Boxed so that small
    /// messages, whose body is in the bytes, pay 8 bytes for it here and not 32.
    large_body: Option<Box<Bytes>>,
    /// Length of the properties, after the exchange name and the routing key.
    properties_len: u32,
    /// Length of the exchange name at the start of the bytes (empty for the default exchange).
    exchange_len: u8,
    /// Length of the routing key after it.
    routing_key_len: u8,
    /// `priority` property (0 when absent), for priority queues.
    priority: u8,
    /// `delivery_mode = 2`: written to disk when it goes to a durable queue.
    persistent: bool,
}

impl Meta {
    /// Length of exchange, routing key and properties: where a small body starts in the bytes.
    #[inline]
    fn head_len(&self) -> usize {
        self.exchange_len as usize + self.routing_key_len as usize + self.properties_len as usize
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("exchange", &String::from_utf8_lossy(self.exchange_bytes()))
            .field("routing_key", &String::from_utf8_lossy(self.routing_key_bytes()))
            .field("properties_len", &self.meta().properties_len)
            .field("body_len", &self.body().len())
            .field("ttl_ms", &self.meta().ttl_ms)
            .field("priority", &self.meta().priority)
            .field("persistent", &self.meta().persistent)
            .finish()
    }
}

/// A per-message TTL in ms, or none. 8 bytes where `Option<u64>` takes 16 (every message holds
/// one in its [`Meta`]).
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

    /// A copy with other raw `properties` (TTL, priority and persistence kept; a large body is
    /// shared, a small one copied with the rest).
    pub fn with_properties(&self, properties: &[u8]) -> Message {
        let m = self.meta();
        self.rebuilt(self.exchange_bytes(), self.routing_key_bytes(), properties, (m.ttl_ms, m.priority, m.persistent))
    }

    /// This message's body under another head, `(ttl_ms, priority, persistent)` as given (dead
    /// letters, stream stamps): a large body is shared, a small one copied straight in.
    pub fn rebuilt(
        &self,
        exchange: &[u8],
        routing_key: &[u8],
        properties: &[u8],
        flags: (MsgTtl, u8, bool),
    ) -> Message {
        let large = self.large_body();
        let body = if large.is_some() { &[][..] } else { self.body() };
        Message::build([exchange, routing_key, properties], body, large.cloned(), flags)
    }

    /// Build a message, decoding the properties only if they carry an expiration or a priority.
    /// An expiration that is not a non-negative integer is refused with RabbitMQ's reason text.
    pub fn new(exchange: ShortStr, routing_key: ShortStr, properties: Bytes, body: Bytes) -> Result<Message, String> {
        Message::lent(exchange.as_bytes(), routing_key.as_bytes(), Lent::all(&properties), Lent::all(&body))
    }

    /// [`Message::new`] from parts the caller lends: a small message copies them, a large body
    /// is shared (a new handle on the caller's buffer), not copied.
    pub fn lent(exchange: &[u8], routing_key: &[u8], properties: Lent<'_>, body: Lent<'_>) -> Result<Message, String> {
        let (mut ttl_ms, mut priority) = (MsgTtl::NONE, 0);
        if properties.first().is_some_and(|f| f & (EXPIRATION_FLAG_HIGH_BYTE | PRIORITY_FLAG_HIGH_BYTE) != 0) {
            if let Ok(p) = warren_protocol::BasicProperties::decode(properties.share()) {
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
        Ok(Message::from_parts(exchange, routing_key, &properties, body, (ttl_ms, priority, persistent)))
    }

    /// A message from its parts as they are, nothing checked: `(ttl_ms, priority, persistent)`
    /// are taken as given. Exchange and routing key longer than 255 bytes are cut (they come from
    /// short strings). The head is copied; the body too when the whole is at most [`INLINE_MAX`].
    pub fn from_parts(
        exchange: &[u8],
        routing_key: &[u8],
        properties: &[u8],
        body: Lent<'_>,
        flags: (MsgTtl, u8, bool),
    ) -> Message {
        let inline = exchange.len() + routing_key.len() + properties.len() + body.len() <= INLINE_MAX;
        if inline {
            Message::build([exchange, routing_key, properties], &body, None, flags)
        } else {
            Message::build([exchange, routing_key, properties], &[], Some(body.share()), flags)
        }
    }

    /// The one allocation: `head` parts then `body` (empty when `large` is given) copied after
    /// the [`Meta`]. Goes through a stack buffer: the allocation takes one slice to copy.
    fn build(
        head: [&[u8]; 3],
        body: &[u8],
        large: Option<Bytes>,
        (ttl_ms, priority, persistent): (MsgTtl, u8, bool),
    ) -> Message {
        let [exchange, routing_key, properties] = head;
        let exchange = &exchange[..exchange.len().min(u8::MAX as usize)];
        let routing_key = &routing_key[..routing_key.len().min(u8::MAX as usize)];
        let parts = [exchange, routing_key, properties, body];
        let meta = Meta {
            ttl_ms,
            large_body: large.map(Box::new),
            properties_len: properties.len() as u32,
            exchange_len: exchange.len() as u8,
            routing_key_len: routing_key.len() as u8,
            priority,
            persistent,
        };
        let total = exchange.len() + routing_key.len() + properties.len() + body.len();
        if total <= INLINE_MAX {
            let mut buf = [0u8; INLINE_MAX];
            let mut at = 0;
            for p in parts {
                let end = at + p.len();
                buf[at..end].copy_from_slice(p);
                at = end;
            }
            Message(ThinArc::from_header_and_slice(meta, &buf[..total]))
        } else {
            Message(ThinArc::from_header_and_slice(meta, &parts.concat()))
        }
    }

    /// The allocation's contents: `.header.header` is the [`Meta`], `.slice` the bytes. Each
    /// accessor dereferences once (a thin pointer's dereference reads the length first).
    #[inline]
    fn inner(&self) -> &triomphe::HeaderSlice<triomphe::HeaderWithLength<Meta>, [u8]> {
        &self.0
    }
    #[inline]
    fn meta(&self) -> &Meta {
        &self.inner().header.header
    }
    /// Bytes of exchange, routing key and properties: what the message holds in memory besides
    /// its body and a fixed overhead (the memory alarm counts them).
    #[inline]
    pub fn head_len(&self) -> usize {
        self.meta().head_len()
    }
    /// Head and body bytes: what the memory alarm counts of a message held in memory, besides a
    /// fixed overhead.
    #[inline]
    pub fn mem_size(&self) -> usize {
        self.head_len() + self.body().len()
    }

    /// Per-message TTL from the `expiration` property.
    #[inline]
    pub fn ttl_ms(&self) -> MsgTtl {
        self.meta().ttl_ms
    }
    /// `priority` property (0 when absent).
    #[inline]
    pub fn priority(&self) -> u8 {
        self.meta().priority
    }
    /// `delivery_mode = 2`.
    #[inline]
    pub fn persistent(&self) -> bool {
        self.meta().persistent
    }
    /// The whole body.
    #[inline]
    pub fn body(&self) -> &[u8] {
        let i = self.inner();
        let m = &i.header.header;
        match &m.large_body {
            Some(b) => b,
            None => &i.slice[m.head_len()..],
        }
    }
    /// A large body, shared with the message (none for a small one: its body is in
    /// [`Message::body`] only): what is written to sockets without a copy.
    #[inline]
    pub fn large_body(&self) -> Option<&Bytes> {
        self.meta().large_body.as_deref()
    }
    /// The body as `Bytes`: shared when large, a copy when small (cold paths only).
    pub fn body_owned(&self) -> Bytes {
        match self.large_body() {
            Some(b) => b.clone(),
            None => Bytes::copy_from_slice(self.body()),
        }
    }

    /// Exchange the message was published to (empty for the default exchange).
    #[inline]
    pub fn exchange_bytes(&self) -> &[u8] {
        let i = self.inner();
        &i.slice[..i.header.header.exchange_len as usize]
    }
    /// Routing key given at publish.
    #[inline]
    pub fn routing_key_bytes(&self) -> &[u8] {
        let i = self.inner();
        let from = i.header.header.exchange_len as usize;
        &i.slice[from..from + i.header.header.routing_key_len as usize]
    }
    /// Raw content-header property bytes (flags + values), as the publisher sent them.
    #[inline]
    pub fn properties_bytes(&self) -> &[u8] {
        let i = self.inner();
        let m = &i.header.header;
        let from = m.exchange_len as usize + m.routing_key_len as usize;
        &i.slice[from..from + m.properties_len as usize]
    }
    /// [`Message::exchange_bytes`] as a short string (a copy).
    pub fn exchange(&self) -> ShortStr {
        ShortStr::from_bytes(Bytes::copy_from_slice(self.exchange_bytes())).unwrap_or_default()
    }
    /// [`Message::routing_key_bytes`] as a short string (a copy).
    pub fn routing_key(&self) -> ShortStr {
        ShortStr::from_bytes(Bytes::copy_from_slice(self.routing_key_bytes())).unwrap_or_default()
    }
    /// [`Message::properties_bytes`] as `Bytes` (a copy).
    pub fn properties(&self) -> Bytes {
        Bytes::copy_from_slice(self.properties_bytes())
    }
    /// Bytes [`Message::encode_parts`] writes.
    pub fn encoded_parts_len(&self) -> usize {
        1 + self.exchange_bytes().len()
            + 1
            + self.routing_key_bytes().len()
            + 4
            + self.properties_bytes().len()
            + self.body().len()
    }
    /// Append exchange and routing key (each after its length byte), the properties (after their
    /// length, u32 little-endian) and the body: how the message store and streams record it.
    pub fn encode_parts(&self, buf: &mut Vec<u8>) {
        let m = self.meta();
        buf.push(m.exchange_len);
        buf.extend_from_slice(self.exchange_bytes());
        buf.push(m.routing_key_len);
        buf.extend_from_slice(self.routing_key_bytes());
        buf.extend_from_slice(&m.properties_len.to_le_bytes());
        buf.extend_from_slice(self.properties_bytes());
        buf.extend_from_slice(self.body());
    }
}

/// A message this short in all (exchange, routing key, properties and body) is one allocation
/// with its body copied in; a longer one keeps its body where it was read. Measured on a queue
/// of 1 M 16-byte messages (RSS per message): 313 bytes with the parts slicing the read buffer,
/// 274 with a copy into a per-thread arena, 190 with the head in one arena buffer, 140 with this
/// single allocation (BENCHMARKS.md); throughput did not drop (the copy is one short `memcpy`).
const INLINE_MAX: usize = 256;

/// A message in a queue (ready or delivered-unacked).
#[derive(Debug)]
pub struct QueuedMsg {
    /// The shared message.
    pub msg: Message,
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
            _ => self.msg.body().len(),
        }
    }
    /// Whether the body is on disk only (`msg` is a placeholder until it is read back).
    #[inline]
    pub fn is_paged(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.paged)
    }
    /// Bytes of its message held in memory (head and body; 0 once paged out), what the memory
    /// alarm counts besides a fixed overhead per message.
    #[inline]
    pub fn mem_size(&self) -> usize {
        if self.is_paged() {
            0
        } else {
            self.msg.mem_size()
        }
    }
}

// The sizes the publish path's memory figures rest on (a queued message is one allocation of
// its `Meta`, reference count, length and bytes, plus one entry in its queue's chunk): checked at
// compile time so a new field that grows either is a deliberate choice.
const _: () = assert!(std::mem::size_of::<Message>() == 8);
const _: () = assert!(std::mem::size_of::<Meta>() <= 24);
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
            (m.exchange(), m.routing_key(), m.properties(), m.body()),
            (ex.clone(), key.clone(), props.clone(), &body[..])
        );
        assert!(m.large_body().is_none(), "a small body is kept apart");
        for part in [m.exchange_bytes(), m.routing_key_bytes(), m.properties_bytes(), m.body()] {
            assert!(!inside(part, &buf), "a small message's part still points into the read buffer");
        }
        let (ex, key, props, body) = parts(&buf, 10..10 + INLINE_MAX);
        let m = Message::new(ex.clone(), key.clone(), props.clone(), body.clone()).expect("message");
        assert_eq!((m.exchange(), m.routing_key(), m.properties(), m.body()), (ex, key, props, &body[..]));
        assert!(!inside(m.properties_bytes(), &buf), "the head still points into the read buffer");
        assert!(inside(m.body(), &buf), "a large body was copied");
        assert_eq!(m.large_body(), Some(&body));
    }

    #[test]
    fn the_head_keeps_its_parts_apart() {
        let m = Message::new("".into(), "k".into(), Bytes::from_static(&[0, 0]), Bytes::new()).expect("message");
        assert_eq!(
            (m.exchange_bytes(), m.routing_key_bytes(), m.properties_bytes(), m.body()),
            (&b""[..], &b"k"[..], &[0u8, 0][..], &b""[..])
        );
        let big = Bytes::from(vec![7u8; 4 * INLINE_MAX]);
        let m = Message::new("x".into(), "".into(), big.clone(), Bytes::from_static(b"b")).expect("message");
        assert_eq!(
            (m.exchange_bytes(), m.routing_key_bytes(), m.properties(), m.body()),
            (&b"x"[..], &b""[..], big, &b"b"[..])
        );
        let copy = m.with_properties(&[0, 0]);
        assert_eq!(
            (copy.exchange_bytes(), copy.properties_bytes(), copy.body()),
            (&b"x"[..], &[0u8, 0][..], &b"b"[..])
        );
        // Under a head that takes it past the inline size, a small body is still its own.
        let small = Message::new("".into(), "k".into(), Bytes::from_static(&[0, 0]), Bytes::from_static(b"b"));
        let dead = small.expect("message").rebuilt(b"dlx", &[b'k'; 200], &[0u8; 300], (MsgTtl::NONE, 3, true));
        assert_eq!(
            (dead.exchange_bytes(), dead.routing_key_bytes(), dead.properties_bytes().len(), dead.body()),
            (&b"dlx"[..], &[b'k'; 200][..], 300, &b"b"[..])
        );
        assert_eq!(
            (dead.ttl_ms(), dead.priority(), dead.persistent(), dead.large_body()),
            (MsgTtl::NONE, 3, true, None)
        );
        let large = Bytes::from(vec![9u8; 2 * INLINE_MAX]);
        let m = Message::new("".into(), "k".into(), Bytes::from_static(&[0, 0]), large.clone()).expect("message");
        let dead = m.rebuilt(b"", b"", &[0, 0], (MsgTtl::NONE, 0, false));
        assert_eq!(dead.large_body().map(|b| b.as_ptr()), Some(large.as_ptr()), "a large body is shared");
        let mut rec = Vec::new();
        copy.encode_parts(&mut rec);
        assert_eq!(rec, [&[1u8, b'x', 0, 2, 0, 0, 0, 0, 0][..], b"b"].concat());
        assert_eq!(rec.len(), copy.encoded_parts_len());
    }
}
