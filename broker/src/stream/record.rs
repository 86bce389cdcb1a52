//! A stream segment's on-disk records: encoding (in the appending task, into the store's batch)
//! and decoding (recovery, and consumers reading what is no longer held in memory).
//!
//! A record (integers little-endian):
//! ```text
//! u32 length of what follows the 8-byte prefix   u32 CRC-32 of those bytes
//! u64 offset   u64 timestamp (Unix ms)   u8 kind
//! kind 0 (AMQP 0-9-1 message): u8 len + filter value, u8 len + exchange, u8 len + routing key,
//!                              u32 len + raw properties, body (the rest)
//! kind 1 (AMQP 1.0 message):   u8 len + filter value, the encoded message (the rest)
//! kind 2 (tracking):           u8 what (0 consumer offset, 1 publisher sequence),
//!                              u8 len + reference, u64 value
//! ```
//! A tracking record carries the offset the next message will get and does not use it.
//!
//! # Invariants
//! - `scan` stops at the first record whose length does not fit or whose CRC does not match: a
//!   torn tail is never served and recovery cuts it.
//! - Decoding never copies a body: messages are slices of the buffer read from disk.
use crate::message::Message;
use bytes::Bytes;
use warren_protocol::ShortStr;

/// Record kinds.
pub const KIND_091: u8 = 0;
pub const KIND_10: u8 = 1;
pub const KIND_TRACKING: u8 = 2;
/// Tracking record: a consumer's stored offset.
pub const TRACK_OFFSET: u8 = 0;
/// Tracking record: a named publisher's last publishing id.
pub const TRACK_PUBLISHER: u8 = 1;
/// Bytes before the kind-specific part: prefix (8) + offset + timestamp + kind.
const FIXED: usize = 8 + 8 + 8 + 1;
/// Records larger than this are treated as corruption.
const MAX_RECORD: usize = 600 * 1024 * 1024;

/// A stream message as it is kept in memory.
#[derive(Clone, Debug)]
pub enum Payload {
    /// Published through AMQP 0-9-1 (its properties carry the `x-stream-offset` header).
    Amqp091(Message),
    /// Published through the stream protocol: an AMQP 1.0 encoded message.
    Amqp10(Bytes),
}

