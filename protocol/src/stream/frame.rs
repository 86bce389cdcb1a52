//! Stream protocol framing: `size:u32` then `size` bytes that start with `key:u16 version:u16`.
//!
//! Runs in the connection reader (splitting frames off the read buffer) and in every encoder of
//! this module (writing the size prefix).
//!
//! # Invariants
//! - Partial input is never an error: [`split_frame`] returns `Ok(None)` until a whole frame is
//!   buffered. A size over frame_max, or too small for a key and a version, is an error as soon as
//!   the 4-byte prefix is in, before any of the frame is buffered.
//! - A split frame is a `Bytes` slice of the read buffer (no copy); it starts at the key.
//! - Encoders write whole frames: `begin` reserves the size prefix, `finish` patches it.
use super::error::StreamFrameError;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes of the size prefix.
pub const SIZE_PREFIX: usize = 4;
/// Bytes of `key:u16 version:u16`, the smallest possible frame content.
pub const KEY_VERSION_SIZE: usize = 4;
/// Most bytes `split_frame` reserves ahead for an incomplete frame.
const MAX_RESERVE: usize = 1024 * 1024;

/// Split one frame off the front of `buf`, without its size prefix.
///
/// `max_frame` is the negotiated frame_max; 0 means no limit. Like RabbitMQ, it bounds the value of
/// the size field (the 4 bytes of the prefix itself are not counted).
pub fn split_frame(buf: &mut BytesMut, max_frame: u32) -> Result<Option<Bytes>, StreamFrameError> {
    if buf.len() < SIZE_PREFIX {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    // spec(stream.frame): frame_max (Tune) is the largest size a peer accepts, 0 = no limit.
    if max_frame != 0 && size > max_frame {
        return Err(StreamFrameError::TooLarge { size, max: max_frame });
    }
    // spec(stream.frame): every frame starts with a key and a version.
    if (size as usize) < KEY_VERSION_SIZE {
        return Err(StreamFrameError::TooSmall(size));
    }
    let total = (size as usize).saturating_add(SIZE_PREFIX);
    if buf.len() < total {
        // Never trust a peer's size for more than a bounded reservation up front.
        buf.reserve((total - buf.len()).min(MAX_RESERVE));
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(SIZE_PREFIX);
    Ok(Some(frame.freeze()))
}

/// The key and version at the front of a frame returned by [`split_frame`].
pub fn key_version(frame: &[u8]) -> Option<(u16, u16)> {
    match frame {
        [k0, k1, v0, v1, ..] => Some((u16::from_be_bytes([*k0, *k1]), u16::from_be_bytes([*v0, *v1]))),
        _ => None,
    }
}

/// Start a frame in `out` (size placeholder, key, version); returns the offset for [`finish`].
#[inline]
pub(crate) fn begin(out: &mut BytesMut, key: u16, version: u16) -> usize {
    let at = out.len();
    out.put_u32(0);
    out.put_u16(key);
    out.put_u16(version);
    at
}

/// Patch the size prefix of the frame started at `at`.
#[inline]
pub(crate) fn finish(out: &mut BytesMut, at: usize) {
    let size = u32::try_from(out.len() - at - SIZE_PREFIX).unwrap_or(u32::MAX);
    out[at..at + SIZE_PREFIX].copy_from_slice(&size.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_more_bytes_then_splits() {
        let mut buf = BytesMut::from(&[0u8, 0, 0][..]);
        assert_eq!(split_frame(&mut buf, 0), Ok(None));
        buf.extend_from_slice(&[6, 0x00, 0x17, 0x00]);
        assert_eq!(split_frame(&mut buf, 0), Ok(None));
        buf.extend_from_slice(&[0x01, 0xAA, 0xBB, 9]);
        let f = split_frame(&mut buf, 0).expect("valid").expect("complete");
        assert_eq!(&f[..], &[0x00, 0x17, 0x00, 0x01, 0xAA, 0xBB]);
        assert_eq!(key_version(&f), Some((0x17, 1)));
        assert_eq!(&buf[..], &[9]);
    }

    #[test]
    fn size_limits() {
        let mut buf = BytesMut::from(&[0u8, 0, 0x20, 0x01][..]);
        assert_eq!(split_frame(&mut buf, 8192), Err(StreamFrameError::TooLarge { size: 8193, max: 8192 }));
        assert_eq!(split_frame(&mut buf, 0), Ok(None), "0 is no limit");
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 1, 2, 3][..]);
        assert_eq!(split_frame(&mut buf, 0), Err(StreamFrameError::TooSmall(3)));
        // Exactly frame_max is accepted.
        let mut buf = BytesMut::from(&[0u8, 0, 0, 4, 0, 0x17, 0, 1][..]);
        assert!(split_frame(&mut buf, 4).expect("valid").is_some());
    }

    #[test]
    fn huge_size_reserves_a_bounded_amount() {
        let mut buf = BytesMut::from(&[0xFFu8, 0xFF, 0xFF, 0xF0][..]);
        assert_eq!(split_frame(&mut buf, 0), Ok(None));
        assert!(buf.capacity() <= MAX_RESERVE + 64);
    }

    #[test]
    fn begin_finish_writes_the_size() {
        let mut out = BytesMut::new();
        out.put_u8(0xEE);
        let at = begin(&mut out, 0x8001, 1);
        out.put_u32(7);
        finish(&mut out, at);
        assert_eq!(&out[..], &[0xEE, 0, 0, 0, 8, 0x80, 0x01, 0, 1, 0, 0, 0, 7]);
    }
}
