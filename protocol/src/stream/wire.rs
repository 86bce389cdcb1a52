//! Primitive types of the stream protocol: big-endian integers, `string` (`i16` length, -1 = null),
//! `bytes` (`i32` length, -1 = null), arrays (`i32` count) and key/value maps (arrays of string
//! pairs).
//!
//! Used by the request and response codecs of this module.
//!
//! # Invariants
//! - `Reader` never panics and never copies: strings and byte fields are `Bytes` slices of the
//!   frame. A declared count is checked against the bytes left before anything is allocated.
//! - Strings are raw bytes (RabbitMQ does not check UTF-8 either); the server decides what to
//!   accept.
//! - Writers never fail: a string longer than [`STRING_MAX`] is cut (only server-chosen texts could
//!   be that long).
use super::error::StreamDecodeError;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Key/value pairs (peer properties, subscription properties, stream arguments), in wire order,
/// duplicates kept.
pub type Properties = Vec<(Bytes, Bytes)>;

/// Longest string the `i16` length allows.
pub const STRING_MAX: usize = i16::MAX as usize;
/// The length of a null string (`-1` as `i16`).
const NULL_STRING: u16 = 0xFFFF;
/// The length of null bytes (`-1` as `i32`).
const NULL_BYTES: u32 = 0xFFFF_FFFF;

type Result<T> = std::result::Result<T, StreamDecodeError>;

/// A cursor over the content of one frame.
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize) -> Result<()> {
        if self.buf.len() < n {
            return Err(StreamDecodeError::Truncated);
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }

    pub(crate) fn i64(&mut self) -> Result<i64> {
        self.need(8)?;
        Ok(self.buf.get_i64())
    }

    /// Peek at the next byte without consuming it.
    pub(crate) fn peek_u8(&self) -> Result<u8> {
        self.buf.first().copied().ok_or(StreamDecodeError::Truncated)
    }

    /// The next `n` bytes, as a slice of the frame.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// A `string` that may be null.
    pub(crate) fn opt_string(&mut self) -> Result<Option<Bytes>> {
        let len = self.u16()?;
        if len == NULL_STRING {
            return Ok(None);
        }
        self.take(len as usize).map(Some)
    }

    /// A `string` that must not be null.
    pub(crate) fn string(&mut self) -> Result<Bytes> {
        self.opt_string()?.ok_or(StreamDecodeError::NullString)
    }

    /// A `bytes` field; null reads as empty.
    pub(crate) fn bytes(&mut self) -> Result<Bytes> {
        let len = self.u32()?;
        if len == NULL_BYTES {
            return Ok(Bytes::new());
        }
        self.take(len as usize)
    }

    /// An array count, refused if `count` items of at least `min_item` bytes cannot fit in what is
    /// left (so a hostile count never drives an allocation).
    pub(crate) fn count(&mut self, min_item: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() {
            return Err(StreamDecodeError::Truncated);
        }
        Ok(n)
    }

    /// An array of strings.
    pub(crate) fn strings(&mut self) -> Result<Vec<Bytes>> {
        let n = self.count(2)?;
        (0..n).map(|_| self.string()).collect()
    }

    /// An array of key/value string pairs.
    pub(crate) fn map(&mut self) -> Result<Properties> {
        let n = self.count(4)?;
        (0..n).map(|_| Ok((self.string()?, self.string()?))).collect()
    }

    /// A map that may be left out entirely at the end of the frame (read as empty).
    pub(crate) fn opt_map(&mut self) -> Result<Properties> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        self.map()
    }

    /// Check that the whole frame was read.
    pub(crate) fn end(self) -> Result<()> {
        if !self.buf.is_empty() {
            return Err(StreamDecodeError::TrailingBytes);
        }
        Ok(())
    }
}

/// Write a `string` (cut at [`STRING_MAX`] bytes).
pub(crate) fn put_string(out: &mut BytesMut, s: &[u8]) {
    let s = &s[..s.len().min(STRING_MAX)];
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

/// Write a `string` that may be null.
pub(crate) fn put_opt_string(out: &mut BytesMut, s: Option<&[u8]>) {
    match s {
        Some(s) => put_string(out, s),
        None => out.put_u16(NULL_STRING),
    }
}

/// Write a `bytes` field.
pub(crate) fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

/// Write an array count.
pub(crate) fn put_count(out: &mut BytesMut, n: usize) {
    out.put_u32(u32::try_from(n).unwrap_or(u32::MAX));
}

/// Write an array of strings.
pub(crate) fn put_strings(out: &mut BytesMut, items: &[Bytes]) {
    put_count(out, items.len());
    for s in items {
        put_string(out, s);
    }
}

/// Write a key/value map.
pub(crate) fn put_map(out: &mut BytesMut, map: &[(Bytes, Bytes)]) {
    put_count(out, map.len());
    for (k, v) in map {
        put_string(out, k);
        put_string(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_nulls() {
        let mut r = Reader::new(Bytes::from_static(&[0, 2, b'h', b'i', 0xFF, 0xFF, 0x00]));
        assert_eq!(r.string().expect("string"), Bytes::from_static(b"hi"));
        assert_eq!(r.opt_string(), Ok(None));
        assert_eq!(r.u16(), Err(StreamDecodeError::Truncated));
        let mut r = Reader::new(Bytes::from_static(&[0xFF, 0xFF]));
        assert_eq!(r.string(), Err(StreamDecodeError::NullString));
        let mut r = Reader::new(Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xFF]));
        assert_eq!(r.bytes(), Ok(Bytes::new()));
    }

    #[test]
    fn hostile_count_is_refused_before_allocating() {
        let mut r = Reader::new(Bytes::from_static(&[0x7F, 0xFF, 0xFF, 0xFF, 0, 0]));
        assert_eq!(r.map(), Err(StreamDecodeError::Truncated));
    }

    #[test]
    fn long_string_is_cut() {
        let mut out = BytesMut::new();
        put_string(&mut out, &vec![b'x'; STRING_MAX + 10]);
        assert_eq!(out.len(), 2 + STRING_MAX);
        assert_eq!(&out[..2], &[0x7F, 0xFF]);
    }
}