impl Payload {
    /// Body bytes (what retention and memory accounting count).
    pub fn len(&self) -> usize {
        match self {
            Payload::Amqp091(m) => m.body().len() + m.properties_bytes().len(),
            Payload::Amqp10(b) => b.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One entry of a stream: a message with its offset, or a tracking record.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its offset (for tracking records: the offset of the next message).
    pub offset: u64,
    /// When it was appended (Unix ms).
    pub ts: u64,
    /// The message.
    pub payload: Payload,
    /// `x-stream-filter-value` (empty: none).
    pub filter: Bytes,
}

/// A decoded record.
pub enum Record {
    Message(Entry),
    /// `(what, reference, value)`.
    Tracking(u8, Bytes, u64),
}

/// Bytes the record of `e` takes.
pub fn message_len(e: &Entry) -> usize {
    FIXED
        + 1
        + e.filter.len()
        + match &e.payload {
            Payload::Amqp091(m) => m.encoded_parts_len(),
            Payload::Amqp10(b) => b.len(),
        }
}

fn begin(buf: &mut Vec<u8>, len: usize, offset: u64, ts: u64, kind: u8) -> usize {
    let start = buf.len();
    buf.reserve(len);
    buf.extend_from_slice(&((len - 8) as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&ts.to_le_bytes());
    buf.push(kind);
    start
}

fn seal(buf: &mut [u8], start: usize) {
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Append the record of message entry `e`.
pub fn encode_message(buf: &mut Vec<u8>, e: &Entry) {
    let kind = match e.payload {
        Payload::Amqp091(_) => KIND_091,
        Payload::Amqp10(_) => KIND_10,
    };
    let start = begin(buf, message_len(e), e.offset, e.ts, kind);
    buf.push(e.filter.len() as u8);
    buf.extend_from_slice(&e.filter);
    match &e.payload {
        Payload::Amqp091(m) => {
            m.encode_parts(buf);
        }
        Payload::Amqp10(b) => buf.extend_from_slice(b),
    }
    seal(buf, start);
}

/// Append a tracking record.
pub fn encode_tracking(buf: &mut Vec<u8>, next_offset: u64, ts: u64, what: u8, reference: &[u8], value: u64) {
    let reference = &reference[..reference.len().min(255)];
    let len = FIXED + 1 + 1 + reference.len() + 8;
    let start = begin(buf, len, next_offset, ts, KIND_TRACKING);
    buf.push(what);
    buf.push(reference.len() as u8);
    buf.extend_from_slice(reference);
    buf.extend_from_slice(&value.to_le_bytes());
    seal(buf, start);
}

/// Length (prefix included) of the valid record at the start of `data`, if one is whole there.
pub fn whole_record(data: &[u8]) -> Option<usize> {
    let n = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    if n > MAX_RECORD || 8 + n > data.len() {
        return None;
    }
    Some(8 + n)
}

/// The length a record starting with `prefix` (at least 4 bytes) declares, prefix included.
pub fn declared_len(prefix: &[u8]) -> Option<usize> {
    let n = u32::from_le_bytes(prefix.get(..4)?.try_into().ok()?) as usize;
    (n <= MAX_RECORD).then_some(8 + n)
}

/// Decode one whole record (`r` is exactly its bytes); None if corrupt.
pub fn decode(r: Bytes) -> Option<Record> {
    if r.len() < FIXED {
        return None;
    }
    let crc = u32::from_le_bytes(r[4..8].try_into().ok()?);
    if crc32fast::hash(&r[8..]) != crc {
        return None;
    }
    let offset = u64::from_le_bytes(r[8..16].try_into().ok()?);
    let ts = u64::from_le_bytes(r[16..24].try_into().ok()?);
    let kind = r[24];
    let mut at = FIXED;
    let short = |at: &mut usize| -> Option<Bytes> {
        let n = *r.get(*at)? as usize;
        let s = r.get(*at + 1..*at + 1 + n).map(|_| r.slice(*at + 1..*at + 1 + n))?;
        *at += 1 + n;
        Some(s)
    };
    match kind {
        KIND_TRACKING => {
            let what = *r.get(at)?;
            at += 1;
            let reference = short(&mut at)?;
            let value = u64::from_le_bytes(r.get(at..at + 8)?.try_into().ok()?);
            Some(Record::Tracking(what, reference, value))
        }
        KIND_091 => {
            let filter = short(&mut at)?;
            let exchange = ShortStr::truncating(short(&mut at)?);
            let routing_key = ShortStr::truncating(short(&mut at)?);
            let pl = u32::from_le_bytes(r.get(at..at + 4)?.try_into().ok()?) as usize;
            at += 4;
            let props = r.get(at..at.checked_add(pl)?).map(|_| r.slice(at..at + pl))?;
            at += pl;
            let body = r.slice(at..);
            let m = Message::new(exchange, routing_key, props, body).ok()?;
            Some(Record::Message(Entry { offset, ts, payload: Payload::Amqp091(m), filter }))
        }
        KIND_10 => {
            let filter = short(&mut at)?;
            Some(Record::Message(Entry { offset, ts, payload: Payload::Amqp10(r.slice(at..)), filter }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Message::new("x".into(), "k".into(), Bytes::from_static(&[0, 0]), Bytes::from_static(b"body")).unwrap();
        let e = Entry { offset: 7, ts: 99, payload: Payload::Amqp091(m), filter: Bytes::from_static(b"f") };
        let mut buf = Vec::new();
        encode_message(&mut buf, &e);
        encode_tracking(&mut buf, 8, 100, TRACK_OFFSET, b"ref", 5);
        let all = Bytes::from(buf);
        let n = whole_record(&all).unwrap();
        match decode(all.slice(..n)) {
            Some(Record::Message(d)) => {
                assert_eq!((d.offset, d.ts, &d.filter[..]), (7, 99, &b"f"[..]));
                let Payload::Amqp091(m) = d.payload else { panic!() };
                assert_eq!(m.body(), b"body");
                assert_eq!(m.routing_key_bytes(), b"k");
            }
            _ => panic!("not a message"),
        }
        let rest = all.slice(n..);
        match decode(rest.clone()) {
            Some(Record::Tracking(w, r, v)) => assert_eq!((w, &r[..], v), (TRACK_OFFSET, &b"ref"[..], 5)),
            _ => panic!("not tracking"),
        }
        let mut bad = rest.to_vec();
        bad[30] ^= 1;
        assert!(decode(Bytes::from(bad)).is_none());
    }
}
