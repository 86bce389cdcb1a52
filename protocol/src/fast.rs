//! Hand-written encoders for the hot server-to-client frames: basic.deliver, basic.get-ok,
//! basic.return, basic.ack / basic.nack (publisher confirms), content header and body frames.
//!
//! They write straight into the outbound buffer: no intermediate struct, no allocation beyond the
//! buffer's own growth. Tests check each against the generated [`crate::method`] encoding.
//!
//! # Invariants
//! - Output is byte-for-byte what `frame::encode_method` of the equivalent `Method` gives.
//! - Body frames never exceed `frame_max` (payload <= frame_max - 8).
use crate::codec::put_shortstr_bytes;
use crate::constants::{CLASS_BASIC, FRAME_OVERHEAD};
use crate::frame::{begin, finish, FrameType};
use crate::properties::ContentHeader;
use bytes::{BufMut, BytesMut};

/// `basic.deliver` method frame.
#[inline]
pub fn deliver(
    out: &mut BytesMut,
    channel: u16,
    consumer_tag: &[u8],
    delivery_tag: u64,
    redelivered: bool,
    exchange: &[u8],
    routing_key: &[u8],
) {
    let at = begin(out, FrameType::Method, channel);
    out.put_u16(CLASS_BASIC);
    out.put_u16(60);
    put_shortstr_bytes(out, consumer_tag);
    out.put_u64(delivery_tag);
    out.put_u8(redelivered as u8);
    put_shortstr_bytes(out, exchange);
    put_shortstr_bytes(out, routing_key);
    finish(out, at);
}

/// `basic.get-ok` method frame.
#[inline]
pub fn get_ok(
    out: &mut BytesMut,
    channel: u16,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &[u8],
    routing_key: &[u8],
    message_count: u32,
) {
    let at = begin(out, FrameType::Method, channel);
    out.put_u16(CLASS_BASIC);
    out.put_u16(71);
    out.put_u64(delivery_tag);
    out.put_u8(redelivered as u8);
    put_shortstr_bytes(out, exchange);
    put_shortstr_bytes(out, routing_key);
    out.put_u32(message_count);
    finish(out, at);
}

/// `basic.return` method frame.
pub fn basic_return(
    out: &mut BytesMut,
    channel: u16,
    reply_code: u16,
    reply_text: &[u8],
    exchange: &[u8],
    routing_key: &[u8],
) {
    let at = begin(out, FrameType::Method, channel);
    out.put_u16(CLASS_BASIC);
    out.put_u16(50);
    out.put_u16(reply_code);
    put_shortstr_bytes(out, reply_text);
    put_shortstr_bytes(out, exchange);
    put_shortstr_bytes(out, routing_key);
    finish(out, at);
}

/// `basic.ack` method frame (publisher confirm).
#[inline]
pub fn ack(out: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool) {
    let at = begin(out, FrameType::Method, channel);
    out.put_u16(CLASS_BASIC);
    out.put_u16(80);
    out.put_u64(delivery_tag);
    out.put_u8(multiple as u8);
    finish(out, at);
}

/// `basic.nack` method frame (publisher confirm).
#[inline]
pub fn nack(out: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool, requeue: bool) {
    let at = begin(out, FrameType::Method, channel);
    out.put_u16(CLASS_BASIC);
    out.put_u16(120);
    out.put_u64(delivery_tag);
    out.put_u8(multiple as u8 | (requeue as u8) << 1);
    finish(out, at);
}

/// Content header frame with raw property bytes.
#[inline]
pub fn header(out: &mut BytesMut, channel: u16, body_size: u64, properties: &[u8]) {
    let at = begin(out, FrameType::Header, channel);
    ContentHeader::encode_payload(out, CLASS_BASIC, body_size, properties);
    finish(out, at);
}

/// Largest body payload per frame for a negotiated `frame_max` (0 = no limit).
#[inline]
pub fn max_body_chunk(frame_max: u32) -> usize {
    if frame_max == 0 {
        return u32::MAX as usize;
    }
    (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1)
}

/// Body frames for `body`, split at `frame_max`. An empty body produces no frame (spec).
#[inline]
pub fn body(out: &mut BytesMut, channel: u16, body: &[u8], frame_max: u32) {
    let chunk = max_body_chunk(frame_max);
    out.reserve(body.len() + FRAME_OVERHEAD * (body.len() / chunk + 1));
    for piece in body.chunks(chunk) {
        let at = begin(out, FrameType::Body, channel);
        out.put_slice(piece);
        finish(out, at);
    }
}
