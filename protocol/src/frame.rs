//! Frames: `type:u8 channel:u16 size:u32 payload[size] 0xCE`.
//!
//! Decoding is streaming: [`decode`] takes bytes from a `BytesMut` read buffer and returns
//! `Ok(None)` while a frame is incomplete. A payload is split off the buffer as `Bytes` (no copy).
//!
//! # Invariants
//! - Partial input is never an error; only a bad frame end, unknown type or a frame larger than
//!   frame_max is, and those are detected as soon as the 7-byte header is in (a huge size is refused
//!   before any of it is buffered).
//! - Encoders write whole frames; [`begin`] / [`finish`] let a caller encode a payload in place.
use crate::constants::{FRAME_END, FRAME_HEADER_SIZE, FRAME_OVERHEAD};
use crate::error::FrameError;
use crate::method::Method;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Most bytes `decode` reserves ahead for an incomplete frame.
const MAX_RESERVE: usize = 1024 * 1024;

/// Frame type octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    Method = 1,
    Header = 2,
    Body = 3,
    Heartbeat = 8,
}

impl FrameType {
    pub fn from_u8(b: u8) -> Option<FrameType> {
        Some(match b {
            1 => FrameType::Method,
            2 => FrameType::Header,
            3 => FrameType::Body,
            8 => FrameType::Heartbeat,
            _ => return None,
        })
    }
}

/// One decoded frame. The payload is undecoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub kind: FrameType,
    pub channel: u16,
    pub payload: Bytes,
}

impl Frame {
    /// Whether this frame is part of a basic.publish: its method frame, or a content header or
    /// body frame (only a publish carries content from a client).
    #[inline]
    pub fn is_publish_part(&self) -> bool {
        match self.kind {
            FrameType::Header | FrameType::Body => true,
            FrameType::Method => self.payload.starts_with(&crate::method::BasicPublish::IDS),
            _ => false,
        }
    }
}

/// Decode one frame from the front of `buf`. `frame_max` is the negotiated maximum total frame size
/// (header + payload + end byte); 0 means no limit.
pub fn decode(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, FrameError> {
    if buf.len() < FRAME_HEADER_SIZE {
        return Ok(None);
    }
    let kind = FrameType::from_u8(buf[0]).ok_or(FrameError::UnknownType(buf[0]))?;
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    let total = size as u64 + FRAME_OVERHEAD as u64;
    if frame_max != 0 && total > frame_max as u64 {
        return Err(FrameError::TooLarge { size: total.min(u32::MAX as u64) as u32, max: frame_max });
    }
    let total = total as usize;
    if buf.len() < total {
        // Reserve for the rest of the frame, but never trust a peer's size for more than a bounded
        // amount up front (frame_max 0 means "no limit").
        buf.reserve((total - buf.len()).min(MAX_RESERVE));
        return Ok(None);
    }
    let end = buf[total - 1];
    if end != FRAME_END {
        return Err(FrameError::BadFrameEnd(end));
    }
    let mut frame = buf.split_to(total);
    // Moved past, not split off: a split takes and drops a reference to the read buffer, two
    // atomic operations per frame (three frames per published message).
    frame.advance(FRAME_HEADER_SIZE);
    frame.truncate(size as usize);
    Ok(Some(Frame { kind, channel, payload: frame.freeze() }))
}

/// Where the parts of one whole basic.publish are, in a buffer that starts with it: see
/// [`publish_run`]. Ranges index the buffer; each is a frame's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRun {
    /// The channel all three frames are on (not 0).
    pub channel: u16,
    /// Bytes of the three frames together, from the start of the buffer.
    pub len: usize,
    /// The method frame's payload (starts with basic.publish's class and method ids).
    pub method: std::ops::Range<usize>,
    /// The content header frame's payload (class 60, at least the fixed 14 bytes).
    pub header: std::ops::Range<usize>,
    /// The one body frame's payload: exactly the body size the header announces, not empty.
    pub body: std::ops::Range<usize>,
}

/// The common shape of a publish, recognised from the frame headers alone, without consuming
/// anything: a basic.publish method frame, its content header and one body frame holding the
/// whole (non-empty) body, all complete in `buf`, on one channel, each within `frame_max` and
/// ending in the frame end octet. `None` for anything else (an incomplete or bad frame, another
/// method, a body in several frames or none): [`decode`] then takes the frames one by one and
/// reports what is wrong. Only framing is checked; the payloads are the caller's to decode.
pub fn publish_run(buf: &[u8], frame_max: u32) -> Option<PublishRun> {
    // One frame at `at` of type `kind` on `channel` (0: any but 0): its payload's range.
    let frame = |at: usize, kind: FrameType, channel: u16| -> Option<std::ops::Range<usize>> {
        let head = buf.get(at..at + FRAME_HEADER_SIZE)?;
        let ch = u16::from_be_bytes([head[1], head[2]]);
        if head[0] != kind as u8 || ch == 0 || (channel != 0 && ch != channel) {
            return None;
        }
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        if frame_max != 0 && size + FRAME_OVERHEAD > frame_max as usize {
            return None;
        }
        let start = at + FRAME_HEADER_SIZE;
        (*buf.get(start + size)? == FRAME_END).then_some(start..start + size)
    };
    let method = frame(0, FrameType::Method, 0)?;
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    if !buf[method.clone()].starts_with(&crate::method::BasicPublish::IDS) {
        return None;
    }
    let header = frame(method.end + 1, FrameType::Header, channel)?;
    let fixed = buf.get(header.start..header.start + 14)?;
    if u16::from_be_bytes([fixed[0], fixed[1]]) != crate::constants::CLASS_BASIC {
        return None;
    }
    let body_size =
        u64::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7], fixed[8], fixed[9], fixed[10], fixed[11]]);
    let body = frame(header.end + 1, FrameType::Body, channel)?;
    if body.is_empty() || body.len() as u64 != body_size {
        return None;
    }
    Some(PublishRun { channel, len: body.end + 1, method, header, body })
}

