//! The AMQP 1.0 type system (OASIS AMQP 1.0 part 1): one [`Value`] per encodable type, a decoder
//! over a `Bytes` buffer and a compact encoder.
//!
//! Runs wherever a stream message's sections are looked at (conversion to AMQP 0-9-1, filters).
//!
//! # Invariants
//! - Decoding never panics: every read is bounds-checked, nesting is bounded by [`MAX_DEPTH`], and
//!   the number of values one decode may produce is bounded by the input length (arrays of
//!   zero-width elements cannot blow memory up).
//! - Binary, string and symbol values are `Bytes` slices of the input (a refcount, no copy).
//! - Strings are kept as raw bytes; UTF-8 is not checked (RabbitMQ's parser does not check either).
//! - `decode(encode(v)) == v` for every value (NaN aside) except an `Array` whose elements do not
//!   share one type, which is written (and so read back) as a `List`. The encoder always picks the
//!   smallest encoding, so bytes may differ from a sender's (e.g. `0x56 0x01` becomes `0x41`).
use super::Amqp10Error;
use bytes::{BufMut, Bytes, BytesMut};

/// Deepest nesting of described/compound values accepted; deeper input is an error, not a stack
/// overflow. Same bound as 0-9-1 field tables.
pub const MAX_DEPTH: usize = 64;

/// Values one decode may produce beyond one per input byte: only zero-width array elements (e.g. an
/// array of `null`) produce a value without consuming a byte, this is their allowance.
const EXTRA_VALUE_BUDGET: usize = 4096;

// Constructor codes (spec part 1, section 1.6). The high nibble is the width category.
/// `0x00`: a descriptor value follows, then the described value.
pub const DESCRIBED: u8 = 0x00;
pub const NULL: u8 = 0x40;
pub const TRUE: u8 = 0x41;
pub const FALSE: u8 = 0x42;
/// `uint` zero, no payload.
pub const UINT0: u8 = 0x43;
/// `ulong` zero, no payload.
pub const ULONG0: u8 = 0x44;
/// Empty list, no payload.
pub const LIST0: u8 = 0x45;
pub const UBYTE: u8 = 0x50;
pub const BYTE: u8 = 0x51;
/// `uint` in one byte.
pub const SMALLUINT: u8 = 0x52;
/// `ulong` in one byte; also the usual prefix of section descriptors (`0x00 0x53 0x70`).
pub const SMALLULONG: u8 = 0x53;
/// `int` in one signed byte.
pub const SMALLINT: u8 = 0x54;
/// `long` in one signed byte.
pub const SMALLLONG: u8 = 0x55;
/// Boolean as one byte, 0 or 1.
pub const BOOLEAN: u8 = 0x56;
pub const USHORT: u8 = 0x60;
pub const SHORT: u8 = 0x61;
pub const UINT: u8 = 0x70;
pub const INT: u8 = 0x71;
pub const FLOAT: u8 = 0x72;
/// A UTF-32BE code point.
pub const CHAR: u8 = 0x73;
pub const DECIMAL32: u8 = 0x74;
pub const ULONG: u8 = 0x80;
pub const LONG: u8 = 0x81;
pub const DOUBLE: u8 = 0x82;
/// Milliseconds since the Unix epoch, signed 64-bit.
pub const TIMESTAMP: u8 = 0x83;
pub const DECIMAL64: u8 = 0x84;
pub const DECIMAL128: u8 = 0x94;
pub const UUID: u8 = 0x98;
pub const VBIN8: u8 = 0xa0;
pub const STR8: u8 = 0xa1;
pub const SYM8: u8 = 0xa3;
pub const VBIN32: u8 = 0xb0;
pub const STR32: u8 = 0xb1;
pub const SYM32: u8 = 0xb3;
/// List with a one-byte size and count.
pub const LIST8: u8 = 0xc0;
pub const MAP8: u8 = 0xc1;
/// List with a four-byte size and count.
pub const LIST32: u8 = 0xd0;
pub const MAP32: u8 = 0xd1;
/// Array with a one-byte size and count, then one element constructor for all elements.
pub const ARRAY8: u8 = 0xe0;
pub const ARRAY32: u8 = 0xf0;

