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