/// Start a frame in `out`; returns the offset to pass to [`finish`].
#[inline]
pub fn begin(out: &mut BytesMut, kind: FrameType, channel: u16) -> usize {
    let at = out.len();
    out.put_u8(kind as u8);
    out.put_u16(channel);
    out.put_u32(0);
    at
}

/// Patch the size of the frame started at `at` and write the frame end.
#[inline]
pub fn finish(out: &mut BytesMut, at: usize) {
    let size = (out.len() - at - FRAME_HEADER_SIZE) as u32;
    out[at + 3..at + 7].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// Encode a whole method frame.
pub fn encode_method(out: &mut BytesMut, channel: u16, m: &Method) {
    let at = begin(out, FrameType::Method, channel);
    m.encode(out);
    finish(out, at);
}

/// Encode a frame with the given payload.
pub fn encode_raw(out: &mut BytesMut, kind: FrameType, channel: u16, payload: &[u8]) {
    out.reserve(payload.len() + FRAME_OVERHEAD);
    let at = begin(out, kind, channel);
    out.put_slice(payload);
    finish(out, at);
}

/// A heartbeat frame (always on channel 0).
pub fn encode_heartbeat(out: &mut BytesMut) {
    out.put_slice(&[8, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::BasicPublish;
    use crate::types::ShortStr;

    /// basic.publish on `channel` to exchange "x", routing key "k", with `body` in frames of at
    /// most `frame_max` (0: one frame).
    fn publish(channel: u16, body: &[u8], frame_max: u32) -> BytesMut {
        let mut out = BytesMut::new();
        let p = BasicPublish { exchange: ShortStr::from("x"), routing_key: ShortStr::from("k"), ..Default::default() };
        encode_method(&mut out, channel, &Method::BasicPublish(p));
        crate::fast::header(&mut out, channel, body.len() as u64, crate::properties::EMPTY_PROPERTIES);
        crate::fast::body(&mut out, channel, body, frame_max);
        out
    }

    #[test]
    fn a_whole_publish_is_found_with_its_parts() {
        let mut buf = publish(3, b"hello", 0);
        let whole = buf.len();
        buf.extend_from_slice(&publish(3, b"next", 0));
        let run = publish_run(&buf, 0).expect("a publish run");
        assert_eq!((run.channel, run.len), (3, whole));
        assert_eq!(&buf[run.body.clone()], b"hello");
        assert_eq!(&buf[run.header.start..run.header.start + 2], &[0, 60]);
        assert_eq!(&buf[run.header.start + 12..run.header.end], crate::properties::EMPTY_PROPERTIES);
        let p = BasicPublish::decode(Bytes::copy_from_slice(&buf[run.method])).expect("basic.publish");
        assert_eq!((p.exchange.as_bytes(), p.routing_key.as_bytes()), (&b"x"[..], &b"k"[..]));
        // The same frames one by one.
        let mut b = buf.clone();
        for kind in [FrameType::Method, FrameType::Header, FrameType::Body] {
            assert_eq!(decode(&mut b, 0).expect("a frame").expect("complete").kind, kind);
        }
        assert_eq!(b.len(), buf.len() - whole);
    }

    #[test]
    fn anything_else_is_left_to_frame_by_frame_decoding() {
        let whole = publish(1, b"hello", 0);
        // Incomplete, at every length.
        for n in 0..whole.len() {
            assert_eq!(publish_run(&whole[..n], 0), None, "{n} bytes");
        }
        // A body in two frames, an empty body (no body frame), channel 0.
        assert_eq!(publish_run(&publish(1, b"hello", 11), 11), None);
        assert_eq!(publish_run(&publish(1, b"", 0), 0), None);
        assert_eq!(publish_run(&publish(0, b"hello", 0), 0), None);
        // A frame over frame_max.
        assert_eq!(publish_run(&whole, 12), None);
        // Another method; a bad frame end; the header on another channel; a body size that
        // differs from the body frame's; a header of another class.
        let mut m = whole.clone();
        m[FRAME_HEADER_SIZE + 3] = 50;
        assert_eq!(publish_run(&m, 0), None);
        let method_len = FRAME_HEADER_SIZE + u32::from_be_bytes([whole[3], whole[4], whole[5], whole[6]]) as usize;
        let mut m = whole.clone();
        m[method_len] = 0;
        assert_eq!(publish_run(&m, 0), None);
        let mut m = whole.clone();
        m[method_len + 2] = 2;
        assert_eq!(publish_run(&m, 0), None);
        let mut m = whole.clone();
        m[method_len + 1 + FRAME_HEADER_SIZE + 11] = 9;
        assert_eq!(publish_run(&m, 0), None);
        let mut m = whole.clone();
        m[method_len + 1 + FRAME_HEADER_SIZE + 1] = 50;
        assert_eq!(publish_run(&m, 0), None);
    }
}