/// One AMQP 1.0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `boolean`.
    Bool(bool),
    /// `ubyte`.
    Ubyte(u8),
    /// `ushort`.
    Ushort(u16),
    /// `uint`.
    Uint(u32),
    /// `ulong`.
    Ulong(u64),
    /// `byte`.
    Byte(i8),
    /// `short`.
    Short(i16),
    /// `int`.
    Int(i32),
    /// `long`.
    Long(i64),
    /// `float` (IEEE 754 binary32).
    Float(f32),
    /// `double` (IEEE 754 binary64).
    Double(f64),
    /// `decimal32` (IEEE 754 decimal32, kept as raw bytes).
    Decimal32([u8; 4]),
    /// `decimal64`, raw bytes.
    Decimal64([u8; 8]),
    /// `decimal128`, raw bytes.
    Decimal128([u8; 16]),
    /// `char`: a Unicode code point (not checked).
    Char(u32),
    /// `timestamp`: milliseconds since the Unix epoch.
    Timestamp(i64),
    /// `uuid`: 16 bytes, network order.
    Uuid([u8; 16]),
    /// `binary`.
    Binary(Bytes),
    /// `string`: UTF-8 by spec, raw bytes here.
    String(Bytes),
    /// `symbol`: ASCII by spec, raw bytes here.
    Symbol(Bytes),
    /// `list`: values of any types.
    List(Vec<Value>),
    /// `map`: pairs in wire order, duplicates kept.
    Map(Vec<(Value, Value)>),
    /// `array`: values of one type (see [`Value::encode`] for arrays that are not).
    Array(Vec<Value>),
    /// A described value: `(descriptor, value)`.
    Described(Box<Value>, Box<Value>),
}

