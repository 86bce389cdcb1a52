//! Primitive readers and writers shared by methods, tables and properties.
//!
//! # Invariants
//! - `Reader` never panics: every read checks the remaining length and returns `Truncated`.
//! - Strings and tables are returned as `Bytes` slices of the input (a refcount, no copy).
use crate::error::MethodError;
use crate::table::FieldTable;
use crate::types::{LongStr, ShortStr};
use bytes::{BufMut, Bytes, BytesMut};

/// Cursor over a frame payload.
pub struct Reader {
    /// The payload.
    buf: Bytes,
    /// Offset of the next unread byte.
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8], MethodError> {
        if self.remaining() < n {
            return Err(MethodError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    #[inline]
    pub fn slice(&mut self, n: usize) -> Result<Bytes, MethodError> {
        if self.remaining() < n {
            return Err(MethodError::Truncated);
        }
        let s = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(s)
    }
    #[inline]
    pub fn u8(&mut self) -> Result<u8, MethodError> {
        Ok(self.take(1)?[0])
    }
    #[inline]
    pub fn u16(&mut self) -> Result<u16, MethodError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    #[inline]
    pub fn u32(&mut self) -> Result<u32, MethodError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    #[inline]
    pub fn u64(&mut self) -> Result<u64, MethodError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
    #[inline]
    pub fn shortstr(&mut self) -> Result<ShortStr, MethodError> {
        let n = self.u8()? as usize;
        // A u8 length is always <= 255, so this cannot fail.
        ShortStr::from_bytes(self.slice(n)?).ok_or(MethodError::Truncated)
    }
    /// A short string that must be valid UTF-8: names (queues, exchanges, consumer tags,
    /// routing keys of bindings) are text, and a name that is not cannot be exported, shown or
    /// recovered under the same bytes. spec: shortstr is UTF-8 in RabbitMQ's reading of 0-9-1;
    /// it refuses anything else with 501 "Malformed UTF-8 in shortstr".
    #[inline]
    pub fn shortstr_utf8(&mut self) -> Result<ShortStr, MethodError> {
        let s = self.shortstr()?;
        if std::str::from_utf8(s.as_bytes()).is_err() {
            return Err(MethodError::BadUtf8);
        }
        Ok(s)
    }
    pub fn longstr(&mut self) -> Result<LongStr, MethodError> {
        let n = self.u32()? as usize;
        Ok(LongStr(self.slice(n)?))
    }
    pub fn table(&mut self) -> Result<FieldTable, MethodError> {
        let n = self.u32()? as usize;
        FieldTable::decode(self.slice(n)?)
    }
}

#[inline]
pub fn put_shortstr(out: &mut BytesMut, s: &ShortStr) {
    out.put_u8(s.len() as u8);
    out.put_slice(s.as_bytes());
}

#[inline]
pub fn put_shortstr_bytes(out: &mut BytesMut, s: &[u8]) {
    let n = s.len().min(crate::types::SHORTSTR_MAX);
    out.put_u8(n as u8);
    out.put_slice(&s[..n]);
}

pub fn put_longstr(out: &mut BytesMut, s: &LongStr) {
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}
