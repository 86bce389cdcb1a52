//! Field tables and field arrays with every value type RabbitMQ uses:
//! `t b B s u I i l f d D S x A T F V`.
//!
//! # Invariants
//! - Order and duplicate keys are kept as sent (RabbitMQ passes header tables through unchanged).
//! - Nesting depth is bounded (`MAX_DEPTH`) so hostile input cannot exhaust the stack.
//! - `encode(decode(b)) == b` for every valid table `b` whose booleans are 0 or 1 (any other byte
//!   decodes as true and re-encodes as 1, as in RabbitMQ).
use crate::codec::{put_longstr, put_shortstr, Reader};
use crate::error::MethodError;
use crate::types::{LongStr, ShortStr};
use bytes::{BufMut, Bytes, BytesMut};

/// Deepest nesting of tables/arrays accepted; deeper input is a syntax error, not a stack overflow.
pub const MAX_DEPTH: usize = 64;

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s`
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l`
    I64(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: scale, unscaled value.
    Decimal(u8, u32),
    /// `S`
    LongStr(LongStr),
    /// `x`
    Bytes(LongStr),
    /// `A`
    Array(Vec<FieldValue>),
    /// `T`
    Timestamp(u64),
    /// `F`
    Table(FieldTable),
    /// `V`
    Void,
}