impl Value {
    /// A `string` value from a `&str`.
    pub fn string(s: &str) -> Value {
        Value::String(Bytes::copy_from_slice(s.as_bytes()))
    }
    /// A `symbol` value from a static literal.
    pub fn symbol(s: &'static str) -> Value {
        Value::Symbol(Bytes::from_static(s.as_bytes()))
    }
    /// The bytes of a string or symbol.
    pub fn as_str_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::String(b) | Value::Symbol(b) => Some(b),
            _ => None,
        }
    }
    /// The value of any integer type that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::Ubyte(v) => v.into(),
            Value::Ushort(v) => v.into(),
            Value::Uint(v) => v.into(),
            Value::Ulong(v) => i64::try_from(v).ok()?,
            Value::Byte(v) => v.into(),
            Value::Short(v) => v.into(),
            Value::Int(v) => v.into(),
            Value::Long(v) => v,
            _ => return None,
        })
    }

    /// How many values this one is made of (itself and everything nested in it).
    fn node_count(&self) -> usize {
        1 + match self {
            Value::List(items) | Value::Array(items) => items.iter().map(Value::node_count).sum(),
            Value::Map(pairs) => pairs.iter().map(|(k, v)| k.node_count() + v.node_count()).sum(),
            Value::Described(d, v) => d.node_count() + v.node_count(),
            _ => 0,
        }
    }

    /// Decode exactly one value spanning all of `buf`.
    pub fn decode(buf: &Bytes) -> Result<Value, Amqp10Error> {
        let mut d = Decoder::new(buf);
        let v = d.value(0)?;
        if d.pos != buf.len() {
            return Err(Amqp10Error::TrailingBytes);
        }
        Ok(v)
    }

    /// Append the value's encoding, each part in its smallest encoding. Encoding cannot fail:
    /// an `Array` whose elements do not share one constructor (not representable as an array) is
    /// written as a `list` of the same elements, an empty array as an array of `null`.
    ///
    /// Compounds are written in their 32-bit form and moved down to the 8-bit form when they fit,
    /// so each byte is written once per enclosing level: linear in size times depth.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Value::Described(d, v) => {
                out.put_u8(DESCRIBED);
                d.encode(out);
                v.encode(out);
            }
            Value::List(items) if items.is_empty() => out.put_u8(LIST0),
            Value::List(items) => put_list(items, out),
            Value::Map(pairs) => encode_map(pairs, out),
            Value::Array(items) => match array_element(items) {
                Some(elem) => put_compound(out, ARRAY32, items.len(), |out| elem.put_all(items, out)),
                None => put_list(items, out),
            },
            _ => {
                let code = self.compact_code();
                out.put_u8(code);
                self.put_payload(code, out);
            }
        }
    }

    /// The smallest constructor for a value that is not described and not a compound.
    fn compact_code(&self) -> u8 {
        match self {
            Value::Bool(true) => TRUE,
            Value::Bool(false) => FALSE,
            Value::Uint(0) => UINT0,
            Value::Uint(v) if *v <= u8::MAX as u32 => SMALLUINT,
            Value::Ulong(0) => ULONG0,
            Value::Ulong(v) if *v <= u8::MAX as u64 => SMALLULONG,
            Value::Int(v) if i8::try_from(*v).is_ok() => SMALLINT,
            Value::Long(v) if i8::try_from(*v).is_ok() => SMALLLONG,
            Value::Binary(b) => pick(b.len() <= SMALL, VBIN8, VBIN32),
            Value::String(b) => pick(b.len() <= SMALL, STR8, STR32),
            Value::Symbol(b) => pick(b.len() <= SMALL, SYM8, SYM32),
            // Every other type has one constructor, the one it uses as an array element.
            _ => self.element_code().unwrap_or(NULL),
        }
    }

    /// The constructor of this value when it is an array element: the widest encoding of its
    /// type, so that every element of the array fits it. `None` for described values.
    fn element_code(&self) -> Option<u8> {
        Some(match self {
            Value::Null => NULL,
            Value::Bool(_) => BOOLEAN,
            Value::Ubyte(_) => UBYTE,
            Value::Ushort(_) => USHORT,
            Value::Uint(_) => UINT,
            Value::Ulong(_) => ULONG,
            Value::Byte(_) => BYTE,
            Value::Short(_) => SHORT,
            Value::Int(_) => INT,
            Value::Long(_) => LONG,
            Value::Float(_) => FLOAT,
            Value::Double(_) => DOUBLE,
            Value::Decimal32(_) => DECIMAL32,
            Value::Decimal64(_) => DECIMAL64,
            Value::Decimal128(_) => DECIMAL128,
            Value::Char(_) => CHAR,
            Value::Timestamp(_) => TIMESTAMP,
            Value::Uuid(_) => UUID,
            Value::Binary(_) => VBIN32,
            Value::String(_) => STR32,
            Value::Symbol(_) => SYM32,
            Value::List(_) => LIST32,
            Value::Map(_) => MAP32,
            Value::Array(_) => ARRAY32,
            Value::Described(..) => return None,
        })
    }

    /// Write the payload of this value for constructor `code` (the constructor itself is written
    /// by the caller). `code` is always one chosen for this value by `compact_code` or
    /// `element_code` (so compounds come here only as array elements, in their 32-bit form); any
    /// other pairing writes nothing (unreachable).
    fn put_payload(&self, code: u8, out: &mut BytesMut) {
        match (self, code) {
            (Value::Bool(b), BOOLEAN) => out.put_u8(*b as u8),
            (Value::Ubyte(v), _) => out.put_u8(*v),
            (Value::Ushort(v), _) => out.put_u16(*v),
            (Value::Uint(v), SMALLUINT) => out.put_u8(*v as u8),
            (Value::Uint(v), UINT) => out.put_u32(*v),
            (Value::Ulong(v), SMALLULONG) => out.put_u8(*v as u8),
            (Value::Ulong(v), ULONG) => out.put_u64(*v),
            (Value::Byte(v), _) => out.put_i8(*v),
            (Value::Short(v), _) => out.put_i16(*v),
            (Value::Int(v), SMALLINT) => out.put_i8(*v as i8),
            (Value::Int(v), INT) => out.put_i32(*v),
            (Value::Long(v), SMALLLONG) => out.put_i8(*v as i8),
            (Value::Long(v), LONG) => out.put_i64(*v),
            (Value::Float(v), _) => out.put_u32(v.to_bits()),
            (Value::Double(v), _) => out.put_u64(v.to_bits()),
            (Value::Decimal32(b), _) => out.put_slice(b),
            (Value::Decimal64(b), _) => out.put_slice(b),
            (Value::Decimal128(b), _) => out.put_slice(b),
            (Value::Char(v), _) => out.put_u32(*v),
            (Value::Timestamp(v), _) => out.put_i64(*v),
            (Value::Uuid(b), _) => out.put_slice(b),
            (Value::Binary(b) | Value::String(b) | Value::Symbol(b), _) => {
                if code & 0xf0 == 0xa0 {
                    out.put_u8(b.len() as u8);
                } else {
                    out.put_u32(len32(b.len()));
                }
                out.put_slice(b);
            }
            (Value::List(items), LIST32) => put_wide(out, items.len(), |out| items.iter().for_each(|i| i.encode(out))),
            (Value::Map(pairs), MAP32) => put_wide(out, pairs.len() * 2, |out| put_pairs(pairs, out)),
            (Value::Array(items), ARRAY32) => {
                if let Some(elem) = array_element(items) {
                    put_wide(out, items.len(), |out| elem.put_all(items, out));
                }
            }
            // Zero-width encodings (null, true, false, uint0, ulong0) and unreachable pairs.
            _ => {}
        }
    }
}

