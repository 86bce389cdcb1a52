//! Content headers: `class:u16 weight:u16 body_size:u64 flags:u16... properties`.
//!
//! Warren stores the property bytes (flags included) exactly as the publisher sent them and writes
//! them back unchanged on delivery, as RabbitMQ does. [`BasicProperties`] decodes them only when a
//! feature needs a property (expiration, priority, delivery-mode, headers...).
//!
//! # Invariants
//! - `ContentHeader::decode` never panics and never copies the property bytes.
//! - `BasicProperties::decode(encode(p)) == p`.
use crate::codec::{put_shortstr, Reader};
use crate::error::MethodError;
use crate::table::FieldTable;
use crate::types::ShortStr;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A decoded content header with raw properties.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    /// Property flags and property values, raw.
    pub properties: Bytes,
}

/// A content header read in place ([`ContentHeader::decode_ref`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContentHeaderRef<'a> {
    pub class_id: u16,
    pub body_size: u64,
    /// Property flags and property values, raw.
    pub properties: &'a [u8],
}

impl ContentHeader {
    pub fn decode(mut payload: Bytes) -> Result<ContentHeader, MethodError> {
        let (class_id, body_size) = Self::fixed_fields(&payload)?;
        // The payload itself becomes the properties (no new reference to the read buffer).
        payload.advance(12);
        Ok(ContentHeader { class_id, body_size, properties: payload })
    }

    /// Read a content header frame payload in place: the properties are borrowed from
    /// `payload`. Same fields as [`ContentHeader::decode`].
    pub fn decode_ref(payload: &[u8]) -> Result<ContentHeaderRef<'_>, MethodError> {
        let (class_id, body_size) = Self::fixed_fields(payload)?;
        Ok(ContentHeaderRef { class_id, body_size, properties: &payload[12..] })
    }

    /// The same header, borrowed.
    pub fn as_ref(&self) -> ContentHeaderRef<'_> {
        ContentHeaderRef { class_id: self.class_id, body_size: self.body_size, properties: &self.properties }
    }

    /// Class and body size of a payload at least 14 bytes long (class, weight, size, flags).
    fn fixed_fields(p: &[u8]) -> Result<(u16, u64), MethodError> {
        if p.len() < 14 {
            return Err(MethodError::Truncated);
        }
        let class_id = u16::from_be_bytes([p[0], p[1]]);
        let mut s = [0u8; 8];
        s.copy_from_slice(&p[4..12]);
        Ok((class_id, u64::from_be_bytes(s)))
    }

    /// Encode the header frame payload (class, weight 0, size, raw properties).
    #[inline]
    pub fn encode_payload(out: &mut BytesMut, class_id: u16, body_size: u64, properties: &[u8]) {
        out.put_u16(class_id);
        out.put_u16(0);
        out.put_u64(body_size);
        out.put_slice(properties);
    }
}

/// Property bytes meaning "no properties set".
pub const EMPTY_PROPERTIES: &[u8] = &[0, 0];

const F_CONTENT_TYPE: u16 = 1 << 15;
const F_CONTENT_ENCODING: u16 = 1 << 14;
const F_HEADERS: u16 = 1 << 13;
const F_DELIVERY_MODE: u16 = 1 << 12;
const F_PRIORITY: u16 = 1 << 11;
const F_CORRELATION_ID: u16 = 1 << 10;
const F_REPLY_TO: u16 = 1 << 9;
const F_EXPIRATION: u16 = 1 << 8;
const F_MESSAGE_ID: u16 = 1 << 7;
const F_TIMESTAMP: u16 = 1 << 6;
const F_TYPE: u16 = 1 << 5;
const F_USER_ID: u16 = 1 << 4;
const F_APP_ID: u16 = 1 << 3;
const F_CLUSTER_ID: u16 = 1 << 2;

/// Check raw basic-class property bytes (flags first) without decoding them: every property the
/// flags announce is present and in bounds, the headers table is well formed (every value type
/// known, nesting bounded), and nothing follows the last property. A single bounds-checked walk
/// that allocates nothing: run on every publish, so that a message whose properties a client
/// could not decode is refused at the door instead of stored and delivered.
pub fn validate(raw: &[u8]) -> Result<(), MethodError> {
    let word = |at: usize| raw.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or(MethodError::Truncated);
    let flags = word(0)?;
    let mut at = 2;
    // spec: bit 0 set means another flag word follows (none is defined for basic).
    let mut more = flags & 1 != 0;
    while more {
        more = word(at)? & 1 != 0;
        at += 2;
    }
    let shortstr = |at: usize| raw.get(at).map(|n| at + 1 + *n as usize).ok_or(MethodError::Truncated);
    // In wire order: (flag, what its value is).
    const SHORT: u8 = 0;
    const OCTET: u8 = 1;
    const TABLE: u8 = 2;
    const STAMP: u8 = 3;
    const LAYOUT: [(u16, u8); 14] = [
        (F_CONTENT_TYPE, SHORT),
        (F_CONTENT_ENCODING, SHORT),
        (F_HEADERS, TABLE),
        (F_DELIVERY_MODE, OCTET),
        (F_PRIORITY, OCTET),
        (F_CORRELATION_ID, SHORT),
        (F_REPLY_TO, SHORT),
        (F_EXPIRATION, SHORT),
        (F_MESSAGE_ID, SHORT),
        (F_TIMESTAMP, STAMP),
        (F_TYPE, SHORT),
        (F_USER_ID, SHORT),
        (F_APP_ID, SHORT),
        (F_CLUSTER_ID, SHORT),
    ];
    for (flag, kind) in LAYOUT {
        if flags & flag == 0 {
            continue;
        }
        at = match kind {
            SHORT => shortstr(at)?,
            OCTET => at + 1,
            STAMP => at + 8,
            _ => {
                let len = raw.get(at..at + 4).ok_or(MethodError::Truncated)?;
                let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let end = (at + 4).checked_add(n).filter(|e| *e <= raw.len()).ok_or(MethodError::Truncated)?;
                crate::table::validate_table(&raw[at + 4..end], 0)?;
                end
            }
        };
        if at > raw.len() {
            return Err(MethodError::Truncated);
        }
    }
    if at != raw.len() {
        return Err(MethodError::TrailingBytes);
    }
    Ok(())
}