impl FieldValue {
    /// The value as an integer, for arguments like `x-message-ttl` that clients send with any int type.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            FieldValue::I8(v) => v as i64,
            FieldValue::U8(v) => v as i64,
            FieldValue::I16(v) => v as i64,
            FieldValue::U16(v) => v as i64,
            FieldValue::I32(v) => v as i64,
            FieldValue::U32(v) => v as i64,
            FieldValue::I64(v) => v,
            _ => return None,
        })
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            FieldValue::LongStr(s) | FieldValue::Bytes(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            FieldValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn decode(r: &mut Reader, depth: usize) -> Result<FieldValue, MethodError> {
        if depth > MAX_DEPTH {
            return Err(MethodError::TooDeep);
        }
        let t = r.u8()?;
        Ok(match t {
            b't' => FieldValue::Bool(r.u8()? != 0),
            b'b' => FieldValue::I8(r.u8()? as i8),
            b'B' => FieldValue::U8(r.u8()?),
            b's' => FieldValue::I16(r.u16()? as i16),
            b'u' => FieldValue::U16(r.u16()?),
            b'I' => FieldValue::I32(r.u32()? as i32),
            b'i' => FieldValue::U32(r.u32()?),
            b'l' => FieldValue::I64(r.u64()? as i64),
            b'f' => FieldValue::F32(f32::from_bits(r.u32()?)),
            b'd' => FieldValue::F64(f64::from_bits(r.u64()?)),
            b'D' => FieldValue::Decimal(r.u8()?, r.u32()?),
            b'S' => FieldValue::LongStr(r.longstr()?),
            b'x' => FieldValue::Bytes(r.longstr()?),
            b'A' => {
                let n = r.u32()? as usize;
                let mut inner = Reader::new(r.slice(n)?);
                let mut items = Vec::new();
                while inner.remaining() > 0 {
                    items.push(FieldValue::decode(&mut inner, depth + 1)?);
                }
                FieldValue::Array(items)
            }
            b'T' => FieldValue::Timestamp(r.u64()?),
            b'F' => {
                let n = r.u32()? as usize;
                FieldValue::Table(FieldTable::decode_depth(r.slice(n)?, depth + 1)?)
            }
            b'V' => FieldValue::Void,
            other => return Err(MethodError::BadFieldType(other)),
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        match self {
            FieldValue::Bool(v) => {
                out.put_u8(b't');
                out.put_u8(*v as u8)
            }
            FieldValue::I8(v) => {
                out.put_u8(b'b');
                out.put_i8(*v)
            }
            FieldValue::U8(v) => {
                out.put_u8(b'B');
                out.put_u8(*v)
            }
            FieldValue::I16(v) => {
                out.put_u8(b's');
                out.put_i16(*v)
            }
            FieldValue::U16(v) => {
                out.put_u8(b'u');
                out.put_u16(*v)
            }
            FieldValue::I32(v) => {
                out.put_u8(b'I');
                out.put_i32(*v)
            }
            FieldValue::U32(v) => {
                out.put_u8(b'i');
                out.put_u32(*v)
            }
            FieldValue::I64(v) => {
                out.put_u8(b'l');
                out.put_i64(*v)
            }
            FieldValue::F32(v) => {
                out.put_u8(b'f');
                out.put_u32(v.to_bits())
            }
            FieldValue::F64(v) => {
                out.put_u8(b'd');
                out.put_u64(v.to_bits())
            }
            FieldValue::Decimal(s, v) => {
                out.put_u8(b'D');
                out.put_u8(*s);
                out.put_u32(*v)
            }
            FieldValue::LongStr(s) => {
                out.put_u8(b'S');
                put_longstr(out, s)
            }
            FieldValue::Bytes(s) => {
                out.put_u8(b'x');
                put_longstr(out, s)
            }
            FieldValue::Array(items) => {
                out.put_u8(b'A');
                let at = out.len();
                out.put_u32(0);
                for i in items {
                    i.encode(out);
                }
                patch_len(out, at);
            }
            FieldValue::Timestamp(v) => {
                out.put_u8(b'T');
                out.put_u64(*v)
            }
            FieldValue::Table(t) => {
                out.put_u8(b'F');
                t.encode(out)
            }
            FieldValue::Void => out.put_u8(b'V'),
        }
    }
}

fn patch_len(out: &mut BytesMut, at: usize) {
    let n = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&n.to_be_bytes());
}

/// Check that `buf` is a well-formed table body (without its u32 length prefix): every key and
/// value in bounds, every value type known, nesting bounded. Allocates nothing.
pub fn validate_table(buf: &[u8], depth: usize) -> Result<(), MethodError> {
    if depth > MAX_DEPTH {
        return Err(MethodError::TooDeep);
    }
    let mut at = 0;
    while at < buf.len() {
        let k = *buf.get(at).ok_or(MethodError::Truncated)? as usize;
        at += 1 + k;
        at = validate_value(buf, at, depth)?;
    }
    if at > buf.len() {
        return Err(MethodError::Truncated);
    }
    Ok(())
}

/// Check the field value starting at `buf[at]`; returns the offset after it.
fn validate_value(buf: &[u8], at: usize, depth: usize) -> Result<usize, MethodError> {
    let t = *buf.get(at).ok_or(MethodError::Truncated)?;
    let at = at + 1;
    let fixed = |n: usize| if at + n <= buf.len() { Ok(at + n) } else { Err(MethodError::Truncated) };
    let sized = || -> Result<(usize, usize), MethodError> {
        let len = buf.get(at..at + 4).ok_or(MethodError::Truncated)?;
        let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let end = (at + 4).checked_add(n).filter(|e| *e <= buf.len()).ok_or(MethodError::Truncated)?;
        Ok((at + 4, end))
    };
    match t {
        b't' | b'b' | b'B' => fixed(1),
        b's' | b'u' => fixed(2),
        b'I' | b'i' | b'f' => fixed(4),
        b'l' | b'd' | b'T' => fixed(8),
        b'D' => fixed(5),
        b'V' => Ok(at),
        b'S' | b'x' => Ok(sized()?.1),
        b'F' => {
            let (from, end) = sized()?;
            validate_table(&buf[from..end], depth + 1)?;
            Ok(end)
        }
        b'A' => {
            if depth + 1 > MAX_DEPTH {
                return Err(MethodError::TooDeep);
            }
            let (from, end) = sized()?;
            let items = &buf[..end];
            let mut i = from;
            while i < end {
                i = validate_value(items, i, depth + 1)?;
            }
            Ok(end)
        }
        other => Err(MethodError::BadFieldType(other)),
    }
}

/// A field table: ordered `(name, value)` pairs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldTable(pub Vec<(ShortStr, FieldValue)>);

impl FieldTable {
    pub fn new() -> FieldTable {
        FieldTable(Vec::new())
    }
    /// Decode the body of a table (without its u32 length prefix).
    pub fn decode(buf: Bytes) -> Result<FieldTable, MethodError> {
        FieldTable::decode_depth(buf, 0)
    }
    fn decode_depth(buf: Bytes, depth: usize) -> Result<FieldTable, MethodError> {
        if depth > MAX_DEPTH {
            return Err(MethodError::TooDeep);
        }
        let mut r = Reader::new(buf);
        let mut items = Vec::new();
        while r.remaining() > 0 {
            let k = r.shortstr()?;
            let v = FieldValue::decode(&mut r, depth)?;
            items.push((k, v));
        }
        Ok(FieldTable(items))
    }
    /// Encode with the u32 length prefix.
    pub fn encode(&self, out: &mut BytesMut) {
        let at = out.len();
        out.put_u32(0);
        for (k, v) in &self.0 {
            put_shortstr(out, k);
            v.encode(out);
        }
        patch_len(out, at);
    }
    /// First value under `key`.
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn insert(&mut self, key: impl Into<ShortStr>, v: FieldValue) {
        let key = key.into();
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = v;
        } else {
            self.0.push((key, v));
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &(ShortStr, FieldValue)> {
        self.0.iter()
    }
}