/// Append a map's encoding (as [`Value::encode`] would for a `Value::Map`) without building one.
pub fn encode_map(pairs: &[(Value, Value)], out: &mut BytesMut) {
    put_compound(out, MAP32, pairs.len() * 2, |out| put_pairs(pairs, out));
}

fn put_pairs(pairs: &[(Value, Value)], out: &mut BytesMut) {
    for (k, v) in pairs {
        k.encode(out);
        v.encode(out);
    }
}

fn put_list(items: &[Value], out: &mut BytesMut) {
    put_compound(out, LIST32, items.len(), |out| items.iter().for_each(|i| i.encode(out)));
}

/// Variable-width values up to this length use the one-byte size form.
const SMALL: usize = u8::MAX as usize;
/// A 32-bit compound's size and count take this many more bytes than an 8-bit one's.
const WIDE_EXTRA: usize = 6;
/// The 8-bit form of a compound constructor is the 32-bit one minus this (0xd0 → 0xc0, ...).
const WIDE_TO_SMALL: u8 = 0x10;

fn pick<T>(cond: bool, a: T, b: T) -> T {
    if cond {
        a
    } else {
        b
    }
}

/// Lengths are bounded by the 4 GiB a 32-bit size can hold; longer values cannot be sent anyway.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Write a 32-bit size (patched once `content` is written), the count, and the content.
fn put_wide(out: &mut BytesMut, count: usize, content: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_u32(0);
    out.put_u32(len32(count));
    content(out);
    let size = len32(out.len() - at - 4);
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// Write a compound with constructor `wide` (its 32-bit form), then move it down to the 8-bit
/// form when its count and size fit one byte.
fn put_compound(out: &mut BytesMut, wide: u8, count: usize, content: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_u8(wide);
    put_wide(out, count, content);
    let start = at + 1 + 8;
    let len = out.len() - start;
    // The 8-bit size counts the count byte too.
    if count <= SMALL && len < SMALL {
        out[at] = wide - WIDE_TO_SMALL;
        out[at + 1] = len as u8 + 1;
        out[at + 2] = count as u8;
        out.copy_within(start.., at + 3);
        out.truncate(out.len() - WIDE_EXTRA);
    }
}

/// Payload width of fixed-width constructors; `None` for variable-width, compound and unknown ones.
fn fixed_width(code: u8) -> Option<usize> {
    Some(match code {
        NULL | TRUE | FALSE | UINT0 | ULONG0 | LIST0 => 0,
        UBYTE | BYTE | SMALLUINT | SMALLULONG | SMALLINT | SMALLLONG | BOOLEAN => 1,
        USHORT | SHORT => 2,
        UINT | INT | FLOAT | CHAR | DECIMAL32 => 4,
        ULONG | LONG | DOUBLE | TIMESTAMP | DECIMAL64 => 8,
        UUID | DECIMAL128 => 16,
        _ => return None,
    })
}

/// The shared element constructor of an array, optionally described.
struct ArrayElement<'a> {
    /// The shared descriptor, when the elements are described values.
    descriptor: Option<&'a Value>,
    /// The shared primitive constructor.
    code: u8,
}

impl ArrayElement<'_> {
    /// The element constructor, then each element's payload.
    fn put_all(&self, items: &[Value], out: &mut BytesMut) {
        if let Some(d) = self.descriptor {
            out.put_u8(DESCRIBED);
            d.encode(out);
        }
        out.put_u8(self.code);
        for v in items {
            match v {
                Value::Described(_, inner) => inner.put_payload(self.code, out),
                _ => v.put_payload(self.code, out),
            }
        }
    }
}