/// The basic class's properties, decoded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicProperties {
    pub content_type: Option<ShortStr>,
    pub content_encoding: Option<ShortStr>,
    pub headers: Option<FieldTable>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<ShortStr>,
    pub reply_to: Option<ShortStr>,
    pub expiration: Option<ShortStr>,
    pub message_id: Option<ShortStr>,
    pub timestamp: Option<u64>,
    pub kind: Option<ShortStr>,
    pub user_id: Option<ShortStr>,
    pub app_id: Option<ShortStr>,
    pub cluster_id: Option<ShortStr>,
}

impl BasicProperties {
    /// Decode raw property bytes (flags first).
    pub fn decode(raw: Bytes) -> Result<BasicProperties, MethodError> {
        let mut r = Reader::new(raw);
        let flags = r.u16()?;
        // spec: bit 0 set means another flag word follows; basic has 14 properties so none are
        // defined there, but skip them rather than misparse.
        let mut more = flags & 1 != 0;
        while more {
            more = r.u16()? & 1 != 0;
        }
        let mut p = BasicProperties::default();
        let has = |f: u16| flags & f != 0;
        if has(F_CONTENT_TYPE) {
            p.content_type = Some(r.shortstr()?);
        }
        if has(F_CONTENT_ENCODING) {
            p.content_encoding = Some(r.shortstr()?);
        }
        if has(F_HEADERS) {
            p.headers = Some(r.table()?);
        }
        if has(F_DELIVERY_MODE) {
            p.delivery_mode = Some(r.u8()?);
        }
        if has(F_PRIORITY) {
            p.priority = Some(r.u8()?);
        }
        if has(F_CORRELATION_ID) {
            p.correlation_id = Some(r.shortstr()?);
        }
        if has(F_REPLY_TO) {
            p.reply_to = Some(r.shortstr()?);
        }
        if has(F_EXPIRATION) {
            p.expiration = Some(r.shortstr()?);
        }
        if has(F_MESSAGE_ID) {
            p.message_id = Some(r.shortstr()?);
        }
        if has(F_TIMESTAMP) {
            p.timestamp = Some(r.u64()?);
        }
        if has(F_TYPE) {
            p.kind = Some(r.shortstr()?);
        }
        if has(F_USER_ID) {
            p.user_id = Some(r.shortstr()?);
        }
        if has(F_APP_ID) {
            p.app_id = Some(r.shortstr()?);
        }
        if has(F_CLUSTER_ID) {
            p.cluster_id = Some(r.shortstr()?);
        }
        Ok(p)
    }

    /// Encode flags and values.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut flags = 0u16;
        let set = |o: bool, f: u16, flags: &mut u16| {
            if o {
                *flags |= f
            }
        };
        set(self.content_type.is_some(), F_CONTENT_TYPE, &mut flags);
        set(self.content_encoding.is_some(), F_CONTENT_ENCODING, &mut flags);
        set(self.headers.is_some(), F_HEADERS, &mut flags);
        set(self.delivery_mode.is_some(), F_DELIVERY_MODE, &mut flags);
        set(self.priority.is_some(), F_PRIORITY, &mut flags);
        set(self.correlation_id.is_some(), F_CORRELATION_ID, &mut flags);
        set(self.reply_to.is_some(), F_REPLY_TO, &mut flags);
        set(self.expiration.is_some(), F_EXPIRATION, &mut flags);
        set(self.message_id.is_some(), F_MESSAGE_ID, &mut flags);
        set(self.timestamp.is_some(), F_TIMESTAMP, &mut flags);
        set(self.kind.is_some(), F_TYPE, &mut flags);
        set(self.user_id.is_some(), F_USER_ID, &mut flags);
        set(self.app_id.is_some(), F_APP_ID, &mut flags);
        set(self.cluster_id.is_some(), F_CLUSTER_ID, &mut flags);
        out.put_u16(flags);
        let s = |o: &Option<ShortStr>, out: &mut BytesMut| {
            if let Some(v) = o {
                put_shortstr(out, v)
            }
        };
        s(&self.content_type, out);
        s(&self.content_encoding, out);
        if let Some(h) = &self.headers {
            h.encode(out);
        }
        if let Some(v) = self.delivery_mode {
            out.put_u8(v);
        }
        if let Some(v) = self.priority {
            out.put_u8(v);
        }
        s(&self.correlation_id, out);
        s(&self.reply_to, out);
        s(&self.expiration, out);
        s(&self.message_id, out);
        if let Some(v) = self.timestamp {
            out.put_u64(v);
        }
        s(&self.kind, out);
        s(&self.user_id, out);
        s(&self.app_id, out);
        s(&self.cluster_id, out);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }
}