/// The element constructor of an array, or `None` when its elements do not share one (or hold
/// arrays that do not): such an "array" is written as a list. An empty array is one of `null`.
fn array_element(items: &[Value]) -> Option<ArrayElement<'_>> {
    let (descriptor, first) = match items.first() {
        None => return Some(ArrayElement { descriptor: None, code: NULL }),
        Some(Value::Described(d, v)) => (Some(&**d), &**v),
        Some(v) => (None, v),
    };
    let code = first.element_code()?;
    for item in items {
        let inner = match (descriptor, item) {
            (Some(d), Value::Described(d2, v)) if **d2 == *d => &**v,
            (None, Value::Described(..)) | (Some(_), _) => return None,
            (None, v) => v,
        };
        if inner.element_code() != Some(code) {
            return None;
        }
        // Nested arrays must themselves be real arrays for the shared ARRAY32 constructor.
        if let Value::Array(nested) = inner {
            array_element(nested)?;
        }
    }
    Some(ArrayElement { descriptor, code })
}

/// Cursor over an encoded buffer. Every method checks bounds and returns an error, never panics.
pub(crate) struct Decoder<'a> {
    /// The whole input; values are sliced out of it.
    buf: &'a Bytes,
    /// Offset of the next unread byte.
    pub(crate) pos: usize,
    /// Values this decode may still produce (see `EXTRA_VALUE_BUDGET`).
    budget: usize,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a Bytes) -> Decoder<'a> {
        Decoder { buf, pos: 0, budget: buf.len().saturating_add(EXTRA_VALUE_BUDGET) }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn peek(&self) -> Result<u8, Amqp10Error> {
        self.buf.get(self.pos).copied().ok_or(Amqp10Error::Truncated)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Amqp10Error> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or(Amqp10Error::Truncated)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Amqp10Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Amqp10Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Amqp10Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn slice(&mut self, n: usize) -> Result<Bytes, Amqp10Error> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..self.pos))
    }

    /// Read a one- or four-byte size (by the constructor's width category).
    fn size(&mut self, code: u8) -> Result<usize, Amqp10Error> {
        Ok(if matches!(code & 0xf0, 0xa0 | 0xc0 | 0xe0) { self.u8()? as usize } else { self.u32()? as usize })
    }

    /// Decode one value (constructor included).
    pub(crate) fn value(&mut self, depth: usize) -> Result<Value, Amqp10Error> {
        let code = self.u8()?;
        if code == DESCRIBED {
            if depth >= MAX_DEPTH {
                return Err(Amqp10Error::TooDeep);
            }
            let descriptor = self.value(depth + 1)?;
            let value = self.value(depth + 1)?;
            return Ok(Value::Described(Box::new(descriptor), Box::new(value)));
        }
        self.payload(code, depth)
    }

    /// Decode the payload of a value whose constructor `code` was already read.
    fn payload(&mut self, code: u8, depth: usize) -> Result<Value, Amqp10Error> {
        self.budget = self.budget.checked_sub(1).ok_or(Amqp10Error::TooManyValues)?;
        Ok(match code {
            NULL => Value::Null,
            TRUE => Value::Bool(true),
            FALSE => Value::Bool(false),
            BOOLEAN => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => return Err(Amqp10Error::BadBoolean(other)),
            },
            UINT0 => Value::Uint(0),
            ULONG0 => Value::Ulong(0),
            LIST0 => Value::List(Vec::new()),
            UBYTE => Value::Ubyte(self.u8()?),
            BYTE => Value::Byte(self.u8()? as i8),
            SMALLUINT => Value::Uint(self.u8()?.into()),
            SMALLULONG => Value::Ulong(self.u8()?.into()),
            SMALLINT => Value::Int((self.u8()? as i8).into()),
            SMALLLONG => Value::Long((self.u8()? as i8).into()),
            USHORT => Value::Ushort(u16::from_be_bytes(self.array()?)),
            SHORT => Value::Short(i16::from_be_bytes(self.array()?)),
            UINT => Value::Uint(self.u32()?),
            INT => Value::Int(i32::from_be_bytes(self.array()?)),
            FLOAT => Value::Float(f32::from_bits(self.u32()?)),
            CHAR => Value::Char(self.u32()?),
            DECIMAL32 => Value::Decimal32(self.array()?),
            ULONG => Value::Ulong(u64::from_be_bytes(self.array()?)),
            LONG => Value::Long(i64::from_be_bytes(self.array()?)),
            DOUBLE => Value::Double(f64::from_bits(u64::from_be_bytes(self.array()?))),
            TIMESTAMP => Value::Timestamp(i64::from_be_bytes(self.array()?)),
            DECIMAL64 => Value::Decimal64(self.array()?),
            DECIMAL128 => Value::Decimal128(self.array()?),
            UUID => Value::Uuid(self.array()?),
            VBIN8 | VBIN32 => {
                let n = self.size(code)?;
                Value::Binary(self.slice(n)?)
            }
            STR8 | STR32 => {
                let n = self.size(code)?;
                Value::String(self.slice(n)?)
            }
            SYM8 | SYM32 => {
                let n = self.size(code)?;
                Value::Symbol(self.slice(n)?)
            }
            LIST8 | LIST32 | MAP8 | MAP32 => {
                if depth >= MAX_DEPTH {
                    return Err(Amqp10Error::TooDeep);
                }
                let (end, count) = self.compound_header(code)?;
                let mut items = Vec::with_capacity(count.min(end.saturating_sub(self.pos)));
                while self.pos < end {
                    items.push(self.value(depth + 1)?);
                }
                if self.pos != end {
                    return Err(Amqp10Error::BadCompound);
                }
                if items.len() != count {
                    return Err(Amqp10Error::BadCount);
                }
                if code == LIST8 || code == LIST32 {
                    Value::List(items)
                } else {
                    if count % 2 != 0 {
                        return Err(Amqp10Error::BadCount);
                    }
                    let mut pairs = Vec::with_capacity(count / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Value::Map(pairs)
                }
            }
            ARRAY8 | ARRAY32 => {
                if depth >= MAX_DEPTH {
                    return Err(Amqp10Error::TooDeep);
                }
                let (end, count) = self.compound_header(code)?;
                let mut elem = self.u8()?;
                let mut descriptor = None;
                if elem == DESCRIBED {
                    descriptor = Some(self.value(depth + 1)?);
                    elem = self.u8()?;
                }
                if elem == DESCRIBED {
                    // A described descriptor's value would itself need a constructor: not allowed here.
                    return Err(Amqp10Error::BadConstructor(elem));
                }
                // Each element gets a copy of the descriptor: charge the copies to the budget too.
                let copy_cost = descriptor.as_ref().map_or(0, Value::node_count);
                let mut items = Vec::with_capacity(count.min(end.saturating_sub(self.pos)));
                for _ in 0..count {
                    let v = self.payload(elem, depth + 1)?;
                    items.push(match &descriptor {
                        Some(d) => {
                            self.budget = self.budget.checked_sub(copy_cost).ok_or(Amqp10Error::TooManyValues)?;
                            Value::Described(Box::new(d.clone()), Box::new(v))
                        }
                        None => v,
                    });
                }
                if self.pos != end {
                    return Err(Amqp10Error::BadCompound);
                }
                Value::Array(items)
            }
            other => return Err(Amqp10Error::BadConstructor(other)),
        })
    }

    /// Read a compound's size and count; returns the end offset of its elements and the count.
    fn compound_header(&mut self, code: u8) -> Result<(usize, usize), Amqp10Error> {
        let size = self.size(code)?;
        let count_width = if matches!(code & 0xf0, 0xc0 | 0xe0) { 1 } else { 4 };
        let start = self.pos;
        let end = start.checked_add(size).filter(|e| *e <= self.buf.len()).ok_or(Amqp10Error::Truncated)?;
        if size < count_width {
            return Err(Amqp10Error::BadCompound);
        }
        let count = self.size(code)?;
        Ok((end, count))
    }

    /// Step over one value without building it; returns its first constructor (after any
    /// descriptors). Only sizes are checked, not the contents of compound values.
    pub(crate) fn skip(&mut self, depth: usize) -> Result<u8, Amqp10Error> {
        let code = self.u8()?;
        if code == DESCRIBED {
            if depth >= MAX_DEPTH {
                return Err(Amqp10Error::TooDeep);
            }
            self.skip(depth + 1)?;
            return self.skip(depth + 1);
        }
        if let Some(w) = fixed_width(code) {
            if code == BOOLEAN && !matches!(self.peek()?, 0 | 1) {
                return Err(Amqp10Error::BadBoolean(self.peek()?));
            }
            self.take(w)?;
            return Ok(code);
        }
        match code {
            VBIN8 | VBIN32 | STR8 | STR32 | SYM8 | SYM32 => {
                let n = self.size(code)?;
                self.take(n)?;
            }
            LIST8 | LIST32 | MAP8 | MAP32 | ARRAY8 | ARRAY32 => {
                let (end, _) = self.compound_header(code)?;
                self.pos = end;
            }
            other => return Err(Amqp10Error::BadConstructor(other)),
        }
        Ok(code)
    }
}
